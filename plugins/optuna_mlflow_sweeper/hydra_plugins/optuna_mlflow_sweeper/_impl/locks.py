"""Locks across the processes (and machines) of a shared study: one holder at a time.

`setup_lock`: workers started at the same instant on fresh stores race where a store is created:
Optuna's tables (SQLite: "table ... already exists"; PostgreSQL: `CREATE TYPE studydirection`
twice), MLflow's schema migrations (`UNIQUE constraint failed: alembic_version`), the study's
one-time records (enqueued configs, the parent run, worker numbers). Holding it through all of
that makes the first process create everything and the others find it made.

`budget_lock`: checking the shared n_trials budget and asking a trial are one step, so that two
workers seeing the last free trial do not both run it.

SQLite: `filelock`'s lock on a file beside the database (`flock`, released by the OS when a
process dies, so a SIGKILLed worker cannot wedge the next start). PostgreSQL: a
transaction-level advisory lock (`pg_try_advisory_xact_lock`), released when its transaction ends
or its connection closes. Other databases get no lock.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import connect
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import (
    patience,
    poll,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import redact
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import sqlite_path

LOCK_TIMEOUT_S = 300.0  # a holder longer than this is broken, not slow


def setup_lock(storage_url: str, timeout: float = LOCK_TIMEOUT_S, name: str = "setup",
               wait: float | None = None) -> contextlib.AbstractContextManager[None]:
    """The lock on creating a store and a study's one-time records. `name`: "setup" for the
    study's storage, "mlflow" for the MLflow store, which the study's setup takes while it holds
    its own (two locks: they never wait on each other whichever database each is in). `wait`:
    seconds to wait for a database that cannot be reached (default: `connect_patience()`)."""
    return _lock(storage_url, name, timeout, wait)


def budget_lock(
    storage_url: str, timeout: float = LOCK_TIMEOUT_S
) -> contextlib.AbstractContextManager[None]:
    """The lock on the shared budget: checking it and asking a trial. Only a started sweep
    takes it, so it waits out an unreachable database for the patience."""
    return _lock(storage_url, "budget", timeout, patience())


@contextlib.contextmanager
def _lock(storage_url: str, name: str, timeout: float, wait: float | None) -> Iterator[None]:
    """Exclusive across processes (and machines, for PostgreSQL) for one storage and `name`."""
    database = sqlite_path(storage_url)
    if database is not None:
        suffix = ".lock" if name == "setup" else f".{name}.lock"
        with _file_lock(Path(database).with_suffix(suffix), name, timeout):
            yield
    elif storage_url.startswith("postgresql"):
        with _pg_lock(storage_url, timeout, name, wait):
            yield
    else:
        yield


@contextlib.contextmanager
def _file_lock(path: Path, name: str, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=timeout, poll_interval=0.05)
    except Timeout:
        raise TimeoutError(f"another sweep process held the {name} lock {path} for "
                           f"{timeout:g} s") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _pg_lock(storage_url: str, timeout: float, name: str,
             wait: float | None) -> Iterator[None]:
    import sqlalchemy

    key = int.from_bytes(hashlib.sha1(f"optuna_mlflow:{name}".encode()).digest()[:7], "big")
    setup_done = False
    try:
        with _pg_locked(_engine(storage_url), key, name, timeout, wait) as conn:
            try:
                yield
                setup_done = True
            finally:
                try:
                    conn.commit()  # ends the transaction: releases the lock
                finally:
                    conn.close()
    except sqlalchemy.exc.OperationalError:
        # Releasing failed (closing the connection included): a database restarted meanwhile
        # took the lock with the connection, and the setup it guarded went on regardless.
        if not setup_done:
            raise


@functools.cache
def _engine(storage_url: str) -> Any:
    """One engine per database and process, its connection kept between locks: a new engine
    pays the driver's start-up queries (transactions, on a shared server) on every lock."""
    import sqlalchemy

    return sqlalchemy.create_engine(storage_url, pool_size=1, max_overflow=2)


def _pg_locked(engine: Any, key: int, name: str, timeout: float, wait: float | None) -> Any:
    """A connection whose open transaction holds the advisory lock `key`
    (`pg_try_advisory_xact_lock`, polled for like the file lock): taking, holding and releasing
    it is one transaction; a process that dies releases it with its connection. A worker that
    starts during a database outage waits for the database (`connect`); a connection pooled
    from before a restart fails once and is replaced at once, whatever the patience; another
    holder past `timeout` is a TimeoutError."""
    import sqlalchemy

    def lock() -> Any:
        try:
            return take()
        except sqlalchemy.exc.DBAPIError as e:
            if not e.connection_invalidated:
                raise
            return take()  # the pool dropped a connection from before a restart: a new one

    def take() -> Any:
        conn = engine.connect()
        try:
            query = sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:key)")
            if not poll(lambda: bool(conn.execute(query, {"key": key}).scalar()), timeout, 0.2):
                where = redact(engine.url.render_as_string(hide_password=False))
                raise TimeoutError(f"another sweep process held the {name} lock of {where} "
                                   f"for {timeout:g} s")
            return conn
        except BaseException:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.close()
            raise

    return connect(lock, f"the {name} lock", wait)
