"""The MLflow side of a sweep, on a real SQLite store and real Optuna studies: one parent run per
study, reopened on resume (a changed setting kept beside the first as `latest.<key>`), a study
started over under the same name getting a parent of its own, and the child runs a dead sweep
left RUNNING ended when the parent reopens. (Whole sweeps: test_worker.)"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from hydra_plugins.optuna_mlflow_sweeper._impl.runs import MlflowTracker
from hydra_plugins.optuna_mlflow_sweeper._impl.study import STUDY_UID_ATTR
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import copied_store

KEY = "sqlite:///optuna.db|study"
TAGS = {"sweeper": "optuna_mlflow"}


def _study(uid: str) -> optuna.Study:
    study = optuna.create_study(study_name="study")
    study.set_user_attr(STUDY_UID_ATTR, uid)
    return study


@pytest.fixture
def tracker(tmp_path: Path):
    """tracker(): a new tracker on this test's store, as each sweep process makes one."""
    uri = copied_store(tmp_path)
    made: list[MlflowTracker] = []

    def make() -> MlflowTracker:
        made.append(MlflowTracker(uri, "sweeps", spool_dir=str(tmp_path / "spool")))
        return made[-1]

    yield make
    for t in made:
        t.outbox.close(wait=30)


def test_a_resumed_study_reopens_its_parent_and_keeps_a_changed_setting_beside_it(
    tracker,
) -> None:
    study = _study("u1")
    first = tracker()
    parent = first.open_parent(study, KEY, {"n_trials": "4", "sampler": "TPESampler"}, TAGS)
    first.finish_parent("FINISHED")
    again = tracker()
    assert again.open_parent(study, KEY, {"n_trials": "8", "sampler": "TPESampler"}, TAGS) == parent
    run = again.client.get_run(parent)
    assert run.info.status == "RUNNING"
    assert run.data.params["n_trials"] == "4" and run.data.tags["latest.n_trials"] == "8"
    assert "latest.sampler" not in run.data.tags


def test_a_study_started_over_under_its_name_gets_a_parent_of_its_own(tracker) -> None:
    first, second = tracker(), tracker()
    old = first.open_parent(_study("u1"), KEY, {}, TAGS)
    new = second.open_parent(_study("u2"), KEY, {}, TAGS)
    assert new != old
    assert len(second.client.search_runs([second.experiment_id])) == 2


def test_children_a_dead_sweep_left_running_are_ended_when_the_parent_reopens(tracker) -> None:
    study = _study("u1")
    dead = tracker()
    dead.open_parent(study, KEY, {}, TAGS)
    finished, running = study.ask(), study.ask()
    finished_run = dead.start_child(finished.number, "study", {}, ["x=1"])
    running_run = dead.start_child(running.number, "study", {}, ["x=2"])
    study.tell(finished, 0.5)  # the trial ended; its process died before its run did
    assert dead.outbox.drain(30)
    live = tracker()
    live.open_parent(study, KEY, {}, TAGS)  # the rerun reconciles
    assert live.outbox.drain(30)
    client: MlflowClient = live.client
    ended = client.get_run(finished_run)
    assert ended.info.status == "FINISHED" and ended.data.metrics == {"objective": 0.5}
    assert client.get_run(running_run).info.status == "RUNNING"  # another process may run it
