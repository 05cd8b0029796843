"""Errors a user can act on.

A `ConfigError` is raised before any training or tracking starts, so a typo in an override never
costs a training run and never leaves a half-written MLflow run behind.
"""

from __future__ import annotations

import numbers
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper import SweeperConfigError


def is_int(value: Any) -> bool:
    """An integer config value (NumPy's too). YAML's true/false are ints to Python: not these."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_positive_int(value: Any) -> bool:
    return is_int(value) and value >= 1


class ConfigError(SweeperConfigError):
    """A config value is invalid; the message names the key and what is allowed.

    The sweeper's error with the same message shape ("invalid value X for 'key': allowed ..."),
    so a bad value reads the same whichever part caught it.
    """


class DataUnavailableError(RuntimeError):
    """No MNIST source could be read; the message lists what was tried and how to supply it."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is recorded as failed, the sweep goes on."""
