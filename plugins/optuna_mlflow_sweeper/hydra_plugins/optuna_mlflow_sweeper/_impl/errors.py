"""Sweeper config errors: raised before the first trial, naming the offending config key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hydra.errors import CompactHydraException


class SweeperConfigError(ValueError, CompactHydraException):
    """A `hydra.sweeper.*` value is invalid; Hydra prints the message alone (no stack trace).

    A ValueError too, so callers that catch bad values in general catch this one.
    """

    def __init__(self, key: str, value: Any, allowed: Iterable[Any] | str) -> None:
        allowed_text = allowed if isinstance(allowed, str) else ", ".join(map(str, allowed))
        super().__init__(f"invalid value {value!r} for '{key}': allowed {allowed_text}")
        self.key = key
        self.value = value
        self.allowed = allowed_text


def config_error(
    key: str, value: Any, allowed: Iterable[Any] | str, detail: str | None = None
) -> SweeperConfigError:
    """SweeperConfigError("invalid value ... for '<key>': allowed ...") + an optional detail."""
    error = SweeperConfigError(key, value, allowed)
    if detail:
        error.args = (f"{error.args[0]}\n  " + "\n  ".join(detail.strip().splitlines()),)
    return error


class SweepAborted(RuntimeError, CompactHydraException):
    """Too many trials failed (max_failure_rate), so the sweep stopped early: one line on the
    terminal (Hydra prints a CompactHydraException's message alone), the reasons in the study."""
