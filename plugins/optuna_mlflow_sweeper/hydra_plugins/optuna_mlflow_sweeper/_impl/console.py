"""What a sweep shows on the terminal: a line per trial, a line per batch, the answer at the end.

Hydra's launchers log each job's whole override list (`#3 : x=... ++hydra.job.env_set={...}`),
which for this sweeper includes the trial context every job gets (storage, study, MLflow run id):
hundreds of characters of internals per trial. While a sweep runs, their INFO records are dropped
and the sweeper prints its own `[optuna_mlflow] trial 3: x=1.25 y=-0.5` instead. Their warnings
and errors still show. With `progress: false` the sweeper's, Optuna's and MLflow's INFO records are
dropped too, so what is left is errors and the final answer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

PREFIX = "[optuna_mlflow]"
# The loggers Hydra's own launchers list their jobs with (the launcher's module is added).
LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
)
# Quieted to WARNING with progress off: this plugin, and the libraries it drives.
CHATTY_LOGGERS = ("hydra_plugins.optuna_mlflow_sweeper", "optuna", "mlflow")
# Always quieted: MLflow announcing its schema set-up of a new store ("Creating initial MLflow
# database tables...") is not news to a user who just asked for a sweep.
ALWAYS_QUIET = ("mlflow.store.db.utils",)


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO


@contextlib.contextmanager
def sweep_console(progress: bool, launcher: Any) -> Iterator[None]:
    """While the sweep runs: launchers keep their warnings only; with progress off, so do we.

    A filter on the logger object (not a handler) survives the logging reconfiguration Hydra
    does around every job. Everything is put back afterwards.
    """
    drop = _WarningsOnly()
    launchers = [logging.getLogger(name)
                 for name in {*LAUNCHER_LOGGERS, type(launcher).__module__}]
    chatty = [logging.getLogger(name)
              for name in (ALWAYS_QUIET if progress else CHATTY_LOGGERS + ALWAYS_QUIET)]
    levels = [(logger, logger.level) for logger in chatty]
    for logger in launchers:
        logger.addFilter(drop)
    for logger in chatty:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger in launchers:
            logger.removeFilter(drop)
        for logger, level in levels:
            logger.setLevel(level)


def say(progress: bool, text: str) -> None:
    """A progress line on stdout (only with progress on)."""
    if progress:
        print(text, flush=True)


def trial_line(number: int, params: Mapping[str, Any], retry_of: int | None = None) -> str:
    """`[optuna_mlflow] trial 3: x=1.25 y=-0.5`: what the trial tries, nothing internal."""
    text = " ".join(f"{name}={short(value)}" for name, value in params.items())
    retry = f" (retry of trial {retry_of})" if retry_of is not None else ""
    return f"{PREFIX} trial {number}{retry}" + (f": {text}" if text else "")


def short(value: Any) -> str:
    """Floats to 4 significant digits: enough to tell trials apart on a terminal."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
