"""A trial's checkpoint is found through the study: a custom sweep SIGKILLed mid-trial and run
again from another folder (a new timestamped sweep folder, as on another machine) resumes the
trial from its checkpoint on S3 (a real S3-compatible server, moto's), with nothing written to
the local disk. (A checkpoint in the first run's sweep folder, found the same way, is
test_preemption's SIGKILL case.)

Real `mnist-sweep` commands in their own process groups, SQLite study and MLflow store shared by
both runs; the smallest dense net on 300 digits, many short epochs, so a kill lands mid-trial.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import S3Server
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mnist_sweep.model.checkpoint_store import FILE

pytestmark = pytest.mark.slow

EPOCHS = 15
SWEEP = ["-m", "hydra/sweeper=mnist", "hydra.sweeper.study_name=moved",
         "hydra.sweeper.n_trials=1", "hydra.sweeper.direction=maximize",
         "train.optimizer=choice(adam)", "hydra.sweeper.heartbeat_interval=1",
         "hydra.sweeper.grace_period=2", "hydra.callbacks.sweep_summary.reference=false",
         "data.limit_train=300", "data.val_size=100", f"train.epochs={EPOCHS}",
         "model.hidden.0.units=4", "tracking.log_model=false", "tracking.log_plots=false",
         "eval.noise_levels=[]"]
CHECKPOINT_ATTR = "optuna_mlflow:checkpoint"


def start(folder: Path, shared: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    folder.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    base.update(MLFLOW_TRACKING_URI=f"sqlite:///{shared}/store.db", TF_CPP_MIN_LOG_LEVEL="3",
                XDG_STATE_HOME=str(folder / "state"), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_sweep", *SWEEP,
         f"hydra.sweeper.storage=sqlite:///{shared}/optuna.db", *args],
        cwd=folder, env=base, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)


def study(shared: Path) -> optuna.Study:
    return optuna.load_study(study_name="moved", storage=f"sqlite:///{shared}/optuna.db")


def kill_after_two_epochs(proc: subprocess.Popen, shared: Path) -> None:
    """SIGKILL the whole command once the trial reported its second epoch (its first epoch's
    checkpoint is written before that report)."""
    deadline = time.monotonic() + 600
    while epochs_reported(shared) < 2:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no second epoch in 600 s"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def epochs_reported(shared: Path) -> int:
    """Read-only, straight from SQLite: opening the study through Optuna would create its schema
    beside the command that is creating it."""
    file = shared / "optuna.db"
    if not file.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{file}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM trial_intermediate_values").fetchone()[0]
    except sqlite3.Error:  # the schema is not there yet
        return 0


def test_a_killed_trial_resumes_from_its_checkpoint_on_s3_when_rerun_from_another_folder(
    tmp_path: Path, mnist_cache: Path, s3_server: S3Server
) -> None:
    shared, first, second = tmp_path / "shared", tmp_path / "first", tmp_path / "second"
    shared.mkdir()
    env, args = s3_server.env, [f"train.checkpoint.dir=s3://{s3_server.BUCKET}/moved"]
    kill_after_two_epochs(start(first, shared, env, *args), shared)
    [killed] = study(shared).trials
    assert killed.system_attrs[CHECKPOINT_ATTR] == f"s3://{s3_server.BUCKET}/moved/moved/trial-0"
    # (and perhaps the next one's temporary, when the kill came while it was written)
    assert f"moved/moved/trial-0/{FILE}" in s3_server.keys("moved/")

    rerun = start(second, shared, env, *args)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out[-2000:] + err[-4000:]
    failed, retried = study(shared).trials
    assert failed.state == TrialState.FAIL and retried.state == TrialState.COMPLETE
    assert retried.system_attrs["failed_trial"] == 0
    run = MlflowClient(f"sqlite:///{shared}/store.db").get_run(
        retried.user_attrs["mlflow_run_id"])
    resumed = int(run.data.tags["resumed_from_epoch"])
    assert 1 <= resumed < EPOCHS
    assert sorted(retried.intermediate_values) == list(range(1, EPOCHS + 1))
    assert s3_server.keys("moved/") == []  # removed when the trial ended
    assert not list(tmp_path.rglob(FILE)) and not list(tmp_path.rglob("s3:"))
