"""Passwords stay out of everything a sweep records: configs Hydra saves, MLflow, logs, output.

A password reaches a sweep in a storage URL, a tracking URI or an environment variable
(`MLFLOW_TRACKING_PASSWORD`, or any variable a `${oc.env:...}` interpolation reads). Hydra writes
the command-line overrides and the sweeper config into `multirun.yaml` and into every job's
`.hydra/hydra.yaml`; jobs recompose their config from the sweep's overrides. So the sweeper masks
the password in its own config and overrides *before* anything is saved or launched, and hands
the real URLs to jobs through environment variables only (`Prepared.secret_env`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, unquote

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from hydra_plugins.optuna_mlflow_sweeper._impl.env import ENV_STORAGE
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import quote as override_quote

MASK = "***"
# `scheme://user:password@` -> the password; the user may be empty (`://:pw@host`); up to the
# last `@` before the path, so that an unencoded `@` in the password is masked too
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^/@:\s]*:)(?P<pw>[^/\s]+)(?=@)")
# variables whose whole value is a secret
SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD")
# variables that hold URLs which may carry a password
URL_ENV = ("MLFLOW_TRACKING_URI", ENV_STORAGE, "OPTUNA_STORAGE",
           "MLFLOW_BACKEND_STORE_URI")


def parsed_url(url: str | None) -> Any | None:
    """`url` as SQLAlchemy's `make_url` reads it (database and http(s) URLs alike), or None where
    it cannot: no scheme, or an unencoded `@` in the password (it would take the rest for the
    host)."""
    from sqlalchemy.engine import make_url  # SQLAlchemy only once a URL is read

    if not url or "://" not in url:
        return None
    try:
        parsed = make_url(url)
    except Exception:
        return None
    return None if "@" in (parsed.host or "") else parsed


def url_password(url: str | None) -> str | None:
    """The password in `url` (decoded), or None."""
    parsed = parsed_url(url)
    if parsed is not None:
        return parsed.password or None
    match = _URL_PASSWORD.search(url or "")
    return unquote(match.group("pw")) if match else None


def known_secrets(urls: Iterable[str | None] = ()) -> set[str]:
    """Passwords in `urls` and in the environment (secret variables, URL variables)."""
    found = {os.environ.get(name, "") for name in SECRET_ENV}
    found |= {url_password(u) or "" for u in [*urls, *(os.environ.get(n) for n in URL_ENV)]}
    return {s for s in found if len(s) >= 3}  # "pw" would blank every "pw" in any text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every URL password and every known secret (plain or %-encoded) as ***."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, MASK)
    return text


def urls_in(value: Any) -> list[str]:
    """Every string holding a URL in `value` (settings, configs, dicts, lists, nested): the URLs
    a sweep was given, wherever in its settings they are (storage, warm start, tracking...)."""
    if isinstance(value, (DictConfig, ListConfig)):
        try:
            value = OmegaConf.to_container(value, resolve=True)
        except Exception:  # an interpolation this config cannot resolve: the text as written
            value = OmegaConf.to_container(value, resolve=False)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = vars(value)
    if isinstance(value, dict):
        return [url for item in value.values() for url in urls_in(item)]
    if isinstance(value, (list, tuple)):
        return [url for item in value for url in urls_in(item)]
    return [value] if isinstance(value, str) and "://" in value else []


def scrub_config(config: DictConfig, secrets: Iterable[str]) -> None:
    """Mask secrets in the sweep's config in place (before it is saved or jobs compose from it).

    Overrides (`hydra.overrides.hydra`/`.task`) are masked as text, so jobs recompose with the
    masked URL. A URL with a password written in a config file (not an override), under any
    key of `hydra.sweeper`, is masked by an added `++key=...` override. Interpolations such as
    `${oc.env:OPTUNA_STORAGE}` are kept: unresolved, they record where the value comes from,
    not the value.
    """
    secrets = set(secrets)
    if not secrets:
        return
    hydra = config.hydra
    with read_write(hydra), open_dict(hydra):
        for group in ("hydra", "task"):
            lines = [str(x) for x in hydra.overrides[group]]
            hydra.overrides[group] = [redact(x, secrets) for x in lines]
        for key, raw in _strings(hydra.sweeper):
            if _is_interpolation(raw) or redact(raw, secrets) == raw:
                continue
            masked = redact(raw, secrets)
            OmegaConf.update(hydra.sweeper, key, masked, merge=False)
            if not any(line.lstrip("+").startswith(f"hydra.sweeper.{key}=")
                       for line in hydra.overrides.hydra):
                hydra.overrides.hydra.append(f"++hydra.sweeper.{key}={override_quote(masked)}")


def _strings(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value as written) of every string under `node` (interpolations unresolved)."""
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            yield from _strings(child, f"{prefix}{key}.")
        elif child is not None and isinstance(child._value(), str):  # type: ignore[union-attr]
            yield f"{prefix}{key}", child._value()  # type: ignore[union-attr]


def _is_interpolation(value: str) -> bool:
    return value.startswith("${") and value.endswith("}")


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with secrets masked (on handlers: covers every logger)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info),
                                     self.secrets)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def redact_logs(secrets: Iterable[str]) -> None:
    """Mask secrets in every log record the root logger's handlers write (console, job log)."""
    secrets = set(secrets)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(secrets))


def hide_mlflow_run_links() -> None:
    """Off: MLflow's own "View run NAME at: URL" lines, written to stdout as each run on a
    tracking server ends, the URL with the password of a `http://user:PW@host` tracking URI
    (no log record a filter could mask). The sweeper and the app print their own links, masked.
    Set in the environment, so every job and worker this process starts inherits it."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
