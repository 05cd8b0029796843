"""New SQLite stores: an MLflow store made once under the project's lock by real processes, from
the blank copy in the user's cache once there is one, and a store MLflow cannot make named in one
line; a new Optuna storage from its own blank."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from hydra_plugins.optuna_mlflow_sweeper._impl.blank_stores import (
    cache_dir,
    create_store,
    from_blank,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import LocalFault
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import open_storage

CREATE = """
import sys
from hydra_plugins.optuna_mlflow_sweeper._impl.runs import MlflowTracker
print(MlflowTracker(sys.argv[1], "race").experiment_id)
"""


@pytest.mark.slow
def test_processes_creating_a_new_store_at_once_create_it_once(tmp_path: Path) -> None:
    """Two pairs of real processes, each pair opening the sweep's tracker on a new SQLite
    store: MLflow's migrations run once, under the project's lock, wherever a tracker is made
    (before, only open_parent_run took it, the app's runs none; unlocked, every pair failed:
    'table ... already exists')."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # MLflow's migrations
    procs = [subprocess.Popen([sys.executable, "-c", CREATE, f"sqlite:///{tmp_path}/{i}.db"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in (0, 0, 1, 1)]
    done = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in done]
    assert [out.strip().splitlines()[-1] for out, _ in done] == ["1"] * 4


@pytest.mark.slow
def test_a_store_mlflow_cannot_create_is_named_in_one_line(tmp_path: Path) -> None:
    """A SQLite file MLflow's migrations cannot bring up to date (a revision it does not know);
    slow: the sweeper tries MLflow's creation again for some seconds before it gives up."""
    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('f00dfeed0000')")
    uri = f"sqlite:///{path}"
    with pytest.raises(LocalFault) as error:
        create_store(uri)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"cannot create the MLflow store {uri}: ")


def test_a_new_store_after_the_first_is_a_copy_of_the_blank_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first store runs MLflow's migrations and leaves a blank copy in the cache; the next,
    in another folder, is that copy: its Default experiment where it is (made by MLflow as it
    opens it), its first experiment numbered 1, its runs as any store's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = tmp_path / "first", tmp_path / "second"
    migrated = []
    for folder in (first, second):
        folder.mkdir()
        monkeypatch.chdir(folder)  # MLflow's default artifact root: ./mlruns
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="mlflow"):
            create_store(f"sqlite:///{folder}/mlflow.db")
        migrated.append("Creating initial MLflow database tables" in caplog.text)
        [blank] = cache_dir().glob("mlflow-*.db")  # kept by the first, copied by the second
        with sqlite3.connect(blank) as db:
            assert db.execute("SELECT count(*) FROM experiments").fetchone() == (0,)
    assert migrated == [True, False]
    client = MlflowClient(f"sqlite:///{second}/mlflow.db")
    [default] = client.search_experiments()
    assert default.artifact_location == str(second / "mlruns" / "0")
    assert client.create_experiment("sweep") == "1"
    run = client.create_run("1")
    client.log_metric(run.info.run_id, "objective", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"objective": 0.5}
    assert not list(second.glob("*.part"))
    # the user's umask, as for the store MLflow made
    assert (second / "mlflow.db").stat().st_mode == (first / "mlflow.db").stat().st_mode


def test_a_blank_store_mlflow_cannot_open_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blank that is not a store (a cache written by something else): MLflow makes the store."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from mlflow.version import VERSION

    cache_dir().mkdir(parents=True)
    (cache_dir() / f"mlflow-{VERSION}.db").write_bytes(b"not a database")
    create_store(f"sqlite:///{tmp_path}/mlflow.db")
    assert MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").search_experiments()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask/tell, as a sweep
def test_a_new_optuna_storage_after_the_first_is_a_copy_of_optunas_blank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first new storage is made by Optuna and kept, before any study, as the blank; the
    next is a copy that Optuna opens as its own: studies, trials and heartbeats as in any."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    copied = []
    for name in ("first", "second"):
        path = str(tmp_path / f"{name}.db")
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="hydra_plugins.optuna_mlflow_sweeper"):
            storage = from_blank(path, f"optuna-{optuna.__version__}",
                                 lambda path=path: open_storage(f"sqlite:///{path}", 60))
        copied.append(f"new store {path}: a copy of" in caplog.text)
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        trial = study.ask()
        storage.record_heartbeat(trial._trial_id)
        study.tell(trial, trial.suggest_float("x", 0, 1))
        assert optuna.get_all_study_names(storage) == [name]
        assert study.best_value == study.best_trial.params["x"]
    assert copied == [False, True]
    [blank] = cache_dir().glob("optuna-*.db")
    with sqlite3.connect(blank) as db:  # kept before the first study
        assert db.execute("SELECT count(*) FROM studies").fetchone() == (0,)
