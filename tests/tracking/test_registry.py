"""The best model registered: `models:/quickstart@champion` after a real quickstart sweep.

Each sweep is a real `mnist-sweep sweep=quickstart` command (run in this process) on a slice of
MNIST (one epoch), recording into a fresh SQLite store, or into a real MLflow server; the champion
is loaded back through MLflow's generic pyfunc interface and predicts raw uint8 test digits.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from mnist_sweep.data import mnist as data
from mnist_sweep.tracking.keys import mlflow_key
from tests.helpers import NO_REFERENCE, SERVED, SMALL, load_study, run_sweep

# SMALL with the models logged (what is registered), without the notebook's reference models,
# on 300 digits, scored clean and at the one noise level the champion's tags are checked at
WITH_MODELS = [*(o for o in SMALL if o != "tracking.log_model=false"
                 and not o.startswith("data.")), NO_REFERENCE,
               "data.limit_train=300", "data.val_size=300", "eval.noise_levels=[0.5]"]


def champion_accuracy(uri: str, tracking_uri: str) -> float:
    """The registered champion's accuracy on the raw (uint8) MNIST test digits."""
    mnist = data.load_mnist()
    assert mnist.x_test.dtype == np.uint8
    previous = mlflow.get_tracking_uri()  # an earlier test may have set one: it beats the env
    mlflow.set_tracking_uri(tracking_uri)
    try:
        probs = np.asarray(mlflow.pyfunc.load_model(uri).predict(mnist.x_test))
    finally:
        mlflow.set_tracking_uri(previous)
    return float(np.mean(probs.argmax(axis=1) == mnist.y_test))


def versions_by_trial(client: MlflowClient, name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for v in client.search_model_versions(f"name = '{name}'"):
        found.setdefault(v.tags["optuna.trial_number"], []).append(v.version)
    return found


@pytest.mark.slow
def test_quickstart_registers_its_best_model_as_champion(tmp_path, mnist_cache):
    proc = run_sweep(tmp_path, "sweep=quickstart", *WITH_MODELS, "hydra.sweeper.n_trials=2")
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)
    best = load_study(tmp_path, "quickstart").best_trial
    champion = client.get_model_version_by_alias("quickstart", "champion")
    assert champion.tags["optuna.study_name"] == "quickstart"
    assert champion.tags["optuna.trial_number"] == str(best.number)
    assert float(champion.tags["objective.val_accuracy"]) == pytest.approx(best.value)
    for key in ("test_accuracy", "test_accuracy_noise_0.5"):
        tagged = champion.tags[f"metric.{mlflow_key(key)}"]
        assert float(tagged) == pytest.approx(best.user_attrs[key])
    assert champion.run_id == best.user_attrs["mlflow_run_id"]
    # the logged model says what it is, and the champion predicts at the best trial's accuracy
    model = client.get_logged_model(champion.source.removeprefix("models:/"))
    assert model.name == f"quickstart-trial-{best.number}"
    assert json.loads(model.tags["mlflow.modelVersions"]) == [
        {"name": "quickstart", "version": int(champion.version)}]
    assert champion_accuracy("models:/quickstart@champion", uri) == pytest.approx(
        best.user_attrs["test_accuracy"], abs=1e-4)
    assert "models:/quickstart@champion" in proc.stdout
    assert versions_by_trial(client, "quickstart") == {str(best.number): [champion.version]}

    # extended by one trial: the alias moves only to a better trial
    run_sweep(tmp_path, "sweep=quickstart", *WITH_MODELS, "hydra.sweeper.n_trials=3")
    extended = load_study(tmp_path, "quickstart").best_trial
    moved = client.get_model_version_by_alias("quickstart", "champion")
    assert moved.tags["optuna.trial_number"] == str(extended.number)
    if extended.number == best.number:
        assert moved.version == champion.version
    else:
        assert extended.value > best.value and int(moved.version) > int(champion.version)
    # resumed with nothing left to run: nothing registered again
    before = versions_by_trial(client, "quickstart")
    run_sweep(tmp_path, "sweep=quickstart", *WITH_MODELS, "hydra.sweeper.n_trials=3")
    assert versions_by_trial(client, "quickstart") == before
    assert all(len(v) == 1 for v in before.values())
    assert client.get_model_version_by_alias("quickstart", "champion").version == moved.version


@pytest.mark.slow
def test_registration_can_be_turned_off(tmp_path, mnist_cache):
    run_sweep(tmp_path, "sweep=quickstart", *WITH_MODELS, "hydra.sweeper.n_trials=1",
              "hydra.sweeper.mlflow.registered_model_name=false")
    assert MlflowClient(f"sqlite:///{tmp_path}/store.db").search_registered_models() == []


@SERVED
def test_champion_on_a_tracking_server(served_quickstart, mlflow_server):
    name = served_quickstart.study  # the registered model is named after the study
    best = optuna.load_study(study_name=name, storage=served_quickstart.storage).best_trial
    client = MlflowClient(mlflow_server.url)
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags["optuna.trial_number"] == str(best.number)
    assert champion_accuracy(f"models:/{name}@champion", mlflow_server.url) == pytest.approx(
        best.user_attrs["test_accuracy"], abs=1e-4)


@pytest.mark.slow  # logs a Keras model (4 s); test_serving's quick test logs one too
def test_the_logged_model_predicts_quietly(tmp_path, mnist_cache, capfd):
    """pyfunc.predict draws no Keras progress bar (a served model would print one a request)."""
    import keras

    from mnist_sweep.tracking import runs as tracking

    model = keras.Sequential([keras.Input(shape=(28, 28), dtype="uint8"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    digits = data.load_mnist().x_test[:5]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/store.db")
    try:
        with mlflow.start_run():
            model_id = tracking.log_keras_model(model, digits, name="quiet-test")
        loaded = mlflow.pyfunc.load_model(f"models:/{model_id}")
        capfd.readouterr()
        assert np.asarray(loaded.predict(digits)).shape == (5, 10)
    finally:
        mlflow.set_tracking_uri(previous)
    out, err = capfd.readouterr()
    assert "step" not in out + err and "━" not in out + err


@pytest.mark.parametrize(("setting", "expected"), [
    (True, "study"), ("my-model", "my-model"), (False, None), (None, None), ("", None)])
def test_registered_name(setting, expected):
    from hydra_plugins.optuna_mlflow_sweeper._impl.plan import registered_name

    assert registered_name(setting, "study") == expected


def test_registered_name_rejects_other_values():
    from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError
    from hydra_plugins.optuna_mlflow_sweeper._impl.plan import registered_name

    with pytest.raises(SweeperConfigError, match="registered_model_name"):
        registered_name(3, "study")
