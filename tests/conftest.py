"""Shared fixtures: real configs composed by Hydra, a real SQLite MLflow store per test."""

import os

# Quiet TensorFlow's C++ banner before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose as hydra_compose  # noqa: E402
from hydra import initialize_config_dir  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@pytest.fixture
def compose(mnist_cache):
    """`compose(["train.epochs=1"])` -> the app's config with those overrides, quiet."""

    def _compose(overrides=()):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=["progress=false", *overrides])

    return _compose


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A fresh SQLite tracking store; MLFLOW_TRACKING_URI points every run at it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return uri


def all_runs(uri: str) -> list:
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


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
