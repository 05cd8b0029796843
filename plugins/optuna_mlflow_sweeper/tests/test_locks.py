"""The setup lock on real stores: SQLite's lock file and PostgreSQL's advisory lock."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy

from hydra_plugins.optuna_mlflow_sweeper._impl.locks import setup_lock
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
