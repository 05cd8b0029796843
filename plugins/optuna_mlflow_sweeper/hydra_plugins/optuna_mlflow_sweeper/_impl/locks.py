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

from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import connect
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url

log = logging.getLogger(__name__)

T = TypeVar("T")
LOCK_TIMEOUT_S = 300.0  # a setup holding the lock longer than this is broken, not slow


@contextlib.contextmanager
def setup_lock(storage_url: str, timeout: float = LOCK_TIMEOUT_S, name: str = "setup",
               wait: float | None = None) -> Iterator[None]:
    """Exclusive across processes (and machines, for PostgreSQL) for one storage URL and `name`:
    the study's setup holds its lock while it takes MLflow's (name="mlflow"), so the two never
    wait on each other whichever database each is in. `wait`: seconds to wait for a database
    that cannot be reached (default: `connect_patience()`)."""
    if storage_url.startswith("sqlite:///"):
        suffix = ".lock" if name == "setup" else f".{name}.lock"
        with _file_lock(Path(storage_url[len("sqlite:///"):]).with_suffix(suffix), timeout):
            yield
    elif storage_url.startswith("postgresql"):
        with _pg_lock(storage_url, timeout, name, wait):
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
                        f"another sweep process held {path} for {timeout:g} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _pg_lock(storage_url: str, timeout: float, name: str,
             wait: float | None) -> Iterator[None]:
    import sqlalchemy

    key = int.from_bytes(hashlib.sha1(f"optuna_mlflow:{name}".encode()).digest()[:7], "big")
    engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
    setup_done = False
    try:
        with _pg_locked(engine, key, timeout, wait) as conn:
            try:
                yield
                setup_done = True
            finally:
                with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"),
                                 {"key": key})
    except sqlalchemy.exc.OperationalError:
        # Releasing failed (closing the connection included): a database restarted meanwhile
        # took the lock with the connection, and the setup it guarded went on regardless.
        if not setup_done:
            raise
    finally:
        engine.dispose()


def _pg_locked(engine: Any, key: int, timeout: float, wait: float | None) -> Any:
    """A connection holding the advisory lock `key`, polled for like the file lock (the same on
    every driver, no transaction left open). A worker that starts during a database outage waits
    for the database (`connect`); another holder past `timeout` is a TimeoutError."""
    import sqlalchemy

    def lock() -> Any:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            deadline = time.monotonic() + timeout
            query = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
            while not conn.execute(query, {"key": key}).scalar():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another sweep process held the setup lock of "
                                       f"{mask_url(str(engine.url))} for {timeout:g} s")
                time.sleep(0.2)
            return conn
        except BaseException:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.close()
            raise

    return connect(lock, "the setup lock", wait)


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
