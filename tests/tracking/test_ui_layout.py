"""The MLflow UI laid out for comparing a sweep's trials, read back from a real small sweep.

MLflow's chart view groups metrics into sections by the prefix before `/` (prefixed sections in
alphabetical order, the rest last): the trials' learning curves under `curves/` come first, the
one-number results in sections of their own, the parent's series under `sweep/`. The parent's
params say what the sweep used, it links to its registered version, and the sweep's end prints
MLflow's compare page with the sweep's trials selected.
"""

from __future__ import annotations

import json
import math
from urllib.parse import unquote

import pytest

from mnist_sweep.tracking.keys import mlflow_key, mlflow_metrics
from tests.helpers import NO_REFERENCE, SMALL, load_study, mlflow_runs, run_sweep

# SMALL with the model (what is registered) and the figures (the compared images) logged
WITH_MODELS_AND_PLOTS = [o for o in SMALL if o not in ("tracking.log_model=false",
                                                        "tracking.log_plots=false")
                         and not o.startswith(("data.", "train.epochs"))]
CURVES = {"curves/accuracy", "curves/loss", "curves/val_accuracy", "curves/val_loss",
          "curves/learning_rate_log10"}
ONE_NUMBER = {"test/accuracy", "test/loss", "test_digit/accuracy_0", "test_digit/accuracy_9",
              "test_noise/accuracy_0.5", "test_noise/accuracy_mean", "val_noise/accuracy_0.5",
              "time/train_s", "time/epoch_mean_s", "time/epoch_s", "run/epochs", "run/n_params"}


def test_mlflow_keys_map_the_apps_names_into_sections() -> None:
    assert mlflow_key("val_accuracy", per_epoch=True) == "curves/val_accuracy"
    assert mlflow_key("epoch_time_s", per_epoch=True) == "time/epoch_s"
    assert mlflow_key("test_accuracy_class_7") == "test_digit/accuracy_7"
    assert mlflow_key("val_accuracy_noise_0.25") == "val_noise/accuracy_0.25"
    assert mlflow_key("test_accuracy_noise_mean") == "test_noise/accuracy_mean"
    assert mlflow_key("n_params") == "run/n_params"
    assert mlflow_key("learning_rate", per_epoch=True) == "curves/learning_rate_log10"
    assert mlflow_metrics({"learning_rate": 1e-3, "loss": 0.5}, per_epoch=True) == pytest.approx(
        {"curves/learning_rate_log10": -3.0, "curves/loss": 0.5})


@pytest.mark.slow
def test_a_sweep_is_laid_out_for_comparing_its_trials(tmp_path, mnist_cache):
    proc = run_sweep(tmp_path, "sweep=quickstart", *WITH_MODELS_AND_PLOTS, "train.epochs=2",
                     "data.limit_train=300", "data.val_size=300", "hydra.sweeper.n_trials=2",
                     NO_REFERENCE)
    study = load_study(tmp_path, "quickstart")
    client, parent, children = mlflow_runs(tmp_path)
    assert len(children) == 2
    for child, trial in zip(children, study.trials, strict=True):
        keys = set(child.data.metrics)
        assert CURVES | ONE_NUMBER <= keys, sorted(keys)
        # nothing of the app's left unsectioned: only the sweeper's objective
        assert [k for k in keys if "/" not in k] == ["objective"], sorted(keys)
        # the rate each epoch trained with, as log10: a constant rate reads (-3 for 1e-3)
        rates = client.get_metric_history(child.info.run_id, "curves/learning_rate_log10")
        assert [m.value for m in rates] == pytest.approx(
            [math.log10(trial.params["train.learning_rate"])] * 2, abs=1e-6)
        images = {a.path.rpartition("/")[2].partition("+")[0]
                  for a in client.list_artifacts(child.info.run_id, "images")}
        assert {"images~confusion_matrix", "images~misclassified"} <= images, images
    # the parent's series apart from the trials' curves
    assert parent.data.metrics and all(k.startswith("sweep/") for k in parent.data.metrics)
    # the parent's params are what the sweep used: the registered model's name, not `True`
    assert parent.data.params["mlflow.registered_model_name"] == "quickstart"
    assert parent.data.params["mlflow.tracking_uri"] == f"sqlite:///{tmp_path}/store.db"
    champion = client.get_model_version_by_alias("quickstart", "champion")
    tags = parent.data.tags
    assert tags["registered_model.name"] == "quickstart"
    assert tags["registered_model.version"] == str(champion.version)
    assert tags["registered_model.link"].endswith(
        f"/#/models/quickstart/versions/{champion.version}")
    # the sweep's end: MLflow's compare page with its trials selected, best first
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("  compare page")]
    link = unquote(line.split()[-1])
    best_first = sorted(study.trials, key=lambda t: -t.value)  # quickstart maximizes
    ids = ",".join(f'"{t.user_attrs["mlflow_run_id"]}"' for t in best_first)
    experiment = parent.info.experiment_id
    assert link.endswith(f'/#/compare-runs?runs=[{ids}]&experiments=["{experiment}"]')
    # the trials' images side by side: a view saved on the experiment (the UI's "Views"), its
    # trials best first, one full-width card per image key, no param lists; the end links it
    view = f"sweep-images-{parent.info.run_id}"
    envelope = json.loads(client.get_experiment(experiment).tags[f"mlflow.sharedViewState.{view}"])
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    assert [c["imageKeys"] for c in state["compareRunCharts"]] == [
        ["images/confusion_matrix"], ["images/misclassified"]]
    assert not any(c["showRunParams"] for c in state["compareRunCharts"])
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("  trials' images")]
    assert line.split()[-1].endswith(
        f"/#/experiments/{experiment}/runs?viewStateShareKey={view}&compareRunsMode=CHART"
        "&workflowType=machine_learning")
    # warned once, before the trials: quickstart's TPE start-up (3) outlasts 2 trials
    shown = proc.stdout + proc.stderr
    assert shown.count("TPESampler is never used") == 1, shown[-3000:]
    assert shown.count("parameter importances need 10 finished trials") == 1
