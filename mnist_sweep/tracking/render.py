"""A run's figures drawn by a helper process, beside the work that follows training.

Why: matplotlib takes ~0.3 s per run for the four figures, a tenth of a warm 5-epoch dense trial,
and in that time the second core idles (evaluation and model saving use ~1). A thread cannot use
it: drawing holds the GIL, and a background thread measurably slowed training. So one helper
process per worker draws `plots.<name>(*args)` to PNG files while the run evaluates and saves
its model, and the run waits for them before it ends: no figure outlives its run, and a sweep
that stops loses none. If the helper cannot start, or dies, the figures are drawn in this
process as before. Whatever the helper has not started when the run is ready to wait, the run
draws itself: each figure is claimed (a file created exclusively) by whichever process gets to
it first, so none is drawn twice and neither waits idle while the other has work.

    with render.figures(enabled, on_done=tracking.log_plot_dir) as figures:
        figures.draw("learning_curves.png", "learning_curves", history)
        ...  # more figures, and whatever else the run does meanwhile
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import select
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

REPLY_TIMEOUT_S = 60.0  # a figure takes ~0.1 s: a helper this slow to answer is stuck
# (png path, claim file, plots function name, its arguments)
Job = tuple[str, str, str, tuple[Any, ...]]


def claim(job: Job) -> bool:
    """True for the one process that creates the job's claim file: it draws the figure."""
    try:
        os.close(os.open(job[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def draw_now(job: Job) -> None:
    from mnist_sweep.tracking import plots

    path, _, name, args = job
    # zlib level 1: ~5% off each figure's time, for files ~10% larger
    getattr(plots, name)(*args).savefig(path, pil_kwargs={"compress_level": 1})


class Helper:
    """The helper process of this worker: started once, fed jobs through a pipe, one reply each.

    Replies are read from the raw pipe with a timeout, so a hung helper is killed, not waited on.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending = b""  # reply bytes read but not yet returned

    def start(self) -> None:
        """Start it if it is not running (its imports then overlap the run's training)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self.kill()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mnist_sweep.tracking.render"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, start_new_session=True,  # Ctrl-C is the run's alone
                env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                     "MPLBACKEND": "agg"},
            )
        except OSError:
            self._proc = None  # every figure is then drawn in the run

    def send(self, job: Job) -> bool:
        """Queue a job; False if the helper is gone (the caller draws it itself)."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        try:
            message = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)  # whole, or not at all
            stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
            stdin.write(message)
            stdin.flush()
            return True
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            return False

    def reply(self, timeout: float = REPLY_TIMEOUT_S) -> str | None:
        """The next job's outcome: "ok", "error ...", or None if the helper died or hung."""
        if self._proc is None:
            return None
        fd = self._proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode().strip() or None

    def stop(self) -> None:
        """End of input: the helper exits; killed if it has not within a few seconds."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self.kill()

    def kill(self) -> None:
        """Now, whatever it was doing: its unread replies go with it, so none can be taken for
        the next run's."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]
        self._proc = None
        self._pending = b""


HELPER = Helper()
atexit.register(HELPER.stop)


class Figures:
    """The figures of one run: `draw` queues one; leaving `figures()` waits for them all."""

    def __init__(self, directory: Path | None, claims: Path | None = None) -> None:
        self.directory = directory  # the PNG files, and only them
        self.claims = claims
        self._sent: list[Job] = []

    def draw(self, filename: str, name: str, *args: Any) -> None:
        if self.directory is None or self.claims is None:
            return
        job = (str(self.directory / filename), str(self.claims / filename), name, args)
        if HELPER.send(job):
            self._sent.append(job)
        else:
            draw_now(job)

    def wait(self, *, strict: bool = True) -> None:
        """Until every sent figure is saved; a figure that cannot be drawn raises here (strict)
        as it would have in this process. Not strict (the run failed): nothing more is drawn.

        Anything escaping half-way (Ctrl-C, a hung or dead helper) kills the helper, so no
        unread reply of this run is ever taken for the next run's.
        """
        sent, self._sent = self._sent, []
        drawn: set[str] = set()
        error: Exception | None = None
        try:
            # The helper takes jobs front to back: take from the back what it has not started
            # (not strict: claim them only, so it skips them).
            for job in reversed(sent):
                if not claim(job):
                    break
                drawn.add(job[0])
                if strict:
                    try:
                        draw_now(job)
                    except Exception as exc:
                        error = error or _failed(job, f"{type(exc).__name__}: {exc}")
            for i, job in enumerate(sent):
                outcome = HELPER.reply()
                if outcome is None:  # the helper died or hung: draw here what is missing
                    HELPER.kill()
                    for rest in sent[i:] if strict and error is None else []:
                        if rest[0] not in drawn:
                            draw_now(rest)
                    break
                if outcome != "ok" and error is None:
                    error = _failed(job, outcome.removeprefix("error "))
        except BaseException:
            HELPER.kill()
            raise
        if strict and error is not None:
            raise error


def _failed(job: Job, why: str) -> RuntimeError:
    return RuntimeError(f"drawing {Path(job[0]).name} failed: {why}")


@contextlib.contextmanager
def figures(enabled: bool, on_done: Callable[[Path], None]) -> Iterator[Figures]:
    """Figures drawn in the helper; on a clean exit, `on_done(directory)` once all are saved.

    On an exception the run's figures are dropped (the helper skips those it has not started)
    and nothing is logged. Disabled: `draw` does nothing and no helper starts.
    """
    if not enabled:
        yield Figures(None)
        return
    HELPER.start()
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-plots-") as tmp:
        pngs, claims = Path(tmp, "plots"), Path(tmp, "claims")
        pngs.mkdir()
        claims.mkdir()
        batch = Figures(pngs, claims)
        try:
            yield batch
        except BaseException:
            batch.wait(strict=False)
            raise
        batch.wait()
        on_done(pngs)


def _serve() -> int:
    """The helper's loop: a job from stdin, "ok" or "error <why>" on the reply pipe, until EOF.

    The reply pipe is a private copy of stdout; stdout itself goes to stderr, so nothing a
    library prints can be taken for a reply.
    """
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    jobs = sys.stdin.buffer
    import mnist_sweep.tracking.plots  # noqa: F401  (imported before the first job arrives)

    while True:
        try:
            job: Job = pickle.load(jobs)
        except EOFError:  # the run's process closed the pipe, or died
            return 0
        except Exception:  # a garbled stream: stop; the run draws what this did not
            return 1
        try:
            if claim(job):  # else the run took it
                draw_now(job)
            replies.write("ok\n")
        except Exception as exc:
            replies.write(f"error {type(exc).__name__}: {exc}".replace("\n", " ") + "\n")
        replies.flush()


if __name__ == "__main__":
    sys.exit(_serve())
