"""Commands a test starts, waits for and ends: each in a process group of its own, so that ending
it ends every process it started (its workers, its jobs), and a test that fails halfway or waits
too long leaves none of them running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


@contextlib.contextmanager
def started(args: Sequence[str], cwd: Path, env: Mapping[str, str]
            ) -> Iterator[subprocess.Popen[str]]:
    """The command, its output piped; its whole group killed at the end of the block if it still
    runs then."""
    proc = subprocess.Popen(list(args), cwd=cwd, env=dict(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        kill(proc)


def kill(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGKILL to the command's group (by its pid) unless it ended; what it had printed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate(timeout=30)


def finish(proc: subprocess.Popen[str], expect: int = 0, timeout: float = 480) -> tuple[str, str]:
    """(stdout, stderr) once the command ended with the exit status `expect`; a command still
    running after `timeout` seconds is killed and fails the test with the end of its output."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = kill(proc)
        raise AssertionError(f"still running after {timeout:.0f} s: {out[-2000:]}{err[-4000:]}"
                             ) from None
    assert proc.returncode == expect, out[-2000:] + err[-4000:]
    return out, err


def descendants(pid: int) -> list[int]:
    """Every process started by `pid`, its children's children too, whatever their group."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True,
                         timeout=30).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
