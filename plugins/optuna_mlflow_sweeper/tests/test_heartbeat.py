"""The one heartbeat (_impl/heartbeat.py) on a real SQLite Optuna storage."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages._rdb import models

from hydra_plugins.optuna_mlflow_sweeper._impl.heartbeat import Heartbeat, NullHeartbeat, beating
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import ResilientRDBStorage, open_storage

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")]


def last_beat(storage: ResilientRDBStorage, trial_id: int) -> datetime.datetime | None:
    """When the trial's heartbeat was last recorded (None: never)."""
    session = storage.scoped_session()
    try:
        row = session.query(models.TrialHeartbeatModel).filter_by(trial_id=trial_id).one_or_none()
        return None if row is None else row.heartbeat
    finally:
        storage.scoped_session.remove()


def a_running_trial(tmp_path: Path, **storage_kwargs: int) -> tuple[ResilientRDBStorage, int]:
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db", **storage_kwargs)
    study = optuna.create_study(study_name="hb", storage=storage)
    return storage, study.ask()._trial_id


# SQLite records a beat to the second: beats every quarter second for 1.3 s cross a second
BEAT, LONGER = 0.25, 1.3


@pytest.mark.slow
def test_beats_while_inside_and_none_after(tmp_path: Path) -> None:
    storage, trial_id = a_running_trial(tmp_path, heartbeat_interval=1)
    assert last_beat(storage, trial_id) is None
    with beating(storage, [trial_id]) as heartbeat:  # the storage's interval
        assert isinstance(heartbeat, Heartbeat)
        assert last_beat(storage, trial_id) is not None, "no beat on entry"
    with beating(storage, [trial_id], interval=BEAT):
        first = last_beat(storage, trial_id)
        time.sleep(LONGER)
        inside = last_beat(storage, trial_id)
        assert inside is not None and first is not None and inside > first, "no beat inside"
    after = last_beat(storage, trial_id)
    time.sleep(LONGER)
    assert last_beat(storage, trial_id) == after, "a beat after exit"


def test_a_heartbeat_ends_when_its_trial_is_no_longer_alive_here(tmp_path: Path) -> None:
    storage, trial_id = a_running_trial(tmp_path, heartbeat_interval=1)
    alive = [True]
    heartbeat = beating(storage, [trial_id], interval=BEAT, alive=lambda: alive[0]).start()
    first = last_beat(storage, trial_id)
    assert first is not None
    alive[0] = False
    time.sleep(LONGER)
    assert last_beat(storage, trial_id) == first
    heartbeat.stop()


def test_without_heartbeats_it_does_nothing_unless_given_an_interval(tmp_path: Path) -> None:
    storage, trial_id = a_running_trial(tmp_path)  # a storage without heartbeats
    with beating(storage, [trial_id]) as heartbeat:
        assert isinstance(heartbeat, NullHeartbeat)
        time.sleep(0.2)
    assert last_beat(storage, trial_id) is None
    assert set(storage.heartbeat_times()) == set()
    with beating(storage, [trial_id], interval=60):  # a job told the sweeper's interval
        assert last_beat(storage, trial_id) is not None
