"""The resilient Optuna storage against a real PostgreSQL that goes away and comes back.

Each call a worker makes through a study (Optuna wraps the storage in its `_CachedStorage`,
which calls private `RDBStorage` methods) must wait out the outage and then succeed, with the
session usable afterwards: Optuna's own fallback in `_get_trials` reuses a session whose
connection died, which surfaced as `StorageInternalError` ("PendingRollbackError") in CI.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from alembic.script import ScriptDirectory
from optuna.trial import TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl.env import ENV_WORKER
from hydra_plugins.optuna_mlflow_sweeper._impl.locks import setup_lock
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import ResilientRDBStorage, open_storage
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import poll
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import Postgres

# long enough to see a call wait; a restart within the first backoff pauses (0.5, 1 s) is met
# by the retry 1.5 s in
OUTAGE_S = 1.0


def during_outage(pg: Postgres, call: Callable[[], Any]) -> Any:
    """`call()` started while the database is down; the database comes back after OUTAGE_S."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as e:  # handed to the test's thread
            result["error"] = e

    pg.stop()
    try:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        time.sleep(OUTAGE_S)
        assert worker.is_alive(), f"returned during the outage: {result}"
    finally:
        pg.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "still waiting 120 s after the database came back"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.slow
def test_study_calls_wait_out_a_database_restart(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPTUNA_MLFLOW_PATIENCE", "60")
    storage = ResilientRDBStorage(postgres.url("optuna", "postgresql+psycopg"))
    study = optuna.create_study(study_name=f"restart-{uuid.uuid4().hex[:8]}", storage=storage)
    for x in (1.0, 2.0):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 5) + x)

    caplog.set_level(logging.WARNING)
    # reads through the cache's private calls, then a trial's whole life, each across a restart
    assert len(during_outage(postgres, study.get_trials)) == 2
    assert during_outage(postgres, lambda: study.best_trial.number) in (0, 1)
    trial = during_outage(postgres, study.ask)
    x = during_outage(postgres, lambda: trial.suggest_float("x", 0, 5))
    during_outage(postgres, lambda: trial.report(x, step=1))
    during_outage(postgres, lambda: study.tell(trial, x))

    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[2].params == {"x": x} and trials[2].intermediate_values == {1: x}
    assert "Optuna storage unreachable" in caplog.text


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_worker_started_during_an_outage_waits_for_the_database(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What a worker does first (the setup lock, the storage, its heartbeat query) waits; the
    command a user typed fails at once instead, so that a wrong URL is not waited for."""
    url = postgres.url("optuna", "postgresql+psycopg")
    monkeypatch.setenv("OPTUNA_MLFLOW_PATIENCE", "60")
    postgres.stop()
    try:
        started = time.monotonic()
        with pytest.raises(sqlalchemy.exc.OperationalError):
            ResilientRDBStorage(url)
        with pytest.raises(sqlalchemy.exc.OperationalError):
            with setup_lock(url):
                pass
        assert time.monotonic() - started < 2.0  # at once, not after a retry's pauses
    finally:
        postgres.start()

    monkeypatch.setenv(ENV_WORKER, "1")
    caplog.set_level(logging.WARNING)

    def take_the_lock() -> bool:
        with setup_lock(url):
            return True

    assert during_outage(postgres, take_the_lock)
    assert "the setup lock: connecting failed" in caplog.text
    storage = during_outage(postgres, lambda: ResilientRDBStorage(url, heartbeat_interval=60))
    assert "Optuna storage: connecting failed" in caplog.text
    assert isinstance(during_outage(postgres, storage.heartbeat_times), dict)
    assert postgres.password not in caplog.text


FAIL_ALL = """
import sys, time
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import open_storage
storage = open_storage(sys.argv[1])
trials = storage.get_all_trials(storage.get_study_id_from_name("race"))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # both start at once, imports done
for t in trials:  # in the same order: both try each trial at about the same time
    try:
        if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
            print(t.number)
    except UpdateFinishedTrialError:
        pass
"""


def test_two_processes_never_both_fail_one_sqlite_trial(tmp_path: Path) -> None:
    """Failing a RUNNING trial reads, then writes: on SQLite both must happen in one locked
    transaction, or two workers failing a stale trial both queue its retry."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    for _ in range(100):
        study.ask()
    go = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", FAIL_ALL, url, go], text=True,
                              stdout=subprocess.PIPE) for _ in range(2)]
    try:
        won = [set(p.communicate(timeout=120)[0].split()) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0]
    assert won[0] | won[1] == {str(n) for n in range(100)}
    assert not won[0] & won[1], "failed by both processes"


@pytest.mark.slow
def test_tables_made_meanwhile_by_a_program_outside_the_setup_lock_are_joined(
    postgres: Postgres
) -> None:
    """A program that makes Optuna's tables at the moment a sweep does (optuna-dashboard, a
    notebook's `load_study`; it takes no setup lock): PostgreSQL holds the sweep's `CREATE TABLE`
    of the same name until the other transaction ends, then fails it (a unique violation). The
    sweep's storage opens all the same, on the tables the other made."""
    url = postgres.create_database(f"race_{uuid.uuid4().hex[:8]}")
    head = ScriptDirectory(str(Path(optuna.storages.__file__).parent / "_rdb" / "alembic"))
    opened: dict[str, Any] = {}

    def open_it() -> None:
        try:
            opened["storage"] = open_storage(url)
        except Exception as e:  # handed to the test's thread
            opened["error"] = e

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    watch = sqlalchemy.create_engine(postgres.url("postgres"), poolclass=sqlalchemy.pool.NullPool,
                                     isolation_level="AUTOCOMMIT")
    sweep = threading.Thread(target=open_it, daemon=True)
    with engine.connect() as other, watch.connect() as w:
        # the other program's table, made and stamped, its transaction still open
        other.execute(sqlalchemy.text(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
        other.execute(sqlalchemy.text("INSERT INTO alembic_version VALUES (:v)"),
                      {"v": head.get_current_head()})
        sweep.start()
        waiting = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity "
                                  "WHERE datname = :db AND wait_event_type = 'Lock'")
        waited = poll(lambda: not sweep.is_alive()
                      or bool(w.execute(waiting, {"db": url.rpartition("/")[2]}).scalar()),
                      60, 0.05)
        assert waited and sweep.is_alive(), \
            f"the sweep's storage never waited for the other's table: {opened}"
        other.commit()
    sweep.join(timeout=60)
    assert not sweep.is_alive() and "error" not in opened, opened
    study = optuna.create_study(storage=opened["storage"], study_name="joined")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(optuna.load_study(study_name="joined", storage=url).trials) == 1
