"""One sweep process at a time through the setup of a shared study.

Workers started at the same instant on fresh stores race where a store is created: Optuna's
tables (SQLite: "table ... already exists"; PostgreSQL: `CREATE TYPE studydirection` twice),
MLflow's schema migrations (`UNIQUE constraint failed: alembic_version`), the study's one-time
records (enqueued configs, the parent run, worker numbers). Holding one lock per study storage
through all of it makes the first process create everything and the others find it made.

SQLite: an advisory lock on a file beside the database (`fcntl.flock`, released by the OS when
a process dies, so a SIGKILLed worker cannot wedge the next start). PostgreSQL: a session-level
advisory lock (`pg_advisory_lock`), released when its connection closes. Other databases get no
lock and rely on retries (`retry`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hydra_plugins.optuna_mlflow_sweeper._impl.outbox import backoff
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import connect_patience, connection_lost
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url

log = logging.getLogger(__name__)

T = TypeVar("T")
LOCK_TIMEOUT_S = 300.0  # a setup holding the lock longer than this is broken, not slow


@contextlib.contextmanager
def setup_lock(storage_url: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive across processes (and machines, for PostgreSQL) for one storage URL."""
    if storage_url.startswith("sqlite:///"):
        with _file_lock(Path(storage_url[len("sqlite:///"):]).with_suffix(".lock"), timeout):
            yield
    elif storage_url.startswith("postgresql"):
        with _pg_lock(storage_url, timeout):
            yield
    else:
        yield


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another sweep process held {path} for {timeout:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _pg_lock(storage_url: str, timeout: float) -> Iterator[None]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
    setup_done = False
    try:
        with _pg_locked(engine, timeout) as conn:
            try:
                yield
                setup_done = True
            finally:
                with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"),
                                 {"key": _PG_KEY})
    except sqlalchemy.exc.OperationalError:
        # Releasing failed (closing the connection included): a database restarted meanwhile
        # took the lock with the connection, and the setup it guarded went on regardless.
        if not setup_done:
            raise
    finally:
        engine.dispose()


_PG_KEY = int.from_bytes(hashlib.sha1(b"optuna_mlflow:setup").digest()[:7], "big")
_PG_LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout that ran out


def _pg_locked(engine: Any, timeout: float) -> Any:
    """A connection holding the advisory lock. A worker that starts during a database outage
    waits for the database (`connect_patience`); another holder past `timeout` is an error."""
    import sqlalchemy

    deadline = time.monotonic() + connect_patience()
    attempt = 0
    while True:
        conn = None
        try:
            conn = engine.connect()
            conn.execute(sqlalchemy.text(f"SET lock_timeout = '{int(timeout * 1000)}ms'"))
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _PG_KEY})
            return conn
        except sqlalchemy.exc.DBAPIError as e:
            if conn is not None:
                with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                    conn.close()
            if getattr(e.orig, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE:
                raise TimeoutError(f"another sweep process held the setup lock of "
                                   f"{mask_url(str(engine.url))} for {timeout:.0f} s") from None
            if not connection_lost(e) or time.monotonic() >= deadline:
                raise
            time.sleep(backoff(attempt))
            attempt += 1


def retry(fn: Callable[[], T], what: str, attempts: int = 6) -> T:
    """`fn()`, again after a short random wait when it fails: for races no lock covers."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:
            if attempt == attempts:
                raise
            wait = random.uniform(0.1, 0.5) * attempt
            log.debug("%s failed (%s: %s), retrying in %.1f s", what, type(e).__name__, e, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")
