"""Python values -> Hydra override grammar text (the inverse of Hydra's override parser).

Used for sampled params, values a custom search space returns (lists/dicts allowed), enqueued
configs, and the per-trial `++hydra.job.env_set.NAME='value'` overrides.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

_SAFE_STR = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_\-]+")
_INTERPOLATION = re.compile(r"(\\*)\$\{")
_KEYWORDS = {"true", "false", "null", "inf", "nan"}


def quote(text: str, interpolate: bool = False) -> str:
    """Single-quoted override string that Hydra parses back to exactly `text`.

    Hydra's quoted strings: a quote inside is escaped as \\', backslashes are literal except those
    right before a quote (or before the closing quote), which must be doubled. Unless
    `interpolate`, `${` is escaped so OmegaConf keeps the text literally.
    """
    if not interpolate:
        text = _INTERPOLATION.sub(lambda m: m.group(1) * 2 + "\\${", text)
    out: list[str] = []
    backslashes = 0
    for ch in text:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == "'":
            out.append("\\" * (2 * backslashes) + "\\'")
        else:
            out.append("\\" * backslashes + ch)
        backslashes = 0
    out.append("\\" * (2 * backslashes))
    return "'" + "".join(out) + "'"


def format_value(value: Any, interpolate: bool = False) -> str:
    """Override grammar text for a Python value (None, bool, int, float, str, list, dict).

    Strings are literal unless `interpolate` (then `${...}` stays an OmegaConf interpolation).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if _SAFE_STR.fullmatch(value) and value.lower() not in _KEYWORDS:
            return value
        return quote(value, interpolate)
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not _SAFE_KEY.fullmatch(str(key)):
                raise ValueError(f"dict key {key!r} cannot be written in Hydra override grammar")
            items.append(f"{key}:{format_value(item, interpolate)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(format_value(item, interpolate) for item in value) + "]"
    # numpy scalars and the like
    for cast in (int, float):
        try:
            if cast(value) == value:
                return format_value(cast(value), interpolate)
        except (TypeError, ValueError):
            pass
    raise ValueError(f"{value!r} ({type(value).__name__}) cannot be written as a Hydra override")


def override(key: str, value: Any) -> str:
    return f"{key}={format_value(plain(value))}"


def env_override(env: Mapping[str, str]) -> str:
    """Per-job environment variables: Hydra's run_job sets them inside the job and restores them.

    One `hydra.job.env_set={NAME:'value',...}` override: it merges into the app's own env_set, and
    Hydra's launchers leave `hydra.*` overrides out of their job listings.
    """
    items = []
    for name, value in env.items():
        if not _SAFE_KEY.fullmatch(name):
            raise ValueError(f"environment variable name {name!r} cannot be written as an override")
        items.append(f"{name}:{quote(str(value))}")
    return "++hydra.job.env_set={" + ",".join(items) + "}"


def plain(value: Any) -> Any:
    """OmegaConf containers -> plain Python containers (resolved); other values as they are."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value
