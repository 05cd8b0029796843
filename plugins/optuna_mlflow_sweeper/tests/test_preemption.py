"""A worker job preempted on a cluster (submitit's signal) is requeued and its trial runs
again: a real submitit_local sweep of the toy app.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from toyapp import (
    NO_MLFLOW,
    alive_in_group,
    finish,
    running_trials,
    start,
    study,
    wait_for,
)


@pytest.mark.slow
def test_a_preempted_submitit_worker_is_requeued_and_runs_its_stopped_trial_again(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """submitit's preemption signal (USR2, as SLURM sends it) to a worker job mid-trial: the
    trial stops at its epoch's end and is recorded to run again; submitit requeues the job, and
    a worker runs the retry: the sweep reaches its budget."""
    args = ["x=interval(-5,5)", "sleep=4", "epochs=8", "obey_stop=true",  # 4 s a trial
            "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", NO_MLFLOW,
            "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    proc = start(tmp_path, env, *args)
    wait_for(lambda: running_trials(tmp_path), timeout=240, what="a trial running",
             proc=proc)  # MLflow off: running means its job recorded its pid
    time.sleep(1.5)
    [first] = running_trials(tmp_path)[:1]
    job = first.user_attrs["pid"]  # a worker runs its trials in its own process: the job's
    assert any(line.split()[0] == str(job) and "submitit.core._submit" in line
               for line in alive_in_group(proc.pid))
    os.kill(job, signal.SIGUSR2)
    code, out, err = finish(proc, timeout=300)
    assert code == 0, out[-2000:] + err[-3000:]
    trials = study(tmp_path).trials
    [stopped] = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped.number == first.number and "stopped_after_epoch" in stopped.user_attrs
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    [retry] = [t for t in complete if t.system_attrs.get("failed_trial") == stopped.number]
    assert retry.params == stopped.params and retry.user_attrs["pid"] != job
    logs = "".join(p.read_text(errors="replace")
                   for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.*"))
    requeued = [line for line in logs.splitlines()  # submitit's record (Hydra's echo aside)
                if line.startswith("submitit") and "Requeued job" in line]
    assert len(requeued) == 1
