"""A wrong address ends a sweep at once, in one line; so does a full disk (preflight, faults).

The commands are real sweeps of the toy app (in this process, see `toyapp.sweep`), against the
real throwaway PostgreSQL and MLflow servers (servers.py): a refused port, a name under
`.invalid`, a wrong password (PostgreSQL, and a tracking server behind MLflow's basic-auth app),
a missing database, a dead tracking server. The full disk is a real 2 MiB tmpfs (root only).
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
from toyapp import command, peek, runs, store_env, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import local_fault, unreachable_cause
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import budget, directions, metric_names
from hydra_plugins.optuna_mlflow_sweeper._impl.services import sqlite_folder_exists
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import (
    AUTH_ADMIN,
    MlflowServer,
    Postgres,
    fill,
    free_port,
)

WRONG = "wrong-" + "7c41d0e2"  # a password that must never be shown


# ---- the pure checks, as tables ----

@pytest.mark.parametrize("n_trials, grid, timeout, expected", [
    (20, None, None, 20),
    (20, 6, None, 6),  # capped to the grid
    (None, 6, None, 6),  # the whole grid
    (None, None, 60, float("inf")),  # no limit but the timeout
    (4, 6, 60, 4),
])
def test_budget(n_trials: int | None, grid: int | None, timeout: float | None,
                expected: float) -> None:
    assert budget(n_trials, grid, timeout) == expected


def test_budget_without_limit_names_the_key() -> None:
    with pytest.raises(SweeperConfigError, match="hydra.sweeper.n_trials"):
        budget(None, None, None)


@pytest.mark.parametrize("value, expected", [
    ("minimize", ["minimize"]), ("MAXIMIZE", ["maximize"]),
    (["maximize", "minimize"], ["maximize", "minimize"]),
    ("maximise", None), ([], None), (["minimize", 3], None),
])
def test_directions(value: object, expected: list[str] | None) -> None:
    if expected is None:
        with pytest.raises(SweeperConfigError, match="hydra.sweeper.direction"):
            directions(value)
    else:
        assert directions(value) == expected


@pytest.mark.parametrize("names, n, expected", [
    (None, 1, None), ("val_accuracy", 1, ["val_accuracy"]), (["a", "b"], 2, ["a", "b"]),
    (["a"], 2, "error"), (["a", ""], 2, "error"),
])
def test_metric_names(names: object, n: int, expected: list[str] | str | None) -> None:
    dirs = ["maximize"] * n
    if expected == "error":
        with pytest.raises(SweeperConfigError, match="hydra.sweeper.metric_names"):
            metric_names(names, dirs)
    else:
        assert metric_names(names, dirs) == expected


@pytest.mark.parametrize("url, ok", [
    ("sqlite:////nonexistent/x/optuna.db", False),
    ("sqlite:///{tmp}/optuna.db", True),
    ("sqlite:///{tmp}/missing/optuna.db", False),
    ("sqlite:///:memory:", True),
    ("postgresql://u:p@127.0.0.1/optuna", True),  # a server's business, checked by contact
])
def test_sqlite_folder_must_exist(tmp_path: Path, url: str, ok: bool) -> None:
    url = url.format(tmp=tmp_path)
    if ok:
        sqlite_folder_exists(url, "hydra.sweeper.storage")
    else:
        with pytest.raises(SweeperConfigError, match=r"'hydra.sweeper.storage'.*does not exist"):
            sqlite_folder_exists(url, "hydra.sweeper.storage")
    assert not Path("/nonexistent").exists()


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


# ---- wrong addresses, each a real sweep command ----

def bad_addresses(pg: Postgres, auth: MlflowServer) -> dict[str, tuple[dict, list, list]]:
    """name -> (environment changes, overrides, what the one line must say)."""
    storage = "hydra.sweeper.storage="
    good = pg.url("optuna")
    return {
        "storage: refused port": (
            {}, [storage + good.replace(f":{pg.port}/", f":{free_port()}/")],
            ["Optuna storage", "127.0.0.1", "connection refused"]),
        "storage: unknown host": (
            {}, [storage + good.replace("127.0.0.1", "db.invalid")],
            ["Optuna storage", "unknown host db.invalid"]),
        "storage: wrong password": (
            {}, [storage + good.replace(pg.password, WRONG)],
            ["Optuna storage", "wrong user name or password"]),
        "storage: missing database": (
            {}, [storage + pg.url("nodb")], ["Optuna storage", 'database "nodb" does not exist']),
        "tracking: dead server": (
            {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}, [],
            ["MLflow tracking server", "connection refused"]),
        "tracking: unknown host": (
            {"MLFLOW_TRACKING_URI": "http://mlflow.invalid:5000"}, [],
            ["MLflow tracking server", "unknown host mlflow.invalid"]),
        "tracking: wrong password": (
            {"MLFLOW_TRACKING_URI": auth.url, "MLFLOW_TRACKING_USERNAME": AUTH_ADMIN,
             "MLFLOW_TRACKING_PASSWORD": WRONG}, [],
            ["MLflow tracking server", auth.url, "HTTP 401"]),
    }


@pytest.fixture(scope="module")
def bad_address_runs(postgres: Postgres, mlflow_auth_server: MlflowServer,
                     tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> dict:
    """Every bad address, one after another (timed): name -> (proc, tmp, seconds)."""
    done = {}
    for name, (changes, overrides, _) in bad_addresses(postgres, mlflow_auth_server).items():
        tmp = tmp_path_factory.mktemp("address")
        env = {**store_env(tmp, mlflow_template), **changes,
               "OPTUNA_MLFLOW_PATIENCE": "600"}  # the patience must not be what ends it
        started = time.monotonic()
        proc = sweep(tmp, env, "x=interval(-5,5)", "hydra.sweeper.n_trials=2", *overrides,
                     ok=False)
        done[name] = (proc, tmp, time.monotonic() - started)
    return done


@pytest.mark.parametrize("name", ["storage: refused port", "storage: unknown host",
                                  "storage: wrong password", "storage: missing database",
                                  "tracking: dead server", "tracking: unknown host",
                                  "tracking: wrong password"])
def test_a_wrong_address_ends_the_sweep_in_one_line(
    name: str, bad_address_runs: dict, postgres: Postgres, mlflow_auth_server: MlflowServer
) -> None:
    proc, tmp, seconds = bad_address_runs[name]
    out, err = proc.stdout, proc.stderr
    needles = bad_addresses(postgres, mlflow_auth_server)[name][2]
    lines = err.strip().splitlines()
    assert proc.returncode != 0, out[-2000:]
    assert len(lines) == 1, err[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    shown = out + err
    assert "Traceback" not in shown and "HYDRA_FULL_ERROR" not in shown
    assert WRONG not in shown and postgres.password not in shown
    assert not (tmp / "sweep").exists()  # nothing created: no folder, no study, no trial
    _, parents, children = runs(tmp)
    assert parents == [] and children == []
    print(f"{name}: {seconds:.1f} s: {lines[0]}")  # measured, not asserted (-s shows it)


# ---- a full disk ----

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
