"""Waiting out services that do not answer: the patience, the backoff, what is worth retrying.

One policy for every wait of a sweep (storage calls, lock polling, MLflow requests, the outbox):
retry with exponential backoff (capped at 10 s, so a service that is back is noticed soon) for up
to the patience ($OPTUNA_MLFLOW_PATIENCE, 600 s by default), then raise the last error. What is
worth retrying is a predicate the caller passes; the predicates are defined together below.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from hydra_plugins.optuna_mlflow_sweeper._impl.faults import chain, local_fault

log = logging.getLogger(__name__)
T = TypeVar("T")
PATIENCE_ENV = "OPTUNA_MLFLOW_PATIENCE"
DEFAULT_PATIENCE = 600.0
# a retry about to pause: (the error, attempts so far, seconds of the pause)
OnRetry = Callable[[BaseException, int, float], None]
STORE_RETRY_S = 10.0  # creating a store, raced by a program outside the setup lock


def patience() -> float:
    """Seconds to wait for a service that does not answer ($OPTUNA_MLFLOW_PATIENCE, else 600)."""
    try:
        return float(os.environ.get(PATIENCE_ENV) or DEFAULT_PATIENCE)
    except ValueError:
        return DEFAULT_PATIENCE


def backoff(attempt: int) -> float:
    """0.5, 1, 2, 4, 8, 10, 10... s: a server that is back is noticed within 10 s."""
    return min(10.0, 0.5 * 2 ** min(attempt, 6))


# ---- what is worth retrying: every predicate a retry is given is defined here ----

# MLflow error codes that mean the request was rejected, not lost: sending it again cannot help
_REJECTED = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
             "INVALID_STATE", "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED",
             "FEATURE_DISABLED", "NOT_IMPLEMENTED"}


def transient(error: BaseException) -> bool:
    """True for errors worth retrying: no connection, a timeout, a 5xx; False for a rejection
    or a local fault (a full disk: waiting cannot fix it)."""
    if local_fault(error):
        return False
    code = getattr(error, "error_code", None)
    if code is not None:
        return code not in _REJECTED
    return True


def created_meanwhile(error: BaseException) -> bool:
    """True when creating a store's tables met the same tables made at that moment by a program
    outside the sweep's setup lock (optuna-dashboard, a notebook's `load_study`): PostgreSQL
    fails the second of two concurrent `CREATE TABLE`s of a name with a unique violation on its
    catalog (or says the table exists). A second try finds the tables made."""
    from sqlalchemy import exc

    return isinstance(error, exc.DBAPIError) and any(
        sign in str(error) for sign in ("already exists", "pg_type_typname_nsp_index"))


def connection_lost(error: BaseException) -> bool:
    """True when `error` (or what caused it) says the database could not be reached (a full
    disk is not that: SQLite reports it as an OperationalError too)."""
    from sqlalchemy import exc  # SQLAlchemy only where a database is used (not in every job)

    return not local_fault(error) and any(
        isinstance(e, (exc.OperationalError, exc.InterfaceError))
        or (isinstance(e, exc.DBAPIError) and e.connection_invalidated) for e in chain(error))


# ---- the loops ----

def retry_call(fn: Callable[[], T], what: str, wait: float | None = None,
               retry_if: Callable[[BaseException], bool] = transient,
               on_retry: OnRetry | None = None) -> T:
    """fn(), retried on errors `retry_if` accepts (transient ones by default) with backoff for
    up to `wait` s (default: the patience; math.inf: until it succeeds), then the last error is
    raised. `on_retry(error, attempt, pause)` runs before each pause (default: a warning)."""
    limit = patience() if wait is None else wait

    def pause(state: tenacity.RetryCallState) -> float:
        left = limit - (time.monotonic() - state.start_time)
        return max(0.0, min(backoff(state.attempt_number - 1), left))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        assert error is not None and state.next_action is not None
        (on_retry or _warn(what))(error, state.attempt_number, state.next_action.sleep)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, Exception) and retry_if(e)),
        stop=tenacity.stop_never if math.isinf(limit) else tenacity.stop_after_delay(limit),
        wait=pause, before_sleep=before_sleep, reraise=True,
    )(fn)


def poll(ready: Callable[[], bool], timeout: float, interval: float) -> bool:
    """ready(), every `interval` s until it is True (returned) or `timeout` s passed (False)."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda done: not done),
        stop=tenacity.stop_after_delay(timeout), wait=tenacity.wait_fixed(interval),
        retry_error_callback=lambda state: False,
    )(ready)


def _warn(what: str) -> OnRetry:
    def say(error: BaseException, attempt: int, pause: float) -> None:
        log.warning("%s failed (%s); retrying in %.0f s", what, short(error), pause)

    return say


def short(error: BaseException) -> str:
    """`Type: message`, cut to 300 characters (for a log line)."""
    text = f"{type(error).__name__}: {error}".strip()
    return text if len(text) < 300 else text[:297] + "..."
