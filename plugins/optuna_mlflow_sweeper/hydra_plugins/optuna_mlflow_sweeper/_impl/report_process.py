"""The sweep report drawn by a helper process that starts with the sweep.

Why: drawing `sweep_report.html` first imports optuna.visualization (which imports matplotlib)
and scikit-learn (fANOVA's importances): ~4 s on 2 cores, paid after the last trial, when the user
waits for the answer. A helper process started with the sweep pays them on the other core while
the trials run, then waits; at the end it loads the finished study from the storage and draws.
A thread could not: the imports hold the GIL. If the helper cannot start, dies, or does not
answer in time, the report is drawn in the sweep's process as before, so it is never lost.

    with report_drawer(enabled) as drawer:
        ...  # the trials
        drawer.write(study, storage_url, path)  # path, or None: nothing to draw

`enabled=False` gives the do-nothing variant (it draws in this process), so callers never branch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import optuna

from hydra_plugins.optuna_mlflow_sweeper._impl import html_report

log = logging.getLogger(__name__)

WAIT_S = 300.0  # a report of thousands of trials takes seconds: longer than this is stuck


class InProcess:
    """Draws the report in this process (no helper)."""

    def write(self, study: optuna.Study, storage_url: str, path: str) -> str | None:
        return html_report.write(study, path)

    def close(self) -> None:
        pass


class Helper(InProcess):
    """A helper process whose imports overlap the sweep; one report, then it exits."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C is the sweep's alone; the report still follows
                stdout=subprocess.DEVNULL,  # a failure shows when this process draws instead
                stderr=subprocess.DEVNULL,
                env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "agg"})
        except OSError as e:
            log.info("report helper not started (%s): the report is drawn at the end", e)
            self._proc = None

    def write(self, study: optuna.Study, storage_url: str, path: str) -> str | None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None or proc.stdin is None:
            return super().write(study, storage_url, path)
        # the URL may hold a password: stdin, not the command line
        job = {"storage": storage_url, "study": study.study_name, "path": path}
        try:
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            proc.stdin.close()
            code = proc.wait(timeout=WAIT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("report helper failed (%s): drawing the report here", type(e).__name__)
            _stop(proc)
            return super().write(study, storage_url, path)
        if code == 0:
            return path
        if code == NOTHING_TO_DRAW:
            return None
        log.warning("report helper exited with %s: drawing the report here", code)
        return super().write(study, storage_url, path)

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None


@contextlib.contextmanager
def report_drawer(enabled: bool) -> Iterator[InProcess]:
    """The drawer of this sweep's report; its helper (if any) is stopped on the way out."""
    drawer = Helper() if enabled else InProcess()
    try:
        yield drawer
    finally:
        drawer.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


NOTHING_TO_DRAW = 3


def main() -> int:
    """The helper: imports first, then one job from stdin (none: the sweep ended without one)."""
    os.nice(10)  # while the trials run, they come first
    import optuna.importance  # noqa: F401  (scikit-learn)
    import optuna.visualization  # noqa: F401  (matplotlib, plotly)

    line = sys.stdin.readline()
    if not line:
        return 0
    job = json.loads(line)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=job["study"], storage=job["storage"])
    return 0 if html_report.write(study, job["path"]) else NOTHING_TO_DRAW


if __name__ == "__main__":
    sys.exit(main())
