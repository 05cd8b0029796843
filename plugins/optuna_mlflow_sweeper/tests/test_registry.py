"""Registering a study's best models: real MLflow SQLite stores, real logged (pyfunc) models,
real Optuna studies whose trials point at the runs that logged them."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from hydra_plugins.optuna_mlflow_sweeper._impl.registry import CHAMPION, parent_tags, register_best


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, model_input: list[float], params: dict | None = None) -> list[int]:
        return [0] * len(model_input)


@pytest.fixture
def store(tmp_path: Path, mlflow_template: Path) -> tuple[MlflowClient, str]:
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    yield client, client.create_experiment("registry", artifact_location=(
        tmp_path / "mlruns").as_uri())
    mlflow.set_tracking_uri(previous)


def trial_with_model(client: MlflowClient, experiment_id: str, values: list[float],
                     metrics: dict[str, float] | None = None) -> optuna.trial.FrozenTrial:
    """A complete trial whose child run logged a model (and `metrics`)."""
    run = client.create_run(experiment_id)
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=[])
        mlflow.log_metrics(metrics or {})
    return create_trial(values=values, params={"x": values[0]},
                        distributions={"x": FloatDistribution(-10, 10)},
                        user_attrs={"mlflow_run_id": run.info.run_id})


def study_of(name: str, directions: list[str], trials: list) -> optuna.Study:
    study = optuna.create_study(study_name=name, directions=directions)
    for trial in trials:
        study.add_trial(trial)
    return study


def test_each_pareto_trial_once_and_the_champion_only_where_picked(store):
    client, experiment = store
    trials = [trial_with_model(client, experiment, v) for v in ([1, 5], [5, 1], [0, 0])]
    study = study_of("front", ["maximize", "maximize"], trials)
    done = register_best(client, experiment, study, "front")
    assert sorted(done.versions) == [0, 1] and done.champion is None  # trial 2 is dominated
    again = register_best(client, experiment, study, "front")
    assert again.versions == done.versions  # found by run id, not registered twice
    assert len(client.search_model_versions("name = 'front'")) == 2
    # no champion: the parent run lists every registered version, with no single page to link
    assert parent_tags(done, "http://ui") == {
        "registered_model.name": "front",
        "registered_model.version": ",".join(str(done.versions[n]) for n in (0, 1))}
    picked = register_best(client, experiment, study, "front", pick=1)
    assert picked.moved and client.get_model_version_by_alias(
        "front", CHAMPION).version == done.versions[1]
    # the champion: its version, and its page in the MLflow UI
    assert parent_tags(picked, "http://ui")["registered_model.link"] == (
        f"http://ui/#/models/front/versions/{done.versions[1]}")


def test_the_alias_moves_only_to_a_better_trial(store):
    client, experiment = store
    first = study_of("a", ["maximize"], [trial_with_model(client, experiment, [0.9],
                                                         {"test_accuracy": 0.8, "loss": 1.0})])
    done = register_best(client, experiment, first, "shared")
    version = client.get_model_version_by_alias("shared", CHAMPION)
    assert done.moved and version.tags["optuna.trial_number"] == "0"
    assert version.tags["objective.value"] == "0.9"
    assert version.tags["metric.test_accuracy"] == "0.8" and "metric.loss" not in version.tags
    # another study under the same name: a worse best registers, the champion stays
    worse = study_of("b", ["maximize"], [trial_with_model(client, experiment, [0.5])])
    kept = register_best(client, experiment, worse, "shared")
    assert not kept.moved and kept.champion == version.version
    # a better one takes the alias
    better = study_of("c", ["maximize"], [trial_with_model(client, experiment, [0.95])])
    moved = register_best(client, experiment, better, "shared")
    assert moved.moved and moved.champion == moved.versions[0] != version.version
