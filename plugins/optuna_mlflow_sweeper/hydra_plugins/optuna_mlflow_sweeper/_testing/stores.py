"""The stores tests use: an MLflow SQLite store made once per test process, copied into each
test's folder, and an Optuna storage to poll a sweep's study with.

A new SQLite store made by MLflow runs its schema migrations: 2-3 s of a test's time (a dozen on
a loaded machine), and lines on the stderr of the command that opens it. A copy of a migrated
store is a store MLflow opens at once, as quietly as a user's existing one (the sweeper's own
new stores are copies of a blank one too, once the user's cache holds it: blank_stores.py).
The tests of creating a store (two processes creating one at once, a store MLflow cannot
make) make their own.

A test that waits for a sweep polls its study every 0.1-0.3 s. `optuna.load_study(storage=URL)`
makes a new storage each time (an engine, the tables created if missing, the schema's version
checked): in a py-spy profile of a whole run, the test workers' largest Optuna part, taken from
the sweep the test waits for. `reader(url)` is made once per URL and skips the tables and the
version check.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from hydra_plugins.optuna_mlflow_sweeper._impl.blank_stores import create_store


@functools.cache
def template() -> Path:
    """An initialised MLflow SQLite store, made once per process as the sweeper makes a new one
    (a copy of the user's cached blank store, once there is one; removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "mlflow.db"
    create_store(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def mlflow_template() -> Path:
    """The template store (see `template`), for tests that copy it themselves."""
    return template()


def copied_store(folder: Path, name: str = "store.db") -> str:
    """The tracking URI of `folder/name`, a copy of the template unless a store is there."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / name).exists():
        shutil.copyfile(template(), folder / name)
    return f"sqlite:///{folder / name}"


_readers: dict[tuple[str, int | None], optuna.storages.RDBStorage] = {}


def reader(url: str, path: Path | None = None) -> optuna.storages.RDBStorage:
    """A storage to read a sweep's study with, made once per URL (and, for a SQLite file
    `path`, per file: one deleted and made again is another); the sweep under test makes the
    tables. Reading before they exist raises (KeyError), as `load_study` does. The newest 8 are
    kept."""
    key = (url, path.stat().st_ino if path is not None else None)
    if key not in _readers:
        if not _stamped(url):
            raise KeyError("no Optuna schema there yet")  # the URL may hold a password
        if len(_readers) >= 8:
            _readers.pop(next(iter(_readers))).engine.dispose()
        _readers[key] = optuna.storages.RDBStorage(url, skip_table_creation=True,
                                                   skip_compatibility_check=True)
    return _readers[key]


def _stamped(url: str) -> bool:
    """Whether the sweep has made the tables and stamped their schema version. Optuna's storage
    stamps a schema it finds unstamped, even told to skip the tables: a reader made before the
    sweep's stamp would make that table too, racing the sweep (on PostgreSQL the sweep's
    `CREATE TABLE` then fails)."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")
                                ).first() is not None
    except sqlalchemy.exc.DBAPIError:  # no table yet
        return False
    finally:
        engine.dispose()
