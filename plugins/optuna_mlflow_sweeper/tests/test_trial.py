"""The trial-side API (hydra_plugins.optuna_mlflow_sweeper.trial) against a real Optuna storage,
in-process: the environment variables are what the sweeper's `hydra.job.env_set` gives a job."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution

from hydra_plugins.optuna_mlflow_sweeper._impl import env
from hydra_plugins.optuna_mlflow_sweeper._impl import trial as api
from hydra_plugins.optuna_mlflow_sweeper._impl.study import retry_later

ENV = (env.ENV_STORAGE, env.ENV_STUDY, env.ENV_TRIAL_ID, env.ENV_TRIAL_NUMBER, env.ENV_HEARTBEAT)


@pytest.fixture(autouse=True)
def no_sweep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def enter_trial(monkeypatch: pytest.MonkeyPatch, url: str, study: str, trial: optuna.Trial,
                heartbeat: int | None = None) -> None:
    monkeypatch.setenv(env.ENV_STORAGE, url)
    monkeypatch.setenv(env.ENV_STUDY, study)
    monkeypatch.setenv(env.ENV_TRIAL_ID, str(trial._trial_id))
    monkeypatch.setenv(env.ENV_TRIAL_NUMBER, str(trial.number))
    if heartbeat:
        monkeypatch.setenv(env.ENV_HEARTBEAT, str(heartbeat))


def test_outside_a_sweep_everything_is_a_no_op() -> None:
    assert not api.in_sweep()
    assert api.current_trial() is None
    assert api.report(0.5, 3) is None
    with api.trial_heartbeat() as trial:
        assert trial is None


def test_current_trial_is_rebuilt_from_storage_and_report_prunes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url)
    done = study.ask()
    for step in range(3):
        done.report(1.0, step)
    study.tell(done, 1.0)
    pruner = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1}
    good, bad = (study.ask({"x": FloatDistribution(0, 1)}) for _ in range(2))
    for running in (good, bad):
        study._storage.set_trial_system_attr(running._trial_id, api.PRUNER_ATTR, pruner)

    enter_trial(monkeypatch, url, "s", good)
    trial = api.current_trial()
    assert trial is not None and trial.number == good.number and trial.params == good.params
    assert api.current_trial() is trial  # cached per process
    api.report(0.5, 0)  # better than the median of finished trials: goes on
    api.report(0.4, 1)

    enter_trial(monkeypatch, url, "s", bad)  # the next job in the same process
    assert api.current_trial().number == bad.number
    with pytest.raises(optuna.TrialPruned, match="pruned at step 0"):
        api.report(5.0, 0)
    assert study.trials[1].intermediate_values == {0: 0.5, 1: 0.4}
    assert study.trials[2].intermediate_values == {0: 5.0}


def test_report_is_ignored_for_multi_objective(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="mo", storage=url, directions=["minimize", "maximize"])
    enter_trial(monkeypatch, url, "mo", study.ask())
    api.report(1.0, 0)
    assert study.trials[0].intermediate_values == {}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_heartbeat_runs_while_the_job_runs_and_stops_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="hb", storage=storage)
    running = study.ask()
    enter_trial(monkeypatch, url, "hb", running, heartbeat=1)
    assert api.current_trial() is not None  # starts the heartbeat thread
    time.sleep(2.5)
    assert running._trial_id not in storage._get_stale_trial_ids(study._study_id)
    for name in ENV:  # the job ends: Hydra restores the environment
        monkeypatch.delenv(name)
    time.sleep(3.5)
    assert running._trial_id in storage._get_stale_trial_ids(study._study_id)


def test_a_recorded_checkpoint_location_is_handed_to_the_retry_with_its_password_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry is a new trial, possibly in another folder or on another machine: it finds
    the location in the study (the failed trial's system attrs, which a retry inherits)."""
    assert api.recorded_checkpoint() is None and api.record_checkpoint("/x") is None  # no-ops
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url)
    first = study.ask({"x": FloatDistribution(0, 1)})
    enter_trial(monkeypatch, url, "s", first)
    assert api.recorded_checkpoint() is None  # not a retry: nothing recorded
    api.record_checkpoint("sftp://me:s3cret-pw@host/ckpt/s/trial-0")
    stored = study._storage.get_trial_system_attrs(first._trial_id)[api.CHECKPOINT_ATTR]
    assert stored == "sftp://me:***@host/ckpt/s/trial-0"

    study.tell(first, state=optuna.trial.TrialState.FAIL)
    retry_later(study, study._storage.get_trial(first._trial_id))
    retry = study.ask()
    assert retry.params == first.params
    enter_trial(monkeypatch, url, "s", retry)
    assert api.recorded_checkpoint() == "sftp://me:***@host/ckpt/s/trial-0"
