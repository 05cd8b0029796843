"""An MLflow SQLite store made once per test process, copied into each test's folder.

A new SQLite store runs MLflow's schema migrations on first use: 2-3 s of a test's time (a
dozen on a loaded machine), and lines on the stderr of the command that opens it. A copy of a
migrated store is a store MLflow opens at once, as quietly as a user's existing one. The tests
of creating a store (a sweep from an empty folder, two processes creating one at once) make
their own.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


@functools.cache
def template() -> Path:
    """An initialised MLflow SQLite store, made by MLflow once per process (removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
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
