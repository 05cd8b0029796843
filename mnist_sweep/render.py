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
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

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
    from mnist_sweep import plots

    path, _, name, args = job
    # zlib level 1: ~5% off each figure's time, for files ~10% larger
    getattr(plots, name)(*args).savefig(path, pil_kwargs={"compress_level": 1})


class Helper:
    """The helper process of this worker: started once, fed jobs through a pipe, one reply each."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        """Start it if it is not running (its imports then overlap the run's training)."""
        if self._proc is not None and self._proc.poll() is None:
            return True
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mnist_sweep.render"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1",
                                             "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "agg"},
            )
        except OSError:
            self._proc = None
        return self._proc is not None

    def send(self, job: Job) -> bool:
        """Queue a job; False if the helper is gone (the caller draws it itself)."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        message = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)  # whole, or not at all
        try:
            stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
            stdin.write(message)
            stdin.flush()
            return True
        except OSError:
            return False

    def reply(self) -> str | None:
        """The next job's outcome: "ok", "error ...", or None if the helper died."""
        if self._proc is None:
            return None
        line = self._proc.stdout.readline()  # type: ignore[union-attr]
        return line.decode().strip() or None

    def stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None


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
        as it would have in this process, once the helper has answered for all of them."""
        sent, self._sent = self._sent, []
        error: Exception | None = None
        if strict:  # the helper takes jobs front to back: take from the back what it has not
            for job in reversed(sent):
                if not claim(job):
                    break
                try:
                    draw_now(job)
                except Exception as exc:
                    error = error or _failed(job, f"{type(exc).__name__}: {exc}")
        for i, job in enumerate(sent):
            outcome = HELPER.reply()
            if outcome is None:  # the helper died: draw here what it had not answered for
                HELPER.stop()
                for rest in sent[i:] if strict and error is None else []:
                    draw_now(rest)
                break
            if outcome != "ok" and error is None:
                error = _failed(job, outcome.removeprefix("error "))
        if strict and error is not None:
            raise error


def _failed(job: Job, why: str) -> RuntimeError:
    return RuntimeError(f"drawing {Path(job[0]).name} failed: {why}")


@contextlib.contextmanager
def figures(enabled: bool, on_done: Callable[[Path], None]) -> Iterator[Figures]:
    """Figures drawn in the helper; on a clean exit, `on_done(directory)` once all are saved.

    On an exception the helper is drained (so the next run's replies are its own) and nothing
    is logged. Disabled: `draw` does nothing and no helper starts.
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
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle; EOF ends this
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    jobs = sys.stdin.buffer
    import mnist_sweep.plots  # noqa: F401  (imported before the first job arrives)

    while True:
        try:
            job: Job = pickle.load(jobs)
        except (EOFError, pickle.UnpicklingError):  # the run's process closed the pipe, or died
            return 0
        try:
            if claim(job):  # else the run took it
                draw_now(job)
            replies.write("ok\n")
        except Exception as exc:
            replies.write(f"error {type(exc).__name__}: {exc}".replace("\n", " ") + "\n")
        replies.flush()


if __name__ == "__main__":
    sys.exit(_serve())
