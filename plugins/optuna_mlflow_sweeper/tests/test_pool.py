"""Workers: N processes on one study (local, or a launcher's jobs), the parent's progress
display of them, and SIGTERM to the parent.

Real processes on real stores (SQLite Optuna and MLflow stores in tmp_path): the toy app's sweeps
are subprocesses, faults are real signals to their process groups. Every wait is bounded and every
process a test starts is ended by its id.
"""

from __future__ import annotations

import datetime
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from toyapp import (
    NO_MLFLOW,
    SLOW_FAST,
    alive_in_group,
    finish,
    params_of,
    running_trials,
    runs,
    start,
    study,
    sweep,
    wait_for,
)

from hydra_plugins.optuna_mlflow_sweeper._impl.pool import Watcher


def started(study: optuna.Study, x: float) -> optuna.Trial:
    """A trial as a worker starts it: asked, its params and overrides recorded."""
    trial = study.ask({"x": optuna.distributions.FloatDistribution(x, x)})
    trial.set_user_attr("overrides", [f"x={x}"])
    return trial


@pytest.mark.parametrize("finished_before_the_look", [False, True])
def test_every_trial_of_this_command_gets_its_line_once(tmp_path: Path, capsys,
                                                        finished_before_the_look: bool) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    study.tell(started(study, 1.0), 1.0)  # an earlier command's trial
    watch = Watcher(study, n_trials=3, progress=True)
    trial = started(study, 2.5)
    if finished_before_the_look:  # a quick trial on a loaded machine: never seen running
        study.tell(trial, 0.5)
    assert watch() and watch()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " trial " in ln]
    assert lines == [f"[optuna_mlflow] trial {trial.number}: x=2.5"]


@pytest.mark.slow
def test_two_workers_keep_two_trials_in_flight_without_waiting_for_each_other(
    tmp_path: Path, env: dict[str, str]
) -> None:
    proc = sweep(tmp_path, env, "x=interval(-5,5)", SLOW_FAST, "hydra.sweeper.n_trials=6",
                 "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=1", NO_MLFLOW)
    assert "2 workers (local processes)" in proc.stdout
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids  # two warm workers ran all trials
    # No batch barrier: in a batch, trials side by side start together. Here some trial starts
    # while another worker's trial, begun well before, still runs.
    half_second = datetime.timedelta(seconds=0.5)
    assert any(a.user_attrs["pid"] != b.user_attrs["pid"]
               and b.datetime_start + half_second < a.datetime_start < b.datetime_complete
               for a in trials for b in trials)
    assert len(set(params_of(trials))) == 6  # the two workers' samplers never drew alike


@pytest.mark.slow
@pytest.mark.parametrize(("launcher", "name"), [
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "JoblibLauncher"),
    # submitit's local executor: the same jobs SLURM would run (hydra/launcher=submitit_slurm)
    (["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"], "LocalLauncher"),
])
def test_a_launcher_starts_workers_not_trials(
    tmp_path: Path, env: dict[str, str], launcher: list[str], name: str
) -> None:
    """n_jobs=2 through a cluster launcher: two launcher jobs, each a worker running trials."""
    proc = sweep(tmp_path, env, "x=interval(-5,5)", "sleep=0.5", "hydra.sweeper.n_trials=3",
                 "hydra.sweeper.n_jobs=2", *launcher, NO_MLFLOW)
    assert f"2 workers (jobs of {name})" in proc.stdout
    trials = study(tmp_path).trials
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 3
    per_worker: dict[int, list[int]] = {}
    for t in trials:
        per_worker.setdefault(t.user_attrs["pid"], []).append(t.number)
    # at most two processes ran the three trials, one of them several: workers, not a job per
    # trial. How many each gets depends on start-up: under load one may end the budget before
    # the other starts.
    assert len(per_worker) <= 2 and max(len(v) for v in per_worker.values()) > 1


@pytest.mark.slow
@pytest.mark.parametrize(("n_jobs", "obey", "resume"),
                         [(1, True, False), (1, False, True), (2, True, False)])
def test_sigterm_records_the_trials_in_flight_and_exits_143(
    tmp_path: Path, env: dict[str, str], n_jobs: int, obey: bool, resume: bool
) -> None:
    """SIGTERM to the sweep's main process only, as a scheduler sends it: each trial in flight
    ends at its epoch's end (or after the grace period when the task never looks), is recorded
    FAIL with a retry queued first, its run KILLED; exit 143, one line; no worker outlives it.
    Resuming runs the queued retries the same way in each case: one case resumes."""
    args = ["x=interval(-5,5)", "sleep=40", "epochs=40", f"obey_stop={str(obey).lower()}",
            "hydra.sweeper.n_trials=2", f"hydra.sweeper.n_jobs={n_jobs}",
            "hydra.sweeper.stop_grace_period=3"]
    proc = start(tmp_path, env, *args)
    wait_for(lambda: len(running_trials(tmp_path)) == n_jobs, timeout=240,
             what=f"{n_jobs} trial(s) running", proc=proc)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc, timeout=120)
    # a process the sweep ended may still be on its way out (`[python]`, its memory gone): give
    # it a few seconds, then one still there outlived the sweep
    wait_for(lambda: not alive_in_group(proc.pid), timeout=5,
             what=lambda: f"no process of the sweep to outlive it: {alive_in_group(proc.pid)}")
    assert code == 143, out[-2000:] + err[-3000:]
    assert "Traceback" not in err and "stopped (SIGTERM)" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    trials = study(tmp_path).trials
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == n_jobs and not [t for t in trials if t.state == TrialState.RUNNING]
    if obey:  # stopped at an epoch's end, not killed mid-epoch after the grace period
        assert all("stopped_after_epoch" in t.user_attrs for t in stopped), [
            (t.number, t.user_attrs) for t in stopped]
    queued = {t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.WAITING}
    assert {t.number for t in stopped} <= queued
    client, parents, children = runs(tmp_path)
    statuses = {int(c.data.tags["optuna.trial_number"]): c.info.status for c in children}
    assert {statuses[t.number] for t in stopped} == {"KILLED"}
    if not resume:
        return
    sweep(tmp_path, env, *args[:1], "sleep=0.2", *args[4:],  # resumes, quicker: retries first
          "hydra.sweeper.allow_changed_overrides=true")
    trials = study(tmp_path).trials
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2
