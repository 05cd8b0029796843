"""MLflow recording of one run: where, what, and how it ended.

Per-epoch metrics go out in one `log_batch` call per epoch (not one call per value): against a
tracking server each call is a round trip. Under the Optuna sweeper the run already exists (the
sweeper made it as the trial's child run and passes `MLFLOW_RUN_ID`), so it is resumed, not created.
Where runs go (`resolve_tracking_uri`) and how to open them (`ui_links`) are the sweeper plugin's,
so a run and a sweep agree on both.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from hydra_plugins.optuna_mlflow_sweeper import trial as sweep_trial

# One rule for runs and sweeps ($MLFLOW_TRACKING_URI wins), and the UI links both print.
from hydra_plugins.optuna_mlflow_sweeper._impl.blank_stores import create_store
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import patience, retry_call
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import known_secrets, redact
from hydra_plugins.optuna_mlflow_sweeper.tracking import (
    ensure_experiment,
    resolve_tracking_uri,
    ui_links,
)
from mlflow.tracking import MlflowClient
from PIL import Image

from mnist_sweep.tracking import delivery, keys

__all__ = ["resolve_tracking_uri", "ui_links"]  # re-exported for experiment.py

QUIET_LOADER = "mnist_sweep.tracking.quiet_keras"
PACKAGES = ("tensorflow", "keras", "jax", "numpy", "optuna", "hydra-core", "mlflow", "mnist-sweep",
            "optuna-mlflow-sweeper")


@contextlib.contextmanager
def start_run(uri: str, experiment: str, run_name: str | None = None) -> Iterator[Any]:
    """A run that always ends: FINISHED, KILLED (pruned, or stopped: Ctrl-C, SIGTERM) or
    FAILED with the error as a tag."""
    create_store(uri)  # once, under the sweeper's lock: MLflow's migrations race
    mlflow.set_tracking_uri(uri)
    outer = _mlflow_run_default_run()
    if os.environ.get("MLFLOW_RUN_ID") and outer is None:
        # the sweeper's child run for this trial, or `mlflow run --experiment-name X`'s run
        run = mlflow.start_run()
    else:
        with _without("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
            mlflow.set_experiment(experiment_id=ensure_experiment(MlflowClient(), experiment))
            run = mlflow.start_run(run_name=run_name)
        if outer is not None:  # the two point at each other
            mlflow.set_tag("mlflow_run.run_id", outer)
            MlflowClient().set_tag(outer, "mnist_sweep.run",
                                   f"{run.info.experiment_id}/{run.info.run_id}")
    try:
        yield run
    except BaseException as exc:
        pruned = type(exc).__name__ == "TrialPruned"
        reason = f"{type(exc).__name__}: {exc}"[:5000]
        delivery.wait_delivered(patience())
        mlflow.set_tag("pruned_reason" if pruned else "error", redact(reason, known_secrets()))
        mlflow.end_run("KILLED" if pruned or isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    # its epochs first (queued beside training); then the end, waiting out an outage
    delivery.wait_delivered(patience())
    run_id = run.info.run_id
    retry_call(lambda: MlflowClient().set_terminated(run_id, "FINISHED"), "ending the MLflow run")
    # mlflow.end_run() forgets the run before its request: retried, it would end nothing
    with contextlib.suppress(Exception):  # the run has ended: this only clears fluent state
        mlflow.end_run("FINISHED")


def _mlflow_run_default_run() -> str | None:
    """The run `mlflow run` opened in MLflow's Default experiment (no --experiment-name), if any.

    A run belongs in the app's own experiment; the one `mlflow run` made stays as a pointer.
    """
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    run = MlflowClient().get_run(run_id)
    if run.info.experiment_id == "0" and "mlflow.project.entryPoint" in run.data.tags:
        return run_id
    return None


@contextlib.contextmanager
def _without(*names: str) -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def log_params(flat: Mapping[str, Any]) -> None:
    """A password in a value (a URL such as `train.checkpoint.dir=sftp://user:pw@host/...`)
    is logged as ***."""
    secrets = known_secrets()
    mlflow.log_params({k: "null" if v is None else redact(v, secrets) if isinstance(v, str) else v
                       for k, v in flat.items()})


def log_epoch(step: int, metrics: Mapping[str, float]) -> None:
    """All of one epoch's metrics in a single request; step = epochs done (1, 2, ...), as the
    Optuna reports of the same values. Returns at once (mnist_sweep/tracking/delivery.py)."""
    run = mlflow.active_run()
    if run is None:
        return
    # queued, sent beside training: a slow or absent server never stalls (or times) an epoch
    delivery.log_epoch(mlflow.get_tracking_uri(), run.info.run_id, step,
                       keys.mlflow_metrics(metrics, per_epoch=True))


def log_metrics(metrics: Mapping[str, float], model_id: str | None = None) -> None:
    """`model_id`: also shown on that logged model's page (MLflow 3 links metrics to models)."""
    retry_call(lambda: mlflow.log_metrics(keys.mlflow_metrics(metrics), model_id=model_id),
               "logging the run's metrics")


def provenance_tags() -> dict[str, str]:
    """Enough to rerun this exact run: code version, library versions, command line."""
    tags = {
        # a storage URL typed on the command line carries its password: masked
        "command": redact(shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]), known_secrets()),
        "python": platform.python_version(),
        "host.platform": platform.platform(),
    }
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            tags[f"version.{package}"] = metadata.version(package)
    commit, dirty = _git_state(Path(__file__).resolve().parent)
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.dirty"] = str(dirty).lower()
    return tags


@functools.lru_cache(maxsize=1)
def _git_state(where: Path) -> tuple[str | None, bool]:
    """Once per process: the code a process runs is what it imported when it started."""
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


# Figures a user compares across trials, by file: logged as MLflow images under a key, which
# the UI's chart view shows side by side, one per run, in its image grid; under `images/`, their
# section comes right after the curves (mnist_sweep/tracking/keys.py). The others have their
# numbers charted already (per-epoch and noise metrics) and stay files under plots/.
COMPARED_IMAGES = {"confusion_matrix.png": "images/confusion_matrix",
                   "misclassified.png": "images/misclassified"}


def log_plot_dir(directory: Path) -> None:
    """A run's figures (PNG files drawn by `render`): the compared ones as images (step 0), the
    rest under `plots/` of the active run."""
    for filename, key in COMPARED_IMAGES.items():
        path = directory / filename
        if path.is_file():
            with Image.open(path) as image:
                image.load()
                # synchronous: MLflow's default here (async) starts its logging queue, and the run's
                # end then waits up to 1 s for that queue's idle poll to time out
                mlflow.log_image(image, key=key, step=0, synchronous=True)
            path.unlink()
    mlflow.log_artifacts(str(directory), "plots")


def log_dataset(x: Any, y: Any, name: str, context: str, source: str) -> None:
    """Record the data a run saw as an MLflow dataset input (digest, shape, where it came from)."""
    with warnings.catch_warnings():
        # MLflow 3 registers its local-file source class twice and warns that a path is ambiguous.
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        dataset = _dataset(x, y, name, source)
    # Trials of two workers logging the same dataset at once race in the store's "get or create"
    # (a duplicate key on a tracking server's PostgreSQL): once it exists, a retry links it.
    retry_call(lambda: mlflow.log_input(dataset, context=context), "logging the dataset input",
               wait=30.0, retry_if=_created_meanwhile)


def _created_meanwhile(error: BaseException) -> bool:
    text = str(error)
    return "duplicate key" in text or "UNIQUE constraint failed" in text


_DATASETS: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}


def _dataset(x: np.ndarray, y: np.ndarray, name: str, source: str) -> Any:
    """`mlflow.data.from_numpy`, once per process for read-only arrays (a sweep worker's trials).

    Its digest copies the whole array (`flatten`): 0.25 s per trial for the full training set.
    Arrays whose memory cannot change give the same digest every time; keeping them referenced
    in the cache means their address cannot be reused by other data while it serves as the key.
    """
    key = (name, source, _frozen_identity(x), _frozen_identity(y))
    if key[2] is None or key[3] is None:
        return mlflow.data.from_numpy(x, targets=y, name=name, source=source)
    if key not in _DATASETS:
        if len(_DATASETS) >= 4:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = (x, y, mlflow.data.from_numpy(x, targets=y, name=name, source=source))
    return _DATASETS[key][2]


def _frozen_identity(a: np.ndarray) -> tuple[Any, ...] | None:
    """(address, shape, strides, dtype) of an array whose memory is read-only, else None."""
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    if a.flags.writeable or base.flags.writeable:
        return None
    return (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)


def log_keras_model(model: Any, example: Any, name: str = "model") -> str:
    """The trained model as an MLflow Keras model (`.keras` file) with its signature and input
    example, logged as `name`; its id.

    Requirements are listed, not inferred: inference re-imports the model in a subprocess and
    costs seconds per trial. Log it before the run's final metrics and pass them its id: MLflow
    links a new model to the run's metrics by reading each metric's history, one request per
    metric name (30 round trips against a tracking server).
    """
    import keras
    from mlflow.models import infer_signature

    # predict_on_batch: `predict` would build a data pipeline for 5 digits (~50 ms).
    signature = infer_signature(example, np.asarray(model.predict_on_batch(example)))
    # The model was saved by this process' backend; loading it back needs that backend.
    backend = ("jax", "jaxlib") if keras.backend.backend() == "jax" else ("tensorflow",)
    requirements = [
        f"{p}=={metadata.version(p)}" for p in ("keras", *backend, "numpy") if _installed(p)
    ]
    info = mlflow.models.Model.log(
        artifact_path=None, name=name, flavor=_KerasFlavor, model=model, signature=signature,
        input_example=example, pip_requirements=requirements,
        # MLflow would load the model back and predict the example (0.3 s a trial, and a Keras
        # progress bar on the terminal); the test suite checks that the logged model serves it.
        validate_serving_input=False,
    )
    return info.model_id


def model_name(family: str) -> str:
    """What a logged model is: `<study>-trial-<n>` in a sweep, `mnist-<family>` alone."""
    trial = sweep_trial.current_trial()
    if trial is None:
        return f"mnist-{family}"
    return f"{trial.study.study_name}-trial-{trial.number}"


class _KerasFlavor:
    """`mlflow.keras` whose model directory exists before the input example is written into it
    (MLflow 3.17's Keras flavor writes the example first and fails with FileNotFoundError), whose
    pyfunc predicts without a progress bar and checks its input itself (`quiet_keras`, shipped in
    the model's code/), and whose signature declares outputs only: with an input dtype,
    `mlflow models serve` would cast a request's numbers to it first (0.7 to uint8 0), unseen."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path: str, validate_serving_input: bool = True, **kwargs: Any) -> None:
        from mlflow.models import ModelSignature
        from mlflow.models.model import MLMODEL_FILE_NAME

        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)
        code = os.path.join(path, "code")
        os.makedirs(code, exist_ok=True)
        # its file, not the module: importing it would import Keras before the backend is set
        loader = importlib.util.find_spec(QUIET_LOADER).origin
        shutil.copy(loader, os.path.join(code, "quiet_keras.py"))
        model = kwargs["mlflow_model"]
        model.signature = ModelSignature(outputs=model.signature.outputs)
        pyfunc = model.flavors["python_function"]
        pyfunc["loader_module"], pyfunc["code"] = "quiet_keras", "code"
        model.save(os.path.join(path, MLMODEL_FILE_NAME))


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
        return True
    except metadata.PackageNotFoundError:
        return False
