"""The outbox of MLflow writes, against real MLflow clients: a tracking server that does not
answer (a closed port) and a SQLite store that does. Writes that could not be sent are spooled in
order and delivered by the next outbox that opens the folder; a write the store rejects is
dropped with a warning and the ones after it still go."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hydra_plugins.optuna_mlflow_sweeper._impl.retry import poll
from hydra_plugins.optuna_mlflow_sweeper._impl.run_writes import mlflow_outbox
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import free_port
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import copied_store


def test_writes_a_server_never_took_are_spooled_then_delivered_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the outbox retries, not MLflow
    store = MlflowClient(copied_store(tmp_path))
    run_id = store.create_run(store.create_experiment("outbox")).info.run_id
    spool = tmp_path / "spool"

    down = mlflow_outbox(MlflowClient(f"http://127.0.0.1:{free_port()}"), spool)
    for step in range(3):
        down.put("log_batch", run_id, [["loss", 1.0 / (step + 1), 1_000 + step, step]])
    down.put("set_terminated", run_id, "FINISHED")
    saved = down.close(wait=1.0)
    assert saved is not None and len(saved.read_text().splitlines()) == 4
    # what it spooled it no longer sends: its thread stops retrying (no second delivery, and no
    # thread left knocking at the closed port for the rest of this process)
    assert poll(lambda: down.pending() == 0, 30, 0.1)
    assert store.get_run(run_id).info.status == "RUNNING"  # nothing went meanwhile

    up = mlflow_outbox(store, spool)  # a later sweep or run opening the folder
    assert up.close(wait=30.0) is None  # all delivered: nothing spooled again
    assert [m.step for m in store.get_metric_history(run_id, "loss")] == [0, 1, 2]
    assert store.get_run(run_id).info.status == "FINISHED"
    assert not list(spool.iterdir())  # each file taken once


def test_a_rejected_write_is_dropped_with_a_warning_and_the_rest_still_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MlflowClient(copied_store(tmp_path))
    run_id = store.create_run(store.create_experiment("outbox")).info.run_id
    box = mlflow_outbox(store, tmp_path / "spool")
    caplog.set_level(logging.WARNING)
    box.put("log_batch", "0" * 32, [["loss", 1.0, 1_000, 0]])  # no such run
    box.put("log_batch", run_id, [["loss", 0.5, 1_001, 1]])
    assert box.close(wait=30.0) is None
    assert "MLflow rejected log_batch" in caplog.text
    assert [m.value for m in store.get_metric_history(run_id, "loss")] == [0.5]
