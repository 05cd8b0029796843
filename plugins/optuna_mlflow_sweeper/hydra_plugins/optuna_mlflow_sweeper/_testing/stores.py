"""An MLflow SQLite store made once per test session, copied into each test's folder.

A new SQLite store runs MLflow's schema migrations on first use: seconds of a test's time (a
dozen on a loaded machine), and lines on the stderr of the command that opens it. A copy of a
migrated store is a store MLflow opens at once, as quietly as a user's existing one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised MLflow sqlite DB; copying it saves every sweep the schema migrations."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def copied_store(template: Path, folder: Path, name: str = "store.db") -> str:
    """The tracking URI of `folder/name`, a copy of `template` unless the store is there."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / name).exists():
        shutil.copyfile(template, folder / name)
    return f"sqlite:///{folder / name}"
