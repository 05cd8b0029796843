"""The app's sweep on a real local Ray cluster (`hydra/launcher=ray`, two workers as Ray tasks):
a Ray worker killed mid-trial costs only the epochs since its trial's last checkpoint.

Real Keras training of MNIST slices, a real SQLite study and MLflow store, a real cluster started
and stopped by the fixture; the worker is SIGKILLed by its pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing.processes import finish, started
from hydra_plugins.optuna_mlflow_sweeper._testing.ray_cluster import RayCluster
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import copied_store
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mnist_sweep.model import checkpoint_store
from mnist_sweep.tracking.keys import mlflow_key
from tests.helpers import LAUNCHED, assert_two_finished, epochs_saved, run_sweep

EPOCHS = 4
SWEEP = ["-m", "hydra/sweeper=mnist", "hydra.sweeper.study_name=ray",
         "hydra.sweep.dir=multirun/ray", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
         "hydra.sweeper.direction=maximize", "train.learning_rate=choice(0.003,0.002)",
         # (a grace period longer than the workers stay frozen)
         "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=5",
         "hydra.callbacks.sweep_summary.reference=false", "data.limit_train=1500",
         "data.val_size=500", "eval.noise_levels=[]", f"train.epochs={EPOCHS}", "train.seed=3",
         "tracking.log_model=false", "tracking.log_plots=false"]
TRIAL_LINE = re.compile(r"\[optuna_mlflow\] trial (\d+)")


def _saved(folder: Path) -> dict[int, int]:
    """Epochs checkpointed, by trial (its retries checkpoint in the first trial's folder)."""
    base = folder / "multirun/ray/checkpoints/ray"
    return {int(d.name.removeprefix("trial-")): epochs_saved(d / checkpoint_store.FILE)
            for d in base.glob("trial-*")}


def _trial_of(cluster: RayCluster, pid: int) -> int | None:
    """The trial the worker `pid` runs: the last it announced."""
    numbers = TRIAL_LINE.findall(cluster.output(pid))
    return int(numbers[-1]) if numbers else None


def _kill_a_checkpointed_worker(cluster: RayCluster, folder: Path) -> tuple[int, int] | None:
    """Freeze the workers, see which trial each runs and how far it is saved, SIGKILL one whose
    trial has a checkpoint and is not done, let the others go on: (its trial, epochs saved), or
    None when none is at such a point (then all go on)."""
    workers = cluster.processes("ray::_run_job")
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        saved = _saved(folder)
        for pid in workers:
            number = _trial_of(cluster, pid)
            if number is not None and 1 <= saved.get(number, 0) < EPOCHS:
                os.kill(pid, signal.SIGKILL)
                return number, saved[number]
        return None
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
def test_a_ready_made_sweep_joins_a_running_cluster_by_its_address_alone(
    tmp_path: Path, mnist_cache: Path, ray_cluster: RayCluster
) -> None:
    """The README's Ray recipe, small: `sweep=cnn_search hydra.sweeper.n_jobs=2 hydra/launcher=ray
    hydra.launcher.ray.init.address=127.0.0.1:PORT`, no other Ray setting on the command line or
    in the environment."""
    assert not [k for k in os.environ if k.startswith("RAY_")]
    proc = run_sweep(tmp_path, "sweep=cnn_search", *LAUNCHED, "hydra.sweeper.enqueue=[]",
                     "eval.noise_levels=[]", *ray_cluster.launcher(), multirun_flag=False,
                     own_process=True)  # a Ray driver of its own, as a user's command is
    assert "2 workers (jobs of RayLauncher)" in proc.stdout
    assert "(_run_job pid=" not in proc.stdout + proc.stderr  # the workers' lines: in Ray's logs
    assert_two_finished(tmp_path, "cnn_search")
    joined = [pid for pid in ray_cluster.worker_pids()
              if "[optuna_mlflow] study cnn_search" in ray_cluster.output(pid)]
    assert 1 <= len(joined) <= 2  # the trials ran in the cluster's workers


@pytest.mark.slow
def test_a_killed_ray_worker_costs_only_the_epochs_since_its_trials_checkpoint(
    tmp_path: Path, mnist_cache: Path, ray_cluster: RayCluster
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env.update(ray_cluster.env, MLFLOW_TRACKING_URI=copied_store(tmp_path))
    with started([sys.executable, "-m", "mnist_sweep", *SWEEP, *ray_cluster.launcher()],
                 tmp_path, env) as proc:
        deadline = time.monotonic() + 480
        killed = None
        while killed is None:
            assert proc.poll() is None, proc.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "no trial checkpointed in 480 s"
            if any(1 <= n < EPOCHS for n in _saved(tmp_path).values()):
                killed = _kill_a_checkpointed_worker(ray_cluster, tmp_path)
            time.sleep(0.1)
        killed_number, killed_at = killed
        finish(proc)

    trials = optuna.load_study(study_name="ray",
                               storage=f"sqlite:///{tmp_path}/multirun/ray/optuna.db").trials
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2
    failed = trials[killed_number]
    assert failed.state == TrialState.FAIL
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params
    assert sorted(retry.intermediate_values) == list(range(1, EPOCHS + 1))  # each step once
    client = MlflowClient(f"sqlite:///{tmp_path}/store.db")
    run = client.get_run(retry.user_attrs["mlflow_run_id"])
    # the retry trained epochs killed_at+1..EPOCHS only: the kill cost the epoch in progress
    assert run.data.tags["resumed_from_epoch"] == str(killed_at)
    for key in ("val_accuracy", "loss"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id,
                                                           mlflow_key(key, per_epoch=True))]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), key
    assert not _saved(tmp_path)  # finished trials leave no checkpoint
    # Ray ran the killed task again: a third worker joined the study
    joined = [pid for pid in ray_cluster.worker_pids()
              if "[optuna_mlflow] study ray" in ray_cluster.output(pid)]
    assert len(joined) == 3, joined
