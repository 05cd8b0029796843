"""The shared fixtures and the scheduling hook, as one pytest plugin: both test trees' conftests
name it in `pytest_plugins`, and pytest registers a plugin once however many name it.

Imported into each conftest instead, every fixture would be defined twice (once per tree), and
a session fixture made once per definition: two PostgreSQLs and MLflow servers in a worker that
runs tests of both trees.
"""

from hydra_plugins.optuna_mlflow_sweeper._testing.collection import (  # noqa: F401 (a hook)
    pytest_collection_modifyitems,
)
from hydra_plugins.optuna_mlflow_sweeper._testing.isolation import isolated  # noqa: F401
from hydra_plugins.optuna_mlflow_sweeper._testing.ray_cluster import (  # noqa: F401
    pytest_runtest_teardown,
    pytest_sessionfinish,
    ray_cluster,
)
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import (  # noqa: F401 (fixtures)
    full_disk,
    mlflow_auth_server,
    mlflow_server,
    postgres,
    read_only_disk,
    s3_server,
)
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import mlflow_template  # noqa: F401
from hydra_plugins.optuna_mlflow_sweeper._testing.wheels import wheels  # noqa: F401
