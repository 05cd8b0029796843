"""Errors a user can act on.

A `ConfigError` is raised before any training or tracking starts, so a typo in an override never
costs a training run and never leaves a half-written MLflow run behind.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from collections.abc import Iterable
from typing import Any

from hydra.errors import MissingConfigException
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


class Rejected(BaseException):  # noqa: N818 (not an error of its own: a ConfigError's carrier)
    """A ConfigError (its cause) found by a Hydra callback before Hydra creates the run's folder.

    A BaseException because Hydra's callback runner turns an Exception into a warning and goes
    on; `mnist-sweep`'s entry point reports the ConfigError as any other, in one line."""


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """` (did you mean 'prefix.choice'?)` for the choice closest to `word`, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def unknown_key(key: str, known: Iterable[str]) -> ConfigError:
    """`unknown key 'train.epoch' (did you mean 'train.epochs'?); train has: epochs, ...`."""
    known = list(known)
    parent, _, leaf = key.rpartition(".")
    error = ConfigError(key, None, f"keys {', '.join(known)}")
    error.args = (f"unknown key '{key}'{did_you_mean(leaf, known, f'{parent}.' if parent else '')}"
                  f"; {parent or 'the config'} has: {', '.join(known)}",)
    return error


# Hydra 1.1's optuna sweeper took its ranges here; Hydra 1.2+ (and this sweeper) take `params`
OLD_KEYS = {"search_space": "hydra.sweeper.params (e.g. hydra.sweeper.params.x='interval(0,1)'; "
                            "a custom space: hydra.sweeper.custom_search_space)"}


def one_line(exc: BaseException) -> str:
    """A config error as one line: what is wrong, and the nearest valid name when one is close.

    Hydra's composition errors (an unknown key, a config group option that does not exist) are
    several lines and a hint; the key they name and the options they list are in the exception.
    """
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    for error in chain:
        if isinstance(error, MissingConfigException) and error.options is not None:
            group, _, name = (error.missing_cfg_file or "").rpartition("/")
            hint = did_you_mean(name, error.options, f"{group}=")
            return (f"no option '{name}' in config group '{group}'{hint}; options: "
                    f"{', '.join(error.options)}")
        key, owner = getattr(error, "full_key", None), getattr(error, "object_type", None)
        if key and "not in" in str(error):
            leaf = str(key).rpartition(".")[2]
            if leaf in OLD_KEYS and ".sweeper." in f".{key}":
                return f"'{key}' is gone: its replacement is {OLD_KEYS[leaf]}"
            if owner is not None and dataclasses.is_dataclass(owner):
                return unknown_key(str(key), [f.name for f in dataclasses.fields(owner)]).args[0]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = exc.__cause__ and str(exc.__cause__).strip().splitlines()[0]
    if cause and cause not in lines:  # Hydra's "Error merging override x=y": why, in its cause
        lines.append(cause)
    return "; ".join(lines) or type(exc).__name__


class DataUnavailableError(RuntimeError):
    """No MNIST source could be read; the message lists what was tried and how to supply it."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is recorded as failed, the sweep goes on."""
