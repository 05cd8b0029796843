"""Joining a study: processes started together on fresh stores, resumes, what may change
between commands, a study started over, trials orphaned by a dead process.

Real sweeps of the toy app on real SQLite stores in tmp_path; no mocks.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from toyapp import (
    NO_MLFLOW,
    finish,
    params_of,
    runs,
    start,
    study,
    sweep,
)


@pytest.mark.slow
def test_three_processes_started_at_once_on_fresh_stores_share_the_study(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "mlflow.db").unlink()  # fresh MLflow store too: its migrations race
    procs = [start(tmp_path, env, "x=interval(-5,5)", "y=interval(-5,5)", "sleep=0.3",
                   "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.seed=0") for _ in range(3)]
    outcomes = [finish(p) for p in procs]
    for code, out, err in outcomes:
        assert code == 0, out[-2000:] + err[-3000:]
    trials = study(tmp_path).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 6 <= len(complete) <= 6 + 2  # the shared budget, at most one extra per extra process
    assert len(set(params_of(complete))) == len(complete)  # no accidental repeats
    client, parents, children = runs(tmp_path)
    assert len([p for p in parents if p.info.lifecycle_stage == "active"]) == 1
    assert all(c.info.status == "FINISHED" for c in children)


@pytest.mark.slow
def test_a_resumed_study_draws_new_params(tmp_path: Path, env: dict[str, str]) -> None:
    args = ["x=interval(-5,5)", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=3",
            NO_MLFLOW]
    sweep(tmp_path, env, *args, "hydra.sweeper.n_trials=2")
    sweep(tmp_path, env, *args, "hydra.sweeper.n_trials=4")
    trials = study(tmp_path).trials
    assert len(trials) == 4 and len(set(params_of(trials))) == 4
    # and a seeded one-process sweep still repeats exactly
    again = tmp_path / "again"
    again.mkdir()
    sweep(again, env, *args, "hydra.sweeper.n_trials=2")
    assert params_of(study(again).trials) == params_of(trials[:2])


@pytest.mark.slow
def test_resuming_with_other_fixed_overrides_is_refused_unless_allowed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    sweep(tmp_path, env, "x=interval(-5,5)", "y=1.0", "hydra.sweeper.n_trials=1", NO_MLFLOW)
    proc = sweep(tmp_path, env, "x=interval(-5,5)", "y=2.0", "hydra.sweeper.n_trials=2",
                 NO_MLFLOW, ok=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "hydra.sweeper.allow_changed_overrides" in proc.stderr and "y: 1.0 -> 2.0" in proc.stderr
    assert len(study(tmp_path).trials) == 1
    sweep(tmp_path, env, "x=interval(-5,5)", "y=2.0", "hydra.sweeper.n_trials=2",
          "hydra.sweeper.allow_changed_overrides=[y]", NO_MLFLOW)
    assert len(study(tmp_path).trials) == 2


@pytest.mark.slow
def test_a_range_written_otherwise_is_the_same_and_a_changed_one_is_recorded(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Ranges are compared by value, not text; an allowed change is what search_space.json
    says afterwards."""
    sweep(tmp_path, env, "x=tag(log,interval(1e-4,3e-2))", "hydra.sweeper.n_trials=1", NO_MLFLOW)
    sweep(tmp_path, env, "x=tag(log, interval(0.0001, 0.03))", "hydra.sweeper.n_trials=2",
          NO_MLFLOW)
    assert len(study(tmp_path).trials) == 2
    sweep(tmp_path, env, "x=tag(log,interval(1e-4,5e-2))", "hydra.sweeper.n_trials=3",
          "hydra.sweeper.allow_changed_overrides=true", NO_MLFLOW)
    space = json.loads((tmp_path / "sweep" / "search_space.json").read_text())
    assert space["x"]["attributes"]["high"] == 0.05


@pytest.mark.slow
def test_a_study_started_over_gets_its_own_parent_run(tmp_path: Path, env: dict[str, str]) -> None:
    """`rm -rf` of the sweep folder, then the same command: a new study of the same name in a
    new database at the same path; its trials go under a new parent, not the old one."""
    args = ["x=interval(-5,5)", "hydra.sweeper.n_trials=1"]
    sweep(tmp_path, env, *args)
    shutil.rmtree(tmp_path / "sweep")
    sweep(tmp_path, env, *args)
    client, parents, children = runs(tmp_path)
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    for parent in parents:
        mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert [int(c.data.tags["optuna.trial_number"]) for c in mine] == [0]


@pytest.mark.slow
def test_an_orphaned_running_trial_is_reclaimed_on_the_next_start(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "sweep").mkdir()
    storage = f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    orphan = optuna.create_study(study_name="app", storage=storage).ask()  # a process asked
    time.sleep(2.5)  # and died before its first heartbeat, longer ago than the grace period
    sweep(tmp_path, env, "x=interval(-5,5)", "hydra.sweeper.n_trials=2",
          "hydra.sweeper.heartbeat_interval=1", NO_MLFLOW)
    trials = study(tmp_path).trials
    assert trials[orphan.number].state == TrialState.FAIL
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2
