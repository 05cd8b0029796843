"""A sweep on a two-node Ray cluster that loses a node: what a real cluster without a shared disk
does, on one machine.

Two real Ray nodes (`ray start --head` on the machine's outward address, `ray start --address`),
one CPU each, each in a process group and a mount namespace of its own, where the sweep's folder
is the node's own disk; the study in PostgreSQL, the runs on an `mlflow server` that serves their
artifacts, checkpoints on an S3 server (moto's): the three services every node reaches over the
network. The second node is SIGKILLed as a whole once its trial has a checkpoint; the budget
completes on the head, which resumes that trial from its checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing.processes import finish, started
from hydra_plugins.optuna_mlflow_sweeper._testing.ray_cluster import RayCluster, outward_address
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import reader
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mnist_sweep.model.checkpoint_store import FILE
from mnist_sweep.tracking.keys import mlflow_key

pytestmark = pytest.mark.slow

EPOCHS = 12
# one trial a node: the second node's is lost, the head runs its own, then the retry
TRIALS = 2
CHECKPOINT_ATTR = "optuna_mlflow:checkpoint"
# a lost node noticed in seconds: Ray's health checks (its task then runs again elsewhere) and
# the sweeper's heartbeats (its trial failed as stale, retried by the worker that looks next)
HEALTH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
          "RAY_health_check_timeout_ms": "2000", "RAY_health_check_failure_threshold": "4"}


def sweep_command(study: str, bucket: str) -> list[str]:
    return [sys.executable, "-m", "mnist_sweep", "-m", "hydra/sweeper=mnist",
            f"hydra.sweeper.study_name={study}", "hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}",
            "hydra.sweep.dir=multirun/cluster", f"hydra.sweeper.n_trials={TRIALS}",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.direction=maximize",
            "train.learning_rate=choice(0.003,0.002)", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=5", "hydra.callbacks.sweep_summary.reference=false",
            "data.limit_train=1000", "data.val_size=200", f"train.epochs={EPOCHS}",
            "model.hidden.0.units=4", "tracking.log_model=false", "tracking.log_plots=false",
            "eval.noise_levels=[]", f"train.checkpoint.dir=s3://{bucket}/{study}"]


def checkpointed_trial_on(node_id: str, study: optuna.Study, client: MlflowClient,
                          where: dict[int, str]) -> int | None:
    """A running trial of the node `node_id` (its run's `ray.node_id`) with a checkpoint and
    epochs still to go; `where` caches each trial's node."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run_id = t.user_attrs.get("mlflow_run_id")
        if t.number not in where and run_id:
            where[t.number] = client.get_run(run_id).data.tags.get("ray.node_id", "")
        if (where.get(t.number) == node_id and CHECKPOINT_ATTR in t.system_attrs
                and 1 <= len(t.intermediate_values) < EPOCHS - 2):
            return t.number
    return None


def test_a_two_node_sweep_loses_a_node_and_resumes_its_trial_on_the_other(
    tmp_path: Path, mnist_cache: Path, postgres: Any, mlflow_server: Any, s3_server: Any
) -> None:
    if os.geteuid() != 0:
        pytest.skip("a folder of each node's own (a mount namespace) needs root")
    study_name = f"cluster-{uuid.uuid4().hex[:8]}"
    driver = tmp_path / "driver"
    driver.mkdir()
    # the nodes' environment: the S3 credentials, as a real node has them (never the sweep's)
    cluster = RayCluster(num_cpus=1, num_gpus=0, host=outward_address(),
                         env={**HEALTH, **s3_server.env}, own_folder_at=driver)
    try:
        second = cluster.add_node(num_cpus=1)
        head_id, second_id = cluster.node_id(), second.node_id()
        assert head_id and second_id and head_id != second_id
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MLFLOW_", "OPTUNA_", "RAY_"))}
        env.update(MLFLOW_TRACKING_URI=mlflow_server.url, OPTUNA_STORAGE=postgres.url("optuna"),
                   XDG_STATE_HOME=str(tmp_path / "state"), TF_CPP_MIN_LOG_LEVEL="3")
        storage = postgres.url("optuna", "postgresql+psycopg")
        client = MlflowClient(mlflow_server.url)
        with started([*sweep_command(study_name, s3_server.BUCKET), *cluster.launcher()],
                     driver, env) as proc:
            deadline = time.monotonic() + 480
            where: dict[int, str] = {}  # trial -> node
            study, lost = None, None
            while lost is None:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    f"no checkpointed trial on the second node ({second_id}): {where}"
                if study is None:
                    # the sweep makes the tables and the study: until then, look again
                    with contextlib.suppress(KeyError, optuna.exceptions.StorageInternalError):
                        study = optuna.load_study(study_name=study_name, storage=reader(storage))
                if study is not None:
                    lost = checkpointed_trial_on(second_id, study, client, where)
                time.sleep(0.1)
            second.kill()
            finish(proc)
        head_ran, second_ran = (sorted(p.name for p in node.disk.glob("multirun/cluster/*"))
                                for node in (cluster, second))
        local_checkpoints = [*cluster.disk.rglob(FILE), *second.disk.rglob(FILE)]
        local_runs = [*cluster.disk.rglob("mlruns"), *second.disk.rglob("mlruns")]
    finally:
        cluster.close()

    trials = optuna.load_study(study_name=study_name, storage=storage).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == TRIALS
    failed = trials[lost]
    assert failed.state == TrialState.FAIL
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == lost]
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params
    assert sorted(retry.intermediate_values) == list(range(1, EPOCHS + 1))  # each step once

    # every run whole, none RUNNING; each says where it ran: both nodes did, the retry on the head
    runs = {t.number: client.get_run(t.user_attrs["mlflow_run_id"]) for t in trials}
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED"
    assert runs[lost].info.status == "FAILED"
    for t in trials:
        run = runs[t.number]
        assert run.data.tags["host"] == socket.gethostname()
        if t.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            steps = [m.step for m in client.get_metric_history(
                run.info.run_id, mlflow_key("val_accuracy", per_epoch=True))]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), t.number
    nodes = {n: r.data.tags["ray.node_id"] for n, r in runs.items()}
    assert set(nodes.values()) == {head_id, second_id}, nodes
    assert nodes[lost] == second_id and nodes[retry.number] == head_id
    resumed = int(runs[retry.number].data.tags["resumed_from_epoch"])
    assert 1 <= resumed <= len(failed.intermediate_values)

    # each node worked in its own folder: its trials' job folders on its own disk, none on the
    # driver's; checkpoints on S3 only, removed once their trials ended
    assert {str(n) for n, node in nodes.items() if node == head_id} <= set(head_ran), head_ran
    assert str(lost) in second_ran and str(lost) not in head_ran, (head_ran, second_ran)
    assert not [p for p in driver.glob("multirun/cluster/*") if p.name.isdigit()]
    assert s3_server.keys(f"{study_name}/") == []
    assert not local_checkpoints and not list(tmp_path.rglob(FILE))
    # artifacts went through the server (mlflow-artifacts:), onto its disk, from every node
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    assert "config.yaml" in {a.path for a in client.list_artifacts(runs[retry.number].info.run_id)}
    assert list(mlflow_server.artifacts.rglob(f"{runs[lost].info.run_id}/artifacts/config.yaml"))
    assert not local_runs and not list(tmp_path.rglob("mlruns"))
