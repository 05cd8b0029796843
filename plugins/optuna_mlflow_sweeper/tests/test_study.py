"""Study bookkeeping on a real SQLite storage: stopped trials keep their promise to run again."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import open_storage
from hydra_plugins.optuna_mlflow_sweeper._impl.study import (
    INTERRUPTED,
    TERMINATED,
    OneReadStorage,
    fail_orphans,
    one_read,
    requeue_stopped,
    retry_later,
)


def _failed(study: optuna.Study, reason: str) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    trial.suggest_float("x", -5, 5)
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
    return study.trials[trial.number]


@pytest.mark.parametrize(("reason", "retry_queued", "requeued"), [
    (INTERRUPTED, False, True),  # a second Ctrl-C between recording the stop and queuing
    (TERMINATED, False, True),
    (INTERRUPTED, True, False),  # the retry is there already
    ("ValueError: boom", False, False),  # a broken trial is not retried by this
])
def test_a_stopped_trial_without_its_retry_gets_one_once(
    tmp_path: Path, reason: str, retry_queued: bool, requeued: bool
) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db")
    stopped = _failed(study, reason)
    if retry_queued:
        retry_later(study, stopped)
    assert requeue_stopped(study) == ([stopped.number] if requeued else [])
    assert requeue_stopped(study) == []  # every joining process runs it: once is enough
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == int(requeued or retry_queued)
    for retry in waiting:
        assert retry.params == stopped.params
        assert retry.system_attrs["failed_trial"] == stopped.number


def test_no_retry_beyond_max_retry(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db")
    first = _failed(study, INTERRUPTED)
    retry_later(study, first)
    retry = study.ask()  # the queued retry, stopped again
    retry.set_user_attr("fail_reason", INTERRUPTED)
    study.tell(retry, state=TrialState.FAIL)
    requeue_stopped(study, max_retry=1)
    assert not study.get_trials(states=(TrialState.WAITING,))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_an_orphan_two_settling_processes_both_find_is_failed_and_retried_once(
    tmp_path: Path,
) -> None:
    """Two workers settle a study at once and both read trial 0 as an orphan (RUNNING, never
    beating). The one that writes second finds it failed already: it leaves it to the first,
    and the study holds one retry (before, its write raised and its worker died)."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="s", storage=url)

    def handle() -> optuna.Study:
        return optuna.load_study(study_name="s", storage=OneReadStorage(open_storage(url, 1, 1)))

    first, second = handle(), handle()
    orphan = first.ask()
    with one_read(second):  # its read of the trials happens here, before the other's write
        assert [t.number for t in second.get_trials(states=(TrialState.RUNNING,))] == [0]
        assert fail_orphans(first, "no heartbeat", older_than=0.0) == [orphan.number]
        assert fail_orphans(second, "no heartbeat", older_than=0.0) == []
    trials = handle().trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["failed_trial"] == orphan.number
