"""Shared fixtures: real configs composed by Hydra, a real SQLite MLflow store per test."""

import os

# Quiet TensorFlow's C++ banner before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import copied_store  # noqa: E402

from tests.helpers import NO_REFERENCE, ServedSweep, compose_config, mnist_sweep  # noqa: E402

# The fixtures shared with the sweeper's own tests, one plugin for both trees (in the checkout,
# out of Hydra's plugin scan and of the wheel): the real servers and Ray cluster, made once per
# test process and only when a test asks; the built wheels, once per session; `isolated`
# (autouse): MLflow's process state, the environment and the working folder are restored around
# every test.
pytest_plugins = ["hydra_plugins.optuna_mlflow_sweeper._testing.plugin"]


@pytest.fixture
def compose(mnist_cache):
    """`compose(["train.epochs=1"])` -> the app's config with those overrides, quiet."""
    return compose_config


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A fresh SQLite tracking store (a copy of the migrated template); MLFLOW_TRACKING_URI
    points every run at it. The test runs in tmp_path: the store's artifacts go to ./mlruns, not
    into the checkout."""
    uri = copied_store(tmp_path, "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return uri


@pytest.fixture(scope="session", autouse=True)
def private_study_index(tmp_path_factory):
    """The sweeps tests run record their studies in a session's own index, not the user's
    (~/.local/state/mnist-sweep/studies.json), nor one that parallel test workers share."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
        yield


@pytest.fixture(scope="session")
def mnist_cache():
    """One MNIST cache for the whole session, so CI fetches the data once and reuses it after.

    $MNIST_SWEEP_CACHE if set, else ~/.cache/mnist-sweep; exported so subprocesses share it.
    """
    path = Path(os.environ.get("MNIST_SWEEP_CACHE") or Path.home() / ".cache" / "mnist-sweep")
    path.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNIST_SWEEP_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def served_quickstart(tmp_path_factory, mnist_cache, postgres, mlflow_server):
    """`mnist-sweep sweep=quickstart` with the study in PostgreSQL and runs, figures and models on
    an MLflow server that serves the artifacts; two workers, two trials, one epoch on 300 digits.
    Read by the shared-services test (what each trial recorded) and the registry's (its
    champion through the server). Mark a test that reads it with `SERVED`."""
    folder = tmp_path_factory.mktemp("served_quickstart")
    study = "quickstart_shared"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env.update(MLFLOW_TRACKING_URI=mlflow_server.url, OPTUNA_STORAGE=postgres.url("optuna"),
               XDG_STATE_HOME=str(folder / "state"))
    proc = mnist_sweep(
        folder, env, "sweep=quickstart", "data.limit_train=300", "data.val_size=300",
        "train.epochs=1", "hydra.sweeper.n_trials=2", NO_REFERENCE, "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.study_name={study}",
        f"tracking.experiment={study}",  # the session's server: this sweep's own experiment
        "hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return ServedSweep(folder, proc, study, postgres.url("optuna", "postgresql+psycopg"))
