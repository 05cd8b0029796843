"""The sweep report drawn by a helper process that starts with the sweep.

Why: drawing `sweep_report.html` first imports optuna.visualization (which imports matplotlib)
and scikit-learn (fANOVA's importances): ~4 s on 2 cores, paid after the last trial, when the user
waits for the answer, and opening the study's storage ~1 s more. A helper process started with
the sweep pays both on the other core while the trials run, then waits; at the end it reads the
finished trials and draws. A thread could not: the imports hold the GIL. If the helper cannot
start, dies, or does not answer in time, the report is drawn in the sweep's process as before,
so it is never lost.

    with report_drawer(enabled, storage_url, study_name) as drawer:
        ...  # the trials
        drawer.write(study, path)  # path, or None: nothing to draw

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
NOTHING_TO_DRAW = 3  # the helper's exit code when the study has no complete trial


class InProcess:
    """Draws the report in this process (no helper)."""

    def write(self, study: optuna.Study, path: str) -> str | None:
        return html_report.write(study, path)

    def close(self) -> None:
        pass


class Helper(InProcess):
    """A helper process whose imports overlap the sweep; one report, then it exits."""

    def __init__(self, storage_url: str, study_name: str) -> None:
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
            return
        # the URL may hold a password: stdin, not the command line
        self._send({"storage": storage_url, "study": study_name})

    def _send(self, job: dict[str, str]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(job).encode() + b"\n")
            self._proc.stdin.flush()
        except OSError:  # the helper is gone: write() notices and draws here
            pass

    def write(self, study: optuna.Study, path: str) -> str | None:
        proc = self._proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            return super().write(study, path)
        self._send({"path": path})
        self._proc = None
        try:
            proc.stdin.close()
            code = proc.wait(timeout=WAIT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("report helper failed (%s): drawing the report here", type(e).__name__)
            _stop(proc)
            return super().write(study, path)
        if code == 0:
            return path
        if code == NOTHING_TO_DRAW:
            return None
        log.warning("report helper exited with %s: drawing the report here", code)
        return super().write(study, path)

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None


@contextlib.contextmanager
def report_drawer(enabled: bool, storage_url: str, study_name: str) -> Iterator[InProcess]:
    """The drawer of this sweep's report; its helper (if any) is stopped on the way out."""
    drawer = Helper(storage_url, study_name) if enabled else InProcess()
    try:
        yield drawer
    finally:
        drawer.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def main() -> int:
    """The helper: imports and the study first, then the report's path from stdin (none: the
    sweep ended without a report)."""
    os.nice(10)  # while the trials run, they come first
    import optuna.importance  # noqa: F401  (scikit-learn)
    import optuna.visualization  # noqa: F401  (matplotlib, plotly)

    where = json.loads(sys.stdin.readline() or "{}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=where["study"], storage=where["storage"])
    line = sys.stdin.readline()
    if not line:
        return 0
    return 0 if html_report.write(study, json.loads(line)["path"]) else NOTHING_TO_DRAW


if __name__ == "__main__":
    sys.exit(main())
