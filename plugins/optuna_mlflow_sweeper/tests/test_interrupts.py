"""Ctrl-C handling against a real SQLite study: recording the interrupted trial must not wait on
a lock the interrupt itself left behind."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl import interrupts
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import ResilientRDBStorage


@pytest.fixture
def fresh_interrupts(monkeypatch: pytest.MonkeyPatch) -> None:
    """acknowledge() sets process-wide state: each test gets its own."""
    monkeypatch.setattr(interrupts, "_acknowledged", interrupts.threading.Event())


def fetch_cut_by_ctrl_c(storage: ResilientRDBStorage) -> None:
    """A query whose rows were being read when Ctrl-C came: its cursor stays in this frame."""
    with storage.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text("SELECT * FROM trials"))
        rows.fetchone()
        raise KeyboardInterrupt


@pytest.mark.parametrize("acknowledged", [True, False])
def test_an_interrupted_fetch_does_not_lock_out_the_record_of_the_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_interrupts: None, acknowledged: bool
) -> None:
    monkeypatch.setenv("OPTUNA_MLFLOW_PATIENCE", "0")  # a locked database fails at once
    storage = ResilientRDBStorage(f"sqlite:///{tmp_path}/optuna.db",
                                  engine_kwargs={"connect_args": {"timeout": 1}})
    study = optuna.create_study(storage=storage)
    for _ in range(3):
        study.enqueue_trial({"x": 1.0})
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 2)})
    # the job's own storage, as in a worker process: another engine, another connection
    job = ResilientRDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    try:
        fetch_cut_by_ctrl_c(job)
    except KeyboardInterrupt as e:
        if not acknowledged:  # what the sweeper did before: the open cursor locks every write
            with pytest.raises(optuna.exceptions.StorageInternalError):
                study.tell(trial, state=TrialState.FAIL)
            return
        interrupts.acknowledge(e)
        study.tell(trial, state=TrialState.FAIL)
    assert study.trials[0].state == TrialState.FAIL
