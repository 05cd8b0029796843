"""A real local Ray cluster for the Ray launcher's tests: `ray start --head --block` on 127.0.0.1.

The head node runs as a child process in its own process group, on free ports, and is stopped by
its pid (SIGTERM: Ray drains and stops what it started), then its group is killed whatever is
left. Ray rewrites 127.0.0.1 into the machine's outward address (eth0) unless told that this is a
single-node cluster: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the mode Ray uses on macOS and
Windows, keeps every address on the loopback. A driver needs it too (`cluster.env`); the
sweeper sets it itself for an address on 127.0.0.1.

In the plugin's checkout beside servers.py (not in its wheel), so the sweeper's tests and the
app's import the fixture by name; it skips where Ray is not installed (the `ray` extra).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tenacity

from hydra_plugins.optuna_mlflow_sweeper._testing.servers import _wait, free_port

# what every process of the cluster and its drivers need: addresses stay on 127.0.0.1
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
STARTED = "Ray runtime started."
# GPUs the cluster declares (Ray believes what it is told; none is here): each worker task asks
# for its share, and Ray gives it its devices in CUDA_VISIBLE_DEVICES
GPUS = 2


class RayCluster:
    """A one-node Ray cluster (the head) with `num_cpus` CPUs; `address` is `127.0.0.1:PORT`."""

    def __init__(self, num_cpus: int = 2, timeout: float = 120, attempts: int = 3) -> None:
        self.env = dict(LOOPBACK_ENV)
        # Ray's sockets live under its temp dir: a short path (a socket path is < 108 bytes)
        self.dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.log = self.dir / "head.log"
        # `ray start` gives its raylet 30 s to register (hard-coded in Ray): on a loaded machine
        # it may not, and exits; a fresh start on fresh ports then usually does
        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), reraise=True,
                                     retry=tenacity.retry_if_exception_type(
                                         (RuntimeError, TimeoutError)))
        try:
            for attempt in retrying:
                with attempt:
                    self._start(num_cpus)
                    try:
                        _wait(self._started, "ray head node", timeout)
                    except BaseException:
                        self.stop()
                        raise
        except BaseException:
            self.close()
            raise

    def _start(self, num_cpus: int) -> None:
        ray = Path(sys.executable).parent / "ray"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        ports = {f"--{name}-port": free_port() for name in (
            "node-manager", "object-manager", "ray-client-server", "dashboard-agent-listen",
            "dashboard-agent-grpc", "runtime-env-agent", "metrics-export")}
        args = [str(ray), "start", "--head", "--block", f"--port={self.port}",
                "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", f"--num-gpus={GPUS}",
                "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.dir}",
                *(f"{flag}={port}" for flag, port in ports.items())]
        # the memory monitor kills the biggest task when the machine is short of memory: on a
        # machine shared with other work that would be a fault no test asked for
        env = {**os.environ, **LOOPBACK_ENV, "RAY_memory_monitor_refresh_ms": "0"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=self.dir, env=env, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"ray start exited ({self.proc.returncode}): {self.tail()}")
        return STARTED in self.log.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def launcher(self) -> list[str]:
        """The overrides of a sweep whose workers are jobs on this cluster, as a user writes
        them: `hydra/launcher=ray` at its address, nothing else (the sweeper leaves out what Ray
        refuses when joining, and keeps the workers' output in their logs: `output`)."""
        return ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={self.address}"]

    @property
    def logs(self) -> Path:
        return self.dir / "session_latest" / "logs"

    def worker_pids(self) -> set[int]:
        """Every process that ran as one of the cluster's workers (Ray logs each by its pid)."""
        return {int(p.stem.rpartition("_")[2])
                for p in self.logs.glob("python-core-worker-*_*.log")}

    def output(self, pid: int) -> str:
        """What the worker `pid` printed (Ray keeps each worker's stdout and stderr in files)."""
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.logs.glob(f"worker-*-{pid}.*")))

    def processes(self, title: str) -> list[int]:
        """The pids of the cluster's processes whose command line starts with `title` (a task's
        worker is titled `ray::<function>` while it runs it)."""
        out = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(self.proc.pid)],
                             capture_output=True, text=True, timeout=30).stdout
        return [int(line.split(None, 1)[0]) for line in out.splitlines()
                if line.split(None, 1)[1:] and line.split(None, 1)[1].startswith(title)]

    def stop(self) -> None:
        """SIGTERM to `ray start` (it drains, then stops its processes), SIGKILL to the group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(45)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A local Ray cluster with 2 CPUs and 2 declared GPUs for the test process, started when a
    test first asks for it (skipped where Ray is not installed). Tests share it: each runs its own
    sweep (its own folder and store), and what a test kills is a worker of its own sweep."""
    if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("Ray is not installed (pip install 'mnist-sweep[ray]'; .ci/run does)")
    cluster = RayCluster()
    try:
        yield cluster
    finally:
        cluster.close()
