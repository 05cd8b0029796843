"""The writes the outbox carries out, on a real SQLite MLflow store: a trial's outcome on its
child run (`finish_child_now`), whatever status the job left the run in, and the keys and values
MLflow accepts."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from hydra_plugins.optuna_mlflow_sweeper._impl.run_writes import (
    finish_child_now,
    mlflow_key,
    objective_metric_names,
)
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import copied_store


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> MlflowClient:
    return MlflowClient(copied_store(tmp_path_factory.mktemp("run_writes")))


@pytest.mark.parametrize(("job_left", "state", "status", "final"), [
    (None, "COMPLETE", None, "FINISHED"),  # the job never touched its run
    (None, "FAIL", None, "FAILED"),
    (None, "PRUNED", None, "KILLED"),
    ("FINISHED", "FAIL", None, "FAILED"),  # the trial's failure outranks the job's FINISHED
    ("KILLED", "COMPLETE", None, "KILLED"),  # a richer status the job set is kept
    ("FAILED", "COMPLETE", None, "FAILED"),
    ("FAILED", "PRUNED", None, "KILLED"),  # TrialPruned raised inside mlflow.start_run()
    ("FINISHED", "FAIL", "KILLED", "KILLED"),  # interrupted: KILLED whatever the job made of it
    (None, "FAIL", "KILLED", "KILLED"),
])
def test_a_trials_outcome_ends_its_run_with_the_status_it_earned(
    client: MlflowClient, job_left: str | None, state: str, status: str | None, final: str
) -> None:
    experiment = client.get_experiment_by_name("trials") or client.get_experiment(
        client.create_experiment("trials"))
    run_id = client.create_run(experiment.experiment_id).info.run_id
    if job_left is not None:
        client.set_terminated(run_id, status=job_left)
    finish_child_now(client, run_id, state, [0.5] if state == "COMPLETE" else None,
                     None if state == "COMPLETE" else "why", status)
    run = client.get_run(run_id)
    assert run.info.status == final
    assert run.data.tags["optuna.state"] == state
    assert run.data.tags.get("fail_reason") == (None if state == "COMPLETE" else "why")


def test_only_finite_objectives_are_logged(client: MlflowClient) -> None:
    experiment_id = client.create_experiment("objectives")
    run_id = client.create_run(experiment_id).info.run_id
    finish_child_now(client, run_id, "COMPLETE", [0.25, math.nan, math.inf], None)
    assert objective_metric_names(3) == ["objective_0", "objective_1", "objective_2"]
    assert client.get_run(run_id).data.metrics == {"objective_0": 0.25}


@pytest.mark.parametrize(("key", "accepted"), [
    ("model.hidden.0.units", "model.hidden.0.units"),
    ("+train.lr", "_train.lr"), ("a:b", "a_b"), ("sweep/best value", "sweep/best value"),
    ("x" * 300, "x" * 250),
])
def test_a_key_is_one_mlflow_accepts(key: str, accepted: str) -> None:
    assert mlflow_key(key) == accepted
