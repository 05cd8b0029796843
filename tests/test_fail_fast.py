"""The `mnist-sweep` command fails at once, in one line, on what waiting cannot fix.

A single run (no sweep) against a wrong tracking address (a dead server, a name under `.invalid`,
a wrong password for PostgreSQL or for MLflow's basic-auth app, a missing database) or a full disk
(a real 2 MiB tmpfs, root only); and a sweep whose objective is misspelled, named before its
study or parent run exist. Real servers (the sweeper's servers.py), real commands.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import AUTH_ADMIN, fill, free_port
from mlflow.tracking import MlflowClient

from tests.helpers import TF_NATIVE, mnist_sweep

WRONG = "wrong-" + "3b9e51aa"
RUN = ["data.limit_train=2000", "train.epochs=1", "tracking.log_model=false"]


def timed(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[Any, float]:
    started = time.monotonic()
    done = mnist_sweep(tmp_path, env, *args)
    return done, time.monotonic() - started


def environ(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYDRA_"))}
    return {**env, "OPTUNA_MLFLOW_PATIENCE": "600", **changes}


def assert_one_line(done: Any, *needles: str) -> str:
    lines = [line for line in done.stderr.strip().splitlines() if not TF_NATIVE.match(line)]
    assert done.returncode != 0, done.stdout[-2000:]
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("mnist-sweep: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    shown = done.stdout + done.stderr
    assert "Traceback" not in shown and "HYDRA_FULL_ERROR" not in shown and WRONG not in shown
    assert "Epoch 1/1" not in shown  # nothing trained
    return lines[0]


# Each case is a real command (3-4 s of imports before it fails): slow, but for the two that keep
# the quick tier's one-line errors covered (a dead server, a SQLite store's missing folder).
# The cases on a real server: in the servers' worker (the fixtures are asked for inside).
ON_A_SERVER = [pytest.mark.slow, pytest.mark.xdist_group("services")]


@pytest.mark.parametrize("case", ["dead server",
                                  pytest.param("unknown host", marks=pytest.mark.slow),
                                  *(pytest.param(case, marks=ON_A_SERVER) for case in (
                                      "wrong password (server)", "wrong password (database)",
                                      "missing database"))])
def test_a_wrong_tracking_address_ends_a_run_in_one_line(
    case: str, tmp_path: Path, request: pytest.FixtureRequest, mnist_cache: Path
) -> None:
    if case == "dead server":
        env, needles = environ(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}"), [
            "MLflow tracking server", "connection refused"]
    elif case == "unknown host":
        env, needles = environ(MLFLOW_TRACKING_URI="http://mlflow.invalid:5000"), [
            "MLflow tracking server", "unknown host mlflow.invalid"]
    elif case == "wrong password (server)":
        server = request.getfixturevalue("mlflow_auth_server")
        env = environ(MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_USERNAME=AUTH_ADMIN,
                      MLFLOW_TRACKING_PASSWORD=WRONG)
        needles = ["MLflow tracking server", "HTTP 401"]
    else:
        pg = request.getfixturevalue("postgres")
        if case == "missing database":
            uri, needles = pg.url("nodb"), ["MLflow tracking store", '"nodb" does not exist']
        else:
            uri = pg.url("mlflow").replace(pg.password, WRONG)
            needles = ["MLflow tracking store", "wrong user name or password"]
        env = environ(MLFLOW_TRACKING_URI=uri)
    done, seconds = timed(tmp_path, env, *RUN)
    line = assert_one_line(done, *needles)
    print(f"{case}: {seconds:.1f} s: {line}")


def test_a_sqlite_store_in_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    done, _ = timed(tmp_path, environ(
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/nowhere/mlflow.db"), *RUN)
    assert done.returncode == 2
    assert_one_line(done, "'MLFLOW_TRACKING_URI'", f"{tmp_path}/nowhere does not exist")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_a_full_disk_ends_a_run_in_one_line(tmp_path: Path, full_disk: Path,
                                            mnist_cache: Path) -> None:
    store = full_disk / "mlflow.db"
    client = MlflowClient(f"sqlite:///{store}")
    before = client.create_run(client.create_experiment("before")).info.run_id
    fill(full_disk)
    done, seconds = timed(tmp_path, environ(MLFLOW_TRACKING_URI=f"sqlite:///{store}"),
                                *RUN)
    assert_one_line(done, f"cannot write the MLflow store at {store}: database or disk is full")
    assert client.get_run(before).info.status == "RUNNING"  # what was recorded is still there
    print(f"full disk: {seconds:.1f} s")


@pytest.mark.slow
def test_a_misspelled_objective_stops_the_sweep_before_anything_exists(
    tmp_path: Path, mnist_cache: Path
) -> None:
    env = environ(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    done, _ = timed(tmp_path, env, "sweep=quickstart", "objectives=[val_acc]")
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1 and "'objectives'" in lines[0] and "val_accuracy" in lines[0], \
        done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no parent run, no experiment
    assert not list(tmp_path.glob("multirun/**/optuna.db"))  # no study


@pytest.mark.slow
@pytest.mark.parametrize(("disk", "cause", "sweep"), [
    ("read_only_disk", "read-only file system", False),
    ("read_only_disk", "read-only file system", True),
    ("full_disk", "no space left", False),
])
def test_a_checkpoint_folder_that_cannot_be_written_is_named_before_anything_trains(
    tmp_path: Path, request: pytest.FixtureRequest, mnist_cache: Path, disk: str, cause: str,
    sweep: bool
) -> None:
    """A read-only mount (root writes through chmod, not through that) or a full disk under
    `train.checkpoint.dir`: one line naming the key, exit 2, no run recorded, no study."""
    folder = request.getfixturevalue(disk)
    if disk == "full_disk":
        fill(folder)
    args = [*RUN, "train.checkpoint.enabled=true", f"train.checkpoint.dir={folder}/ckpt"]
    if sweep:
        args = ["-m", "hydra/sweeper=mnist", "hydra.sweeper.n_trials=1",
                "train.optimizer=choice(adam)", *args]
    done, _ = timed(tmp_path, environ(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/s.db"),
                          *args)
    assert done.returncode == 2
    assert_one_line(done, "'train.checkpoint.dir'", cause)
    assert not (tmp_path / "s.db").exists() and not list(tmp_path.rglob("optuna.db"))


@pytest.mark.slow
def test_a_checkpoint_folder_whose_disk_fills_while_training_is_named(
    tmp_path: Path, full_disk: Path, mnist_cache: Path
) -> None:
    """Room when the run starts (2 MiB), not for the first checkpoint (a 512-unit dense net and
    its Adam moments, ~5 MB): the line names the checkpoint folder, not the MLflow store."""
    MlflowClient(f"sqlite:///{tmp_path}/s.db").search_experiments()  # made: quiet on first use
    done, _ = timed(
        tmp_path, environ(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/s.db"),
        "data.limit_train=300", "data.val_size=100", "train.epochs=2", "tracking.log_model=false",
        "model.hidden.0.units=512", "train.checkpoint.enabled=true",
        f"train.checkpoint.dir={full_disk}/ckpt")
    assert done.returncode == 1
    line = assert_one_line(done, f"cannot write the checkpoint folder at {full_disk}/ckpt/run-",
                           "no space left on device")
    assert "MLflow" not in line


@pytest.mark.slow
@pytest.mark.parametrize("search", [
    "train.learning_rate=tag(log,interval(0.001,50))",  # the sampled trial's rate is fine
    "hydra.sweeper.params={train.learning_rate:'interval(0.001,50)'}",
])
def test_a_search_range_partly_outside_the_apps_limits_is_refused_before_anything_exists(
    tmp_path: Path, search: str
) -> None:
    env = environ(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    done, _ = timed(tmp_path, env, "sweep=quickstart", search, "hydra.sweeper.n_trials=1",
                          *RUN)
    line = assert_one_line(done, "'train.learning_rate", "a float in (0, 10)")
    assert "interval(0.001,50)" in line and "at train.learning_rate=50.0" in line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()
