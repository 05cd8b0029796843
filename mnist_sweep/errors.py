"""Errors a user can act on.

A `ConfigError` is raised before any training or tracking starts, so a typo in an override never
costs a training run and never leaves a half-written MLflow run behind.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any


def is_int(value: Any) -> bool:
    """An integer config value (NumPy's too). YAML's true/false are ints to Python: not these."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_positive_int(value: Any) -> bool:
    return is_int(value) and value >= 1


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: Iterable[Any] | str) -> None:
        allowed_text = allowed if isinstance(allowed, str) else ", ".join(map(str, allowed))
        super().__init__(f"invalid value {value!r} for '{key}': allowed {allowed_text}")
        self.key = key
        self.value = value
        self.allowed = allowed_text


class DataUnavailableError(RuntimeError):
    """No MNIST source could be read; the message lists what was tried and how to supply it."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is recorded as failed, the sweep goes on."""
