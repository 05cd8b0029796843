"""Ctrl-C handling against a real SQLite study: recording the interrupted trial must not wait on
a lock the interrupt itself left behind."""

from __future__ import annotations

import os
import signal
import threading
import time
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


@pytest.fixture
def fresh_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM sets process-wide state: each test gets its own."""
    for name in ("_acknowledged", "requested", "terminating"):
        monkeypatch.setattr(interrupts, name, threading.Event())
    monkeypatch.setattr(interrupts, "_stopped_by", [])


@pytest.mark.parametrize("obey", [True, False])
def test_a_task_run_alone_stops_at_its_epochs_end_after_sigterm(fresh_stop: None,
                                                                obey: bool) -> None:
    """A real SIGTERM to this process mid-epoch: a task that asks stops at that epoch's end; one
    that never asks is stopped where it is once the grace period is over."""
    before = signal.getsignal(signal.SIGTERM)
    epochs = 0
    with pytest.raises(interrupts.Terminated), interrupts.sigterm_stops_after_epoch(0.5):
        os.kill(os.getpid(), signal.SIGTERM)
        for epoch in range(1, 1000):
            time.sleep(0.1)  # an epoch
            epochs = epoch
            if obey and interrupts.stop_requested():
                interrupts.stop_now()
    assert signal.getsignal(signal.SIGTERM) is before  # put back
    assert interrupts._acknowledged.is_set() and interrupts.stopped_by() == signal.SIGTERM
    assert epochs == 1 if obey else 1 < epochs < 999
