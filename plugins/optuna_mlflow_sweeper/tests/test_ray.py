"""Workers as jobs of Hydra's Ray launcher, on a real local Ray cluster (`ray start --head` on
127.0.0.1, started and stopped by the fixture), with real SQLite Optuna and MLflow stores.

The cluster starts in a folder of its own with an environment without the test's stores: what a
worker knows of the sweep, it takes from the sweep's command (its folder, its MLflow settings).
The command joins the cluster by its address alone, as a user would write it.
"""

from __future__ import annotations

import os

import pytest
from optuna.trial import TrialState
from toyapp import NO_MLFLOW, runs, study, sweep

from hydra_plugins.optuna_mlflow_sweeper._testing.ray_cluster import RayCluster


@pytest.mark.slow
def test_two_ray_workers_run_the_budget_on_a_running_cluster(
    tmp_path, env: dict[str, str], ray_cluster: RayCluster
) -> None:
    # joined as a user would: the address alone, no Ray setting in the environment
    env = {k: v for k, v in env.items() if not k.startswith("RAY_")}
    proc = sweep(tmp_path, env, "x=interval(-5,5)", "sleep=0.2",
                 "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", *ray_cluster.launcher(),
                 own_process=True)  # a Ray driver of its own, as a user's command is
    assert "2 workers (jobs of RayLauncher)" in proc.stdout
    assert "(_run_job pid=" not in proc.stdout + proc.stderr  # the workers' lines: in Ray's logs
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    pids = {t.user_attrs["pid"] for t in trials}
    assert pids <= ray_cluster.worker_pids()  # every trial ran in one of the cluster's workers
    assert 1 <= len(pids) <= 2
    # each worker task asked for its share of the cluster's 2 GPUs: Ray gave each its own
    devices = {t.user_attrs["pid"]: t.user_attrs.get("gpus") for t in trials}
    assert set(devices.values()) <= {"0", "1"}, devices
    assert len(set(devices.values())) == len(pids), devices
    # the workers recorded where the command said, not where the cluster runs
    client, parents, children = runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED"] * 4
    assert sorted((tmp_path / "sweep" / "workers").iterdir()) == [
        tmp_path / "sweep" / "workers" / str(i) for i in range(2)]
    assert not list(ray_cluster.dir.glob("sweep")) and not (ray_cluster.dir / "mlflow.db").exists()
    assert os.listdir(tmp_path / "sweep" / "workers" / "0")  # the job's own folder, its log


@pytest.mark.slow
def test_one_trial_job_at_a_time_joins_a_running_cluster_by_its_address_alone(
    tmp_path, env: dict[str, str], ray_cluster: RayCluster
) -> None:
    """`hydra.sweeper.n_jobs=1`: each trial is a job of the launcher, fitted like the workers'
    (Ray refused hydra-ray-launcher's object_store_memory when joining: the sweep failed)."""
    env = {k: v for k, v in env.items() if not k.startswith("RAY_")}
    sweep(tmp_path, env, "x=interval(-5,5)", "hydra.sweeper.n_trials=2",
          "hydra.sweeper.n_jobs=1", *ray_cluster.launcher(), NO_MLFLOW, own_process=True)
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert {t.user_attrs["pid"] for t in trials} <= ray_cluster.worker_pids()
    # each trial's job folder where the command said, not in the folder the cluster runs in
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.name.isdigit()) == ["0", "1"]
    assert not list(ray_cluster.dir.glob("sweep"))
