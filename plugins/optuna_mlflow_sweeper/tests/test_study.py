"""Study bookkeeping on a real SQLite storage: stopped trials keep their promise to run again."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import open_storage
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import poll
from hydra_plugins.optuna_mlflow_sweeper._impl.study import (
    INTERRUPTED,
    TERMINATED,
    OneReadStorage,
    count_trials,
    fail_orphans,
    fail_stale_trials,
    one_read,
    requeue_stopped,
    retry_later,
)


def _process(tmp_path: Path, beat: int = 1, grace: int = 1) -> optuna.Study:
    """Study `s` in tmp_path as a sweep process holds it: Optuna's cache over the sweeper's
    storage, heartbeats every `beat` s, stale after `grace` s. Two calls: two processes."""
    return optuna.create_study(study_name="s", load_if_exists=True, storage=OneReadStorage(
        open_storage(f"sqlite:///{tmp_path}/optuna.db", beat, grace)))


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
    first, second = _process(tmp_path), _process(tmp_path)
    orphan = first.ask()
    with one_read(second):  # its read of the trials happens here, before the other's write
        assert [t.number for t in second.get_trials(states=(TrialState.RUNNING,))] == [0]
        assert fail_orphans(first, "no heartbeat", older_than=0.0) == [orphan.number]
        assert fail_orphans(second, "no heartbeat", older_than=0.0) == []
    trials = _process(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["failed_trial"] == orphan.number


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_stale_trial_is_reported_by_the_one_process_that_failed_it(tmp_path: Path) -> None:
    """Trial 0's process died (its heartbeat stopped), trial 1's own worker failed it. Two
    processes check: the first fails trial 0 (one retry), the other fails nothing, and
    neither takes trial 1 for a stale one (it would end its MLflow run as "heartbeat lost")."""
    first, second = _process(tmp_path), _process(tmp_path)
    dead, failed = first.ask(), first.ask()
    for trial in (dead, failed):
        first._storage.record_heartbeat(trial._trial_id)
    first.tell(failed, state=TrialState.FAIL)
    stale: list[optuna.trial.FrozenTrial] = []

    def looked() -> bool:  # stale once its beat is older than the grace period (1 s)
        stale.extend(fail_stale_trials(first))
        return bool(stale)

    assert poll(looked, timeout=30, interval=0.2), "trial 0 never went stale in 30 s"
    assert [t.number for t in stale] == [dead.number]
    assert fail_stale_trials(second) == [] and fail_stale_trials(first) == []
    trials = _process(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].system_attrs["failed_trial"] == dead.number


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_look_for_stale_trials_that_finds_none_is_one_transaction(tmp_path: Path) -> None:
    """Each worker looks after every trial while others run: a storage round trip each time
    (issue 28 counts them per trial), not a read of the trials before and after."""
    study = _process(tmp_path, beat=60, grace=120)
    backend = study._storage._backend
    for _ in range(3):
        backend.record_heartbeat(study.ask()._trial_id)
    begun: list[object] = []
    sqlalchemy.event.listen(backend.engine, "begin", begun.append)
    assert fail_stale_trials(study) == []
    assert len(begun) == 1


def test_budget_counts_running_and_unretried_failures() -> None:
    def trial(number: int, state: TrialState, history: list[int] | None = None):
        return optuna.trial.FrozenTrial(
            number=number, state=state, value=1.0 if state == TrialState.COMPLETE else None,
            datetime_start=None, datetime_complete=None, params={}, distributions={},
            user_attrs={}, system_attrs={"retry_history": history} if history else {},
            intermediate_values={}, trial_id=number, values=None,
        )

    counts = count_trials([
        trial(0, TrialState.COMPLETE), trial(1, TrialState.FAIL), trial(2, TrialState.FAIL),
        trial(3, TrialState.RUNNING), trial(4, TrialState.PRUNED),
        trial(5, TrialState.WAITING, history=[2]),  # retry of 2: 2 does not count
    ])
    assert (counts.complete, counts.pruned, counts.failed, counts.running) == (1, 1, 1, 1)
    assert counts.used == 4 and counts.waiting == 1
