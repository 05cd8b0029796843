"""An Optuna RDB storage that waits out a database outage instead of failing the sweep.

Plain `RDBStorage` raises on the first lost connection: the sweeper dies with a traceback, a
trial that finished training cannot be told, and `report()` inside a job fails the trial. Each
storage call here is one transaction, so it is retried as a whole, with backoff, while the error
is a connection error (`OperationalError`, `InterfaceError`, an invalidated connection), for up
to the patience ($OPTUNA_MLFLOW_PATIENCE, 600 s by default). Then it raises as before: the trial
stays RUNNING only until its heartbeat goes stale, and is then failed and retried.

Every process of a sweep (the command, its workers, each trial's job) opens it with
`open_storage`.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from hydra_plugins.optuna_mlflow_sweeper._impl.env import started_by_a_sweep
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import (
    STORE_RETRY_S,
    connection_lost,
    created_meanwhile,
    patience,
    retry_call,
    short,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_local = threading.local()


def connect_patience() -> float:
    """Seconds to wait for a database that does not answer when connecting: none in the command
    a user typed (a wrong URL must fail at once), the patience in a worker or a job, which start
    after that command connected and may start during an outage."""
    return patience() if started_by_a_sweep() else 0.0

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


def _retrying(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0):
            return method(self, *args, **kwargs)
        retried = False

        def once() -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as e:
                if retried and name == "set_trial_state_values" and _already_finished(e):
                    return True  # the lost attempt had committed
                raise

        def say(error: BaseException, attempt: int, pause: float) -> None:
            nonlocal retried
            if not retried:
                log.warning("Optuna storage unreachable (%s); retrying %s for up to %.0f s",
                            short(error).splitlines()[0][:200], name, patience())
            retried = True

        _local.depth = 1
        try:
            return retry_call(once, name, retry_if=connection_lost, on_retry=say)
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
        # No pool_pre_ping: it is a transaction of its own before every call (half of a
        # trial's). A connection pooled from before a server restart fails its call once;
        # SQLAlchemy then drops the pool and the retry (below) runs on a new connection.
        sqlite = url.startswith("sqlite")
        if sqlite:
            # SQLite: wait up to 60 s for a lock another process holds, and take the write lock
            # at each transaction's BEGIN (isolation_level None: pysqlite issues no BEGIN of
            # its own). pysqlite runs a SELECT outside any transaction, so Optuna's
            # read-then-write calls (fail a RUNNING trial, run a WAITING one) could succeed in
            # two processes at once, e.g. two workers failing one stale trial and queueing two
            # retries of it.
            engine_kwargs = {**(engine_kwargs or {}), "connect_args": {
                "timeout": 60, "isolation_level": None,
                **(engine_kwargs or {}).get("connect_args", {})}}
        create = functools.partial(RDBStorage.__init__, self, url, engine_kwargs=engine_kwargs,
                                   **kwargs)
        # the tables are made under the setup lock, but a program outside it may make them at
        # the same moment: then a second try finds them
        connect(lambda: retry_call(create, "creating the Optuna storage", wait=STORE_RETRY_S,
                                   retry_if=created_meanwhile, on_retry=lambda *_: None),
                "Optuna storage")
        if sqlite:
            sqlalchemy.event.listen(self.engine, "begin",
                                    lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))

    @functools.partial(_retrying, "write_trial")
    def write_trial(self, trial_id: int, user_attrs: dict[str, Any],
                    system_attrs: dict[str, Any], heartbeat: bool = False) -> None:
        """A running trial's attrs (and a heartbeat), in one transaction: Optuna writes each
        attr in one of its own (`set_trial_user_attr`), and every one is a round trip."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session, True) as session:
            for model, attrs in ((models.TrialUserAttributeModel, user_attrs),
                                 (models.TrialSystemAttributeModel, system_attrs)):
                for key, value in attrs.items():
                    self._set_trial_attr_without_commit(session, model, trial_id, key, value)
            if heartbeat:  # as `record_heartbeat`
                beat = models.TrialHeartbeatModel.where_trial_id(trial_id, session, True)
                if beat is None:
                    session.add(models.TrialHeartbeatModel(trial_id=trial_id))
                else:
                    beat.heartbeat = session.execute(sqlalchemy.func.now()).scalar_one()

    @functools.partial(_retrying, "heartbeat_times")
    def heartbeat_times(self) -> dict[int, Any]:
        """Each beating trial's last heartbeat (as the database wrote it). Optuna has no public
        call for it. Its keys show which trials ever beat (one asked and never beating is
        invisible to Optuna's stale check); comparing two reads tells a trial whose process still
        beats from one that stopped, without trusting clocks."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        model = models.TrialHeartbeatModel
        with _create_scoped_session(self.scoped_session) as session:
            return dict(session.query(model.trial_id, model.heartbeat).all())


for _name in _CALLS:
    if hasattr(RDBStorage, _name):
        setattr(ResilientRDBStorage, _name, _retrying(_name, getattr(RDBStorage, _name)))


class StaleTrialRetry(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial failed as stale, noting the trials this process failed
    (`failed`): of processes that check one study at once, the storage lets one fail each
    stale trial, and Optuna calls only that one's callback."""

    def __init__(self, max_retry: int | None = None) -> None:
        super().__init__(max_retry)
        self.failed: list[optuna.trial.FrozenTrial] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.failed.append(trial)
        super().__call__(study, trial)


def open_storage(url: str, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 max_retry: int | None = None) -> ResilientRDBStorage:
    """The study storage at `url`, as every process of a sweep opens it: SQLite waits up to 60 s
    for a lock held by another process; with `heartbeat_interval`, running trials whose heartbeat
    stopped for `grace_period` s are failed and retried (up to `max_retry` times)."""
    kwargs: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat_interval:
            kwargs.update(
                heartbeat_interval=int(heartbeat_interval),
                grace_period=int(grace_period) if grace_period else None,
                heartbeat_stale_trial_callback=StaleTrialRetry(max_retry),
            )
        return ResilientRDBStorage(url, **kwargs)
