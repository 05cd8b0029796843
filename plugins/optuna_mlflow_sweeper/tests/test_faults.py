"""A full disk ends a sweep at once, in one line naming the store on it, and keeps what was
recorded; a local fault is never waited for; a refused contact is named in a few words.

The full disk is a real 2 MiB tmpfs (root only); the sweeps are real commands of the toy app.
"""


from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from toyapp import command, peek, store_env, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl.faults import local_fault, unreachable_cause
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import (
    fill,
    free_port,
)


@pytest.mark.parametrize("error, cause", [
    (OSError(errno.ENOSPC, "No space left on device", "/x/f"), "no space left on device: /x/f"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    (OSError(errno.EACCES, "Permission denied", "/x"), "permission denied: /x"),
    (sqlite3.OperationalError("database or disk is full"), "database or disk is full"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "read-only database"),
    (sqlite3.OperationalError("database is locked"), None),  # waits: another writer
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), None),  # an outage
    (TimeoutError("timed out"), None),
])
def test_local_faults_are_told_from_outages(error: BaseException, cause: str | None) -> None:
    assert local_fault(error) == cause
    try:  # wrapped, as SQLAlchemy and MLflow raise it
        raise RuntimeError("while writing") from error
    except RuntimeError as wrapped:
        assert local_fault(wrapped) == cause


def test_a_local_fault_is_never_retried() -> None:
    import sqlalchemy

    from hydra_plugins.optuna_mlflow_sweeper._impl.outbox import transient
    from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import connection_lost

    full = sqlalchemy.exc.OperationalError("INSERT", {}, sqlite3.OperationalError(
        "database or disk is full"))
    lost = sqlalchemy.exc.OperationalError("SELECT", {}, sqlite3.OperationalError(
        "unable to open database file"))
    assert not connection_lost(full) and not transient(full)
    assert connection_lost(lost) and transient(lost)


@pytest.mark.slow
def test_a_full_disk_ends_the_sweep_in_one_line_and_keeps_what_was_recorded(
    tmp_path: Path, full_disk: Path, mlflow_template: Path
) -> None:
    store = full_disk / "mlflow.db"
    shutil.copy(mlflow_template, store)
    client = MlflowClient(f"sqlite:///{store}")
    before = client.create_run(client.create_experiment("before")).info.run_id
    client.log_metric(before, "m", 1.5)
    fill(full_disk)
    env = store_env(tmp_path, mlflow_template)
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{store}", "OPTUNA_MLFLOW_PATIENCE": "600"})
    started = time.monotonic()
    proc = sweep(tmp_path, env, "x=interval(-5,5)", "hydra.sweeper.n_trials=2", ok=False)
    seconds = time.monotonic() - started
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert lines == [f"cannot write the MLflow store at {store}: database or disk is full"], \
        proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert client.get_run(before).data.metrics == {"m": 1.5}  # nothing recorded is lost
    print(f"full MLflow store: {seconds:.1f} s")


@pytest.mark.slow
def test_a_disk_that_fills_mid_sweep_ends_it_in_one_line(
    tmp_path: Path, full_disk: Path, mlflow_template: Path
) -> None:
    """Not waited out as an outage (the patience is 600 s): the next write names the store."""
    store = full_disk / "mlflow.db"
    shutil.copy(mlflow_template, store)
    env = store_env(tmp_path, mlflow_template)
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{store}", "OPTUNA_MLFLOW_PATIENCE": "600"})
    proc = subprocess.Popen(command("x=interval(-5,5)", "hydra.sweeper.n_trials=8", "sleep=2"),
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _finished_trials(tmp_path) and proc.poll() is None:
            assert time.monotonic() < deadline, "no trial finished within 240 s"
            time.sleep(0.5)
        fill(full_disk)
        filled = time.monotonic()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = err.strip().splitlines()
    assert proc.returncode != 0, out[-2000:]
    assert lines[-1] == f"cannot write the MLflow store at {store}: database or disk is full", \
        err[-3000:]
    assert "Traceback" not in out + err
    print(f"disk filled mid-sweep: ended {time.monotonic() - filled:.1f} s later")


def _finished_trials(tmp_path: Path) -> int:
    return sum(t.state.is_finished() for t in peek(tmp_path))


def test_a_sweep_folder_on_a_full_disk_is_named(tmp_path: Path, full_disk: Path,
                                                mlflow_template: Path) -> None:
    fill(full_disk)
    proc = sweep(tmp_path, store_env(tmp_path, mlflow_template), "x=interval(-5,5)",
                 sweep_dir=str(full_disk / "sweep"), ok=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"cannot write the sweep folder {full_disk / 'sweep'}: no space left on device"
    ], proc.stderr[-3000:]


def test_unreachable_cause_of_a_real_refusal() -> None:
    import socket

    with pytest.raises(OSError) as refused:
        socket.create_connection(("127.0.0.1", free_port()), timeout=5)
    assert unreachable_cause(refused.value) == "connection refused"
