"""MLflow recording of one run: where, what, and how it ended.

Per-epoch metrics go out in one `log_batch` call per epoch (not one call per value): against a
tracking server each call is a round trip. Under the Optuna sweeper the run already exists (the
sweeper made it as the trial's child run and passes `MLFLOW_RUN_ID`), so it is resumed, not created.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

PACKAGES = ("tensorflow", "keras", "jax", "numpy", "optuna", "hydra-core", "mlflow", "mnist-sweep")
DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(configured: str | None) -> str:
    """`MLFLOW_TRACKING_URI` wins over the config, so one env var redirects every run and trial."""
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_URI


@contextlib.contextmanager
def start_run(uri: str, experiment: str, run_name: str | None = None) -> Iterator[Any]:
    """A run that always ends: FINISHED, KILLED (pruned) or FAILED with the error as a tag."""
    mlflow.set_tracking_uri(uri)
    if os.environ.get("MLFLOW_RUN_ID"):
        run = mlflow.start_run()  # the sweeper's child run for this trial
    else:
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name)
    try:
        yield run
    except BaseException as exc:
        pruned = type(exc).__name__ == "TrialPruned"
        reason = f"{type(exc).__name__}: {exc}"[:5000]
        mlflow.set_tag("pruned_reason" if pruned else "error", reason)
        mlflow.end_run("KILLED" if pruned else "FAILED")
        raise
    mlflow.end_run("FINISHED")


def log_params(flat: Mapping[str, Any]) -> None:
    mlflow.log_params({k: ("null" if v is None else v) for k, v in flat.items()})


def log_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
    """All of one epoch's metrics in a single request, stepped by epoch (0-based as Keras')."""
    run = mlflow.active_run()
    if run is None:
        return
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
    MlflowClient().log_batch(run.info.run_id, metrics=batch, synchronous=True)


def log_metrics(metrics: Mapping[str, float]) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})


def provenance_tags() -> dict[str, str]:
    """Enough to rerun this exact run: code version, library versions, command line."""
    tags = {
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "python": platform.python_version(),
        "host.platform": platform.platform(),
    }
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            tags[f"version.{package}"] = metadata.version(package)
    commit, dirty = _git_state(Path(__file__).resolve().parent)
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.commit"] = commit
        tags["git.dirty"] = str(dirty).lower()
    return tags


def _git_state(where: Path) -> tuple[str | None, bool]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None, False
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=5,
        )
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def log_figure(fig: Any, name: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, f"plots/{name}")
    plt.close(fig)


def log_dataset(x: Any, y: Any, name: str, context: str, source: str) -> None:
    """Record the data a run saw as an MLflow dataset input (digest, shape, where it came from)."""
    with warnings.catch_warnings():
        # MLflow 3 registers its local-file source class twice and warns that a path is ambiguous.
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        dataset = mlflow.data.from_numpy(x, targets=y, name=name, source=source)
    mlflow.log_input(dataset, context=context)


def log_keras_model(model: Any, example: Any) -> None:
    """The trained model as an MLflow Keras model (`.keras` file) with its signature.

    Requirements are listed, not inferred: inference re-imports the model in a subprocess and
    costs seconds per trial.
    """
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example, verbose=0))
    requirements = [
        f"{p}=={metadata.version(p)}" for p in ("keras", "tensorflow", "numpy") if _installed(p)
    ]
    mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements)


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
        return True
    except metadata.PackageNotFoundError:
        return False


def ui_links(uri: str, experiment_id: str, run_id: str, port: int = 5000) -> dict[str, str]:
    """Links that land on the runs table (MLflow 3 otherwise opens the GenAI traces view)."""
    base = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}"
    return {
        "command": f"mlflow ui --backend-store-uri {uri} --port {port}",
        "run": f"{base}/runs/{run_id}",
        "experiment": f"{base}?workflowType=machine_learning",
    }
