"""Sweeper config errors: raised before the first trial, naming the offending config key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hydra.errors import CompactHydraException

from mnist_sweep.errors import ConfigError


class SweeperConfigError(ConfigError, CompactHydraException):
    """A ConfigError that Hydra prints as its message alone (no stack trace)."""


def config_error(
    key: str, value: Any, allowed: Iterable[Any] | str, detail: str | None = None
) -> ConfigError:
    """A ConfigError ("invalid value ... for '<key>': allowed ...") with an optional detail."""
    error = SweeperConfigError(key, value, allowed)
    if detail:
        error.args = (f"{error.args[0]}\n  " + "\n  ".join(detail.strip().splitlines()),)
    return error


class SweepAborted(RuntimeError):
    """Too many trials failed (max_failure_rate), so the sweep stopped early."""
