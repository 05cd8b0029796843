"""A whole run, recorded in a real SQLite MLflow store and read back through MlflowClient."""

import os
import sys

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mnist_sweep import experiment
from mnist_sweep.data import mnist
from mnist_sweep.tracking import runs
from mnist_sweep.tracking.keys import mlflow_key
from tests.helpers import mnist_sweep

NOISE_METRICS = [f"test_accuracy_noise_{f}" for f in ("0.25", "0.5", "0.75", "1")]


@pytest.mark.slow
def test_cnn_run_records_everything(compose, tracking_store):
    cfg = compose(["model=cnn", "data.limit_train=3000", "data.val_size=1000", "train.epochs=2",
                   "train.batch_size=64"])
    objective = experiment.run(cfg)

    client = MlflowClient(tracking_store)
    [run] = client.search_runs([client.get_experiment_by_name("mnist-sweep").experiment_id])
    assert run.info.status == "FINISHED"
    assert objective == pytest.approx(run.data.metrics[mlflow_key("val_accuracy", per_epoch=True)])
    # under their MLflow keys (the chart view's sections), read back by their names
    names = ["test_accuracy", "test_loss", "train_time_s", "n_params", *NOISE_METRICS,
             *(f"test_accuracy_class_{d}" for d in range(10))]
    for name in names:
        assert mlflow_key(name) in run.data.metrics, name
    metrics = {name: run.data.metrics[mlflow_key(name)] for name in names}
    assert metrics["n_params"] == 43_490
    assert 0.5 < metrics["test_accuracy"] <= 1.0
    # Noise hurts: the notebook's observation, measured.
    assert metrics["test_accuracy_noise_1"] < metrics["test_accuracy"]
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s"):
        history = client.get_metric_history(run.info.run_id, mlflow_key(name, per_epoch=True))
        assert [m.step for m in history] == [1, 2], name  # epochs done, as Optuna's steps

    params = run.data.params
    assert params["model.family"] == "cnn"
    assert params["model.conv.0.filters"] == "4"
    assert params["train.batch_size"] == "64"
    assert params["train.backend"] == "tensorflow"
    tags = run.data.tags
    assert len(tags["mlflow.source.git.commit"]) == 40
    assert "git.commit" not in tags  # MLflow's own tag says it
    assert tags["version.tensorflow"] and tags["version.mlflow"] and tags["version.keras"]
    assert "command" in tags

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {f"plots/{n}.png" for n in ("learning_curves", "noise_accuracy")}
    # the figures compared across runs are MLflow images: a key, step 0, a thumbnail for the grid
    images = [a.path.removeprefix("images/") for a in
              client.list_artifacts(run.info.run_id, "images")]
    for key in runs.COMPARED_IMAGES.values():  # under `images/`: MLflow writes `/` as `~`
        file_key = key.replace("/", "~")
        assert sorted(p.endswith(".webp") for p in images
                      if p.startswith(f"{file_key}+step+0+")) == [False, True]
    assert tags["mlflow.loggedImages"] == "True"
    config_text = client.download_artifacts(run.info.run_id, "config.yaml")
    assert "family: cnn" in open(config_text).read()
    [model] = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert model.source_run_id == run.info.run_id
    # the model's page shows the run's results (linked when logged, not looked up per metric)
    model_metrics = {m.key: m.value for m in model.metrics}
    assert model_metrics[mlflow_key("test_accuracy")] == metrics["test_accuracy"]
    assert mlflow_key("test_accuracy_noise_1") in model_metrics
    assert run.inputs.dataset_inputs[0].dataset.name == "mnist-train"

    # A model users can call: raw MNIST digits (uint8, 28x28) in, scaled inside, as its input
    # example says; through MLflow's generic pyfunc interface too. The signature declares outputs
    # only: the model checks its input itself (an input dtype would have a scoring server cast
    # requests to it unseen; tests/tracking/test_serving.py).
    uri = f"models:/{model.model_id}"
    info = mlflow.models.Model.load(uri)
    [spec] = info.signature.outputs.inputs
    assert info.signature.inputs is None and spec.shape == (-1, 10)
    example = info.load_input_example(mlflow.artifacts.download_artifacts(uri))
    # raw digits, integers 0-255 (read back as int64: no input schema to cast them to uint8)
    assert example.dtype.kind in "ui" and example.shape == (5, 28, 28)
    assert 0 <= example.min() and example.max() <= 255 and example.max() > 1
    raw = mnist.load_mnist()
    probs = mlflow.pyfunc.load_model(uri).predict(raw.x_test)
    accuracy = float((np.asarray(probs).argmax(axis=1) == raw.y_test).mean())
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=2e-4)  # 1/255 vs /255: ties
    keras_model = mlflow.keras.load_model(uri)
    assert keras_model.count_params() == 43_490  # the trained net, behind a Rescaling layer


def test_a_failing_run_ends_failed_with_the_error(tracking_store):
    with pytest.raises(RuntimeError, match="boom"):
        with runs.start_run(tracking_store, "failures", run_name="will-fail"):
            mlflow.log_param("x", 1)
            raise RuntimeError("boom")
    client = MlflowClient(tracking_store)
    [run] = client.search_runs([client.get_experiment_by_name("failures").experiment_id])
    assert run.info.status == "FAILED"
    assert "RuntimeError: boom" in run.data.tags["error"]
    assert run.data.params == {"x": "1"}


@pytest.mark.slow
def test_cli_runs_and_prints_a_summary_with_ui_links(tmp_path, mnist_cache):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    done = mnist_sweep(tmp_path, env, "data.limit_train=300", "data.val_size=300",
                       "train.epochs=1", "tracking.log_model=false", "tracking.log_plots=false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test accuracy" in done.stdout
    assert "workflowType=machine_learning" in done.stdout
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    [run] = client.search_runs([client.get_experiment_by_name("mnist-sweep").experiment_id])
    assert run.info.run_id in done.stdout


@pytest.mark.slow  # a 2 s command; test_cli's quick cases show a config error's one line
def test_cli_bad_input_exits_with_a_clear_message(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    done = mnist_sweep(tmp_path, env, "train.optimizer=adagrad")
    assert done.returncode == 2
    assert "'train.optimizer'" in done.stderr and "adam, sgd, rmsprop" in done.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_the_command_tag_masks_a_password(monkeypatch):
    """A storage URL typed on the command line is recorded, but not its password."""
    monkeypatch.setattr(sys, "argv", ["mnist-sweep", "-m", "note=tok-9f8e7d",
                                      "hydra.sweeper.storage=postgresql://u:hunter2x@db/optuna"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "tok-9f8e7d")
    command = runs.provenance_tags()["command"]
    assert "hunter2x" not in command and "tok-9f8e7d" not in command
    assert "postgresql://u:***@db/optuna" in command
