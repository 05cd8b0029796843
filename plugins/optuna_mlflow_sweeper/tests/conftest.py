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

from hydra_plugins.optuna_mlflow_sweeper._testing.collection import (  # noqa: F401 (a hook)
    pytest_collection_modifyitems,
)
from hydra_plugins.optuna_mlflow_sweeper._testing.isolation import isolated  # noqa: F401
from hydra_plugins.optuna_mlflow_sweeper._testing.ray_cluster import ray_cluster  # noqa: F401
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import (  # noqa: F401 (fixtures)
    full_disk,
    mlflow_auth_server,
    mlflow_server,
    postgres,
)
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import mlflow_template  # noqa: F401
from hydra_plugins.optuna_mlflow_sweeper._testing.wheels import wheels  # noqa: F401


@pytest.fixture
def env(tmp_path: Path, mlflow_template: Path) -> dict[str, str]:  # noqa: F811 (the fixture)
    return store_env(tmp_path, mlflow_template)
