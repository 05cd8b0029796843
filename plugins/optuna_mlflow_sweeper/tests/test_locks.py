"""The setup lock on real stores (SQLite's lock file and PostgreSQL's advisory lock), and a new
MLflow store created once under it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy

from hydra_plugins.optuna_mlflow_sweeper._impl.faults import LocalFault
from hydra_plugins.optuna_mlflow_sweeper._impl.locks import create_store, setup_lock
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import Postgres


def assert_exclusive(url: str) -> None:
    """A second holder waits until the first leaves, then gets in (a lock that let it in
    would within the half second it is given)."""
    entered = threading.Event()

    def second() -> None:
        with setup_lock(url):
            entered.set()

    waiter = threading.Thread(target=second, daemon=True)
    with setup_lock(url):
        waiter.start()
        assert not entered.wait(0.5), "two holders at once"
    assert entered.wait(30), "the lock was not handed over"
    waiter.join(timeout=30)


def test_the_sqlite_lock_is_exclusive(tmp_path: Path) -> None:
    assert_exclusive(f"sqlite:///{tmp_path}/optuna.db")


def test_a_held_sqlite_lock_times_out_with_a_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    with setup_lock(url), pytest.raises(TimeoutError, match="held .*optuna.lock"):
        with setup_lock(url, timeout=0.5):
            pass


@pytest.mark.slow
def test_the_postgres_lock_is_exclusive_and_outlives_a_restart(postgres: Postgres) -> None:
    url = postgres.url("optuna", "postgresql+psycopg")
    assert_exclusive(url)
    with setup_lock(url):  # the restart took the lock with its connection: leaving is quiet
        postgres.stop()
        postgres.start()
    assert_exclusive(url)
    postgres.stop()  # between locks: the connection this process pooled is gone
    postgres.start()
    with setup_lock(url, wait=0):  # no patience, as in the command a user typed
        pass
    # a database error of the setup itself is not mistaken for the lost lock
    with pytest.raises(sqlalchemy.exc.OperationalError, match="the setup's own"):
        with setup_lock(url):
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("the setup's own"))


@pytest.mark.slow
def test_a_held_postgres_lock_times_out_with_a_message(postgres: Postgres) -> None:
    url = postgres.url("optuna", "postgresql+psycopg")
    with setup_lock(url), pytest.raises(TimeoutError, match=r"held the setup lock of .*\*\*\*@"):
        with setup_lock(url, timeout=0.5):
            pass
    with setup_lock(url), setup_lock(url, name="mlflow", timeout=0.5):
        pass  # the study's setup takes MLflow's lock while it holds its own: another lock


CREATE = """
import sys
from hydra_plugins.optuna_mlflow_sweeper._impl.runs import MlflowTracker
print(MlflowTracker(sys.argv[1], "race").experiment_id)
"""


@pytest.mark.slow
def test_processes_creating_a_new_store_at_once_create_it_once(tmp_path: Path) -> None:
    """Two pairs of real processes, each pair opening the sweep's tracker on a new SQLite
    store: MLflow's migrations run once, under the project's lock, wherever a tracker is made
    (before, only open_parent_run took it, the app's runs none; unlocked, every pair failed:
    'table ... already exists')."""
    procs = [subprocess.Popen([sys.executable, "-c", CREATE, f"sqlite:///{tmp_path}/{i}.db"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 0, 1, 1)]
    done = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in done]
    assert [out.strip().splitlines()[-1] for out, _ in done] == ["1"] * 4


@pytest.mark.slow
def test_a_store_mlflow_cannot_create_is_named_in_one_line(tmp_path: Path) -> None:
    """A SQLite file MLflow's migrations cannot bring up to date (a revision it does not know);
    slow: the sweeper tries MLflow's creation again for some seconds before it gives up."""
    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('f00dfeed0000')")
    uri = f"sqlite:///{path}"
    with pytest.raises(LocalFault) as error:
        create_store(uri)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"cannot create the MLflow store {uri}: ")
