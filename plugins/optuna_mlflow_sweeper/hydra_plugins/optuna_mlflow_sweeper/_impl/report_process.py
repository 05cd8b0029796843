"""The sweep report drawn by a helper process that starts with the sweep.

Why: drawing `sweep_report.html` first imports optuna.visualization (which imports matplotlib)
and, for a sweep of 10 trials or more, scikit-learn (fANOVA's importances): 1-3 s on 2 cores,
paid after the last trial, when the user waits for the answer, and opening the study's storage
~1 s more. A helper process started once
the sweep's plan is accepted (a rejected sweep starts none) pays both on the other core while the
stores open and the trials run, then waits; at the end it reads the finished trials and draws.
If the helper cannot start, dies, or does not answer in time, the report is drawn in the sweep's
process as before, so it is never lost.

    with report_drawer(enabled) as drawer:  # once the plan is accepted: its imports start now
        ...  # the session
        drawer.open(storage_url, study_name, n_trials)
        ...  # the trials
        drawer.write(study, path)  # path, or None: nothing to draw

`enabled=False` gives the do-nothing variant (it draws in this process), so callers never branch.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import optuna

from hydra_plugins.optuna_mlflow_sweeper._impl import html_report
from hydra_plugins.optuna_mlflow_sweeper._impl.helper import Helper, serve

log = logging.getLogger(__name__)

WAIT_S = 300.0  # a report of thousands of trials takes seconds: longer than this is stuck


class InProcess:
    """Draws the report in this process (no helper)."""

    def open(self, storage_url: str, study_name: str, n_trials: float) -> None:
        pass

    def write(self, study: optuna.Study, path: str) -> str | None:
        return html_report.write(study, path)

    def close(self) -> None:
        pass


class Ahead(InProcess):
    """A helper whose imports and study overlap the sweep; one report, then it exits."""

    def __init__(self) -> None:
        self._helper = Helper(__name__, {"OMP_NUM_THREADS": "1", "MPLBACKEND": "agg"},
                              quiet=True)  # a failure shows when this process draws instead
        self._helper.start()

    def open(self, storage_url: str, study_name: str, n_trials: float) -> None:
        """The study to draw, of `n_trials` in all (queued: the helper reads it once its imports
        are done)."""
        self._helper.send(("open", storage_url, study_name, n_trials))

    def write(self, study: optuna.Study, path: str) -> str | None:
        if not self._helper.send(("draw", path)):
            return super().write(study, path)
        opened, drawn = self._helper.reply(WAIT_S), self._helper.reply(WAIT_S)
        self._helper.kill()  # it has answered, or never will
        if opened is not None and opened[0] and drawn is not None and drawn[0]:
            return path if drawn[1] else None
        log.warning("report helper failed (%s): drawing the report here",
                    (drawn or opened or (False, "no answer"))[1])
        return super().write(study, path)

    def close(self) -> None:
        self._helper.kill()


def worth_a_helper() -> bool:
    """Whether a helper would save time: not in a process that has the drawing's imports already
    (a notebook, a test session), where drawing costs only the drawing."""
    return "optuna.visualization" not in sys.modules


@contextlib.contextmanager
def report_drawer(enabled: bool) -> Iterator[InProcess]:
    """The drawer of this sweep's report; its helper (if any) is stopped on the way out."""
    drawer = Ahead() if enabled else InProcess()
    try:
        yield drawer
    finally:
        drawer.close()


_opened: list[optuna.Study] = []


def _handle(request: tuple[Any, ...]) -> bool | None:
    """("open", storage URL, study name, n_trials): load the study (and scikit-learn, if its
    report will rank the params); ("draw", path): True once the report is written, False if the
    study has no complete trial to draw."""
    if request[0] == "open":
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _opened.append(optuna.load_study(study_name=request[2], storage=request[1]))
        if request[3] >= html_report.IMPORTANCE_MIN_TRIALS:
            importlib.import_module("optuna.importance")  # scikit-learn
        return None
    return html_report.write(_opened[0], request[1]) is not None


def _warm() -> None:
    os.nice(10)  # while the trials run, they come first
    import optuna.visualization  # noqa: F401  (matplotlib, plotly)


if __name__ == "__main__":
    sys.exit(serve(_handle, _warm))
