"""Session fixtures for the shared-services tests: a real PostgreSQL and a real MLflow server.

Started on first use only (the quick tests never pay for them), stopped by pid at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servers import MlflowServer, Postgres, pg_bindir  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it: apt-get install postgresql)")
    server = Postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[MlflowServer]:
    server = MlflowServer(postgres.url("mlflow", "postgresql+psycopg"),
                          tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()
