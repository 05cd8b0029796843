"""Where a test run's CPU goes: every process's CPU seconds, read from /proc while the run lasts,
summed by what the process is (a sweep command, a worker, a report helper, a server...) and by
the test that started it (`PYTEST_CURRENT_TEST`, which every process a test starts inherits).

Why /proc and not the processes' own accounting: many of them end by a signal (the fault tests
kill them, a helper is killed once it has answered), and a process killed skips its exit hooks.
A process is read every `interval` s, so one that lives shorter than that is missed.

Each process is also marked when TensorFlow's library is mapped into it (`/proc/PID/maps`):
starting TensorFlow costs a process seconds of CPU before it trains anything, so how many
processes a run starts that load it is a floor under the run's CPU that no test can shorten.

    with ProcessCpu() as cpu:
        ...  # the run
    cpu.by_kind(), cpu.by_test_file(10), cpu.tensorflow()
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

# (what a command line contains, the kind it is), first match wins
KINDS = (
    ("exec(eval(sys.stdin", "pytest-xdist worker"),
    ("report_process", "sweep report helper"),
    ("tests/apps/toy/app.py", "toy app command"),
    ("example/", "example app command"),
    ("-m mnist_sweep", "mnist-sweep command"),
    ("bin/mnist-sweep", "mnist-sweep command"),
    ("spawn_main", "sweep worker (local process)"),
    ("submitit", "submitit job"),
    ("loky", "joblib job"),
    ("ray", "ray"),
    ("mlflow server", "mlflow server"),
    ("postgres", "postgresql"),
    ("pytest", "pytest"),
)
TENSORFLOW_LIBRARY = b"libtensorflow_framework"  # mapped once `import tensorflow` has begun


def kind_of(cmdline: str) -> str:
    return next((kind for needle, kind in KINDS if needle in cmdline), "other")


@dataclass
class _Process:
    kind: str
    test: str  # the test that started it ("" for none)
    cpu: float = 0.0  # user + system seconds when last read
    tensorflow: bool = False  # TensorFlow's library mapped, when last read


class ProcessCpu:
    """Samples every process started after it, in a thread, until the block ends."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._seen: dict[tuple[int, int], _Process] = {}
        self._before: set[tuple[int, int]] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> ProcessCpu:
        self._before = {key for key, _ in self._read(with_details=False)}
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            for key, cpu in self._read(with_details=True):
                proc = self._seen[key]
                proc.cpu = cpu
                proc.tensorflow = proc.tensorflow or loads_tensorflow(key[0])

    def _read(self, with_details: bool) -> list[tuple[tuple[int, int], float]]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                key = (int(entry.name), int(fields[19]))  # pid and start time: pids are reused
                if key in self._before:
                    continue
                if with_details and key not in self._seen:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                        errors="replace")
                    self._seen[key] = _Process(kind_of(cmdline), _test_of(entry))
                found.append((key, (int(fields[11]) + int(fields[12])) / self._tick))
            except (OSError, IndexError, ValueError):  # ended meanwhile, or not ours to read
                continue
        return found

    def by_kind(self) -> dict[str, dict[str, float]]:
        """CPU seconds, process count and how many loaded TensorFlow, of each kind, the costliest
        first."""
        cpu: Counter[str] = Counter()
        count: Counter[str] = Counter()
        for proc in self._seen.values():
            cpu[proc.kind] += proc.cpu
            count[proc.kind] += 1
        tf = Counter(proc.kind for proc in self._seen.values() if proc.tensorflow)
        return {k: {"cpu_s": round(v, 1), "processes": count[k], "with_tensorflow": tf[k]}
                for k, v in cpu.most_common()}

    def tensorflow(self) -> dict[str, float]:
        """How many processes loaded TensorFlow, and their CPU seconds (imports and work)."""
        loaded = [proc.cpu for proc in self._seen.values() if proc.tensorflow]
        return {"processes": len(loaded), "cpu_s": round(sum(loaded), 1)}

    def by_test_file(self, top: int) -> dict[str, float]:
        """CPU seconds of the processes each test file started (the pytest workers aside)."""
        cpu: Counter[str] = Counter()
        for proc in self._seen.values():
            if proc.test:
                cpu[proc.test.split("::")[0]] += proc.cpu
        return {k: round(v, 1) for k, v in cpu.most_common(top)}


def loads_tensorflow(pid: int) -> bool:
    """Whether TensorFlow's library is mapped into the process (False once it has ended)."""
    try:
        return TENSORFLOW_LIBRARY in Path(f"/proc/{pid}/maps").read_bytes()
    except OSError:
        return False


def _test_of(entry: Path) -> str:
    try:
        for item in (entry / "environ").read_bytes().split(b"\0"):
            if item.startswith(b"PYTEST_CURRENT_TEST="):
                return item.split(b"=", 1)[1].decode(errors="replace")
    except OSError:
        pass
    return ""
