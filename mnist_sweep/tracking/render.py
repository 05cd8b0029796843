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
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl.helper import Helper, serve

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


# one per worker process: started once, fed jobs, one reply each
HELPER = Helper(__name__, {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                           "MPLBACKEND": "agg"})
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
                outcome = HELPER.reply(REPLY_TIMEOUT_S)
                if outcome is None:  # the helper died or hung: draw here what is missing
                    HELPER.kill()
                    for rest in sent[i:] if strict and error is None else []:
                        if rest[0] not in drawn:
                            draw_now(rest)
                    break
                if not outcome[0] and error is None:
                    error = _failed(job, outcome[1])
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


def _take(job: Job) -> None:
    if claim(job):  # else the run took it
        draw_now(job)


def _warm() -> None:
    import mnist_sweep.tracking.plots  # noqa: F401  (imported before the first job arrives)


if __name__ == "__main__":
    sys.exit(serve(_take, _warm))
