"""Fixtures of the sweeper's tests: a fresh SQLite MLflow store per test (from a template), and,
for the shared-services tests, a real PostgreSQL and a real MLflow server; for the Ray
launcher's, a real local Ray cluster.

The shared fixtures live in hydra_plugins.optuna_mlflow_sweeper._testing (the app's tests use them
too; in the checkout, not in the wheel): the servers and the cluster start on first use only
(the quick tests never pay for them), once per test process, and are stopped by pid at the end;
the wheels are built once per session; `isolated` restores MLflow's process state, the
environment and the working folder around every test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from toyapp import store_env

# the servers, the cluster, the wheels, `isolated`: one plugin for both test trees
pytest_plugins = ["hydra_plugins.optuna_mlflow_sweeper._testing.plugin"]


@pytest.fixture
def env(tmp_path: Path, mlflow_template: Path) -> dict[str, str]:  # noqa: F811 (the fixture)
    return store_env(tmp_path, mlflow_template)
