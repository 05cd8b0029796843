"""An Optuna RDB storage that waits out a database outage instead of failing the sweep.

Plain `RDBStorage` raises on the first lost connection: the sweeper dies with a traceback, a
trial that finished training cannot be told, and `report()` inside a job fails the trial. Each
storage call here is one transaction, so it is retried as a whole, with backoff, while the error
is a connection error (`OperationalError`, `InterfaceError`, an invalidated connection), for up
to the patience ($OPTUNA_MLFLOW_PATIENCE, 600 s by default). Then it raises as before: the trial
stays RUNNING only until its heartbeat goes stale, and is then failed and retried.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import RDBStorage

from hydra_plugins.optuna_mlflow_sweeper._impl.faults import local_fault
from hydra_plugins.optuna_mlflow_sweeper._impl.outbox import backoff, patience, retry_call

log = logging.getLogger(__name__)
T = TypeVar("T")
_local = threading.local()
JOB_ENV = "OPTUNA_MLFLOW_TRIAL_ID"  # set in a trial's job only (trial.ENV_TRIAL_ID)
WORKER_ENV = "OPTUNA_MLFLOW_WORKER"  # set in a worker: run trials here, leave the summary


def connect_patience() -> float:
    """Seconds to wait for a database that does not answer when connecting: none in the command
    a user typed (a wrong URL must fail at once), the patience in a worker or a job, which start
    after that command connected and may start during an outage."""
    started_by_a_sweep = os.environ.get(JOB_ENV) or os.environ.get(WORKER_ENV) == "1"
    return patience() if started_by_a_sweep else 0.0

# every call that reads or writes the database (nested calls are retried by the outermost one),
# the private ones included: a study wraps its RDBStorage in Optuna's `_CachedStorage`, which
# calls `_get_trials`, `_create_new_trial`, `_set_trial_param` and `_get_best_trial_id` directly
_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
    "get_trial", "get_all_trials", "get_best_trial", "record_heartbeat",
    "_get_stale_trial_ids", "_get_trials", "_create_new_trial", "_set_trial_param",
    "_get_best_trial_id",
)


def connect(open_: Callable[[], T], what: str, wait: float | None = None) -> T:
    """`open_()`, retried while the database cannot be reached for `wait` seconds (default
    `connect_patience()`), each wait said in a warning: a worker waiting out an outage says so."""
    return retry_call(open_, f"{what}: connecting",
                      wait=connect_patience() if wait is None else wait, retry_if=connection_lost)


def connection_lost(error: BaseException) -> bool:
    """True when `error` (or what caused it) says the database could not be reached (a full
    disk is not that: SQLite reports it as an OperationalError too)."""
    from sqlalchemy import exc

    if local_fault(error):
        return False

    seen: BaseException | None = error
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, (exc.OperationalError, exc.InterfaceError)):
            return True
        if isinstance(seen, exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retrying(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0):
            return method(self, *args, **kwargs)
        deadline = time.monotonic() + patience()
        attempt = 0
        _local.depth = 1
        try:
            while True:
                try:
                    return method(self, *args, **kwargs)
                except Exception as e:
                    if attempt and name == "set_trial_state_values" and _already_finished(e):
                        return True  # the lost attempt had committed
                    if not connection_lost(e) or time.monotonic() >= deadline:
                        raise
                    if attempt == 0:
                        log.warning("Optuna storage unreachable (%s: %s); retrying %s for up "
                                    "to %.0f s", type(e).__name__, str(e).splitlines()[0][:200],
                                    name, patience())
                    time.sleep(min(backoff(attempt), max(0.0, deadline - time.monotonic())))
                    attempt += 1
        finally:
            _local.depth = 0

    return call


def _already_finished(error: BaseException) -> bool:
    from optuna.exceptions import UpdateFinishedTrialError

    return isinstance(error, UpdateFinishedTrialError)


class ResilientRDBStorage(RDBStorage):
    """`RDBStorage` whose calls wait out a lost database connection (see the module doc)."""

    def __init__(self, url: str, engine_kwargs: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        engine_kwargs = dict(engine_kwargs or {})
        if not url.startswith("sqlite"):
            # a pooled connection from before a server restart is tested, not used and failed
            engine_kwargs.setdefault("pool_pre_ping", True)
        connect(functools.partial(RDBStorage.__init__, self, url, engine_kwargs=engine_kwargs,
                                  **kwargs), "Optuna storage")

    @functools.partial(_retrying, "heartbeat_trial_ids")
    def heartbeat_trial_ids(self) -> set[int]:
        """Ids of trials with a heartbeat record: Optuna has no public call for it, and a trial
        asked but never beating (its process died at once) is invisible to its stale check."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session) as session:
            return {row[0] for row in session.query(models.TrialHeartbeatModel.trial_id).all()}


for _name in _CALLS:
    if hasattr(RDBStorage, _name):
        setattr(ResilientRDBStorage, _name, _retrying(_name, getattr(RDBStorage, _name)))
