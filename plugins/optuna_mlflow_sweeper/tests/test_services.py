"""The sweep's stores and servers: a wrong address ends a sweep at once, in one line; sweeps
sharing a real PostgreSQL study and a real MLflow server live through outages of each.

Each wrong address is a real sweep of the toy app (in this process, see `toyapp.sweep`) against
the real throwaway PostgreSQL and MLflow servers (servers.py): a refused port, a name under
`.invalid`, a wrong password (PostgreSQL, and a tracking server behind MLflow's basic-auth app),
a missing database, a dead tracking server.

For the outages, two sweep commands of the generic app (tests/apps/toy), three workers in all
(the first command runs two local worker processes), share the same study; one command names the
storage URL on its command line (with the password, as users do), the other reads it from
the environment (`${oc.env:OPTUNA_STORAGE}`). Mid-sweep one server is stopped for 2 s and
started again. Afterwards: the whole budget is COMPLETE, every trial has its child run with the
job's own metric, nothing is RUNNING, nothing is left in a spool, and neither the database
password nor the MLflow password appears in any file, MLflow record, database row or output.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from toyapp import runs, store_env, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper._impl.services import checked_db_url, sqlite_folder_exists
from hydra_plugins.optuna_mlflow_sweeper._testing.processes import started
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import (
    AUTH_ADMIN,
    MlflowServer,
    Postgres,
    free_port,
)
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import reader

APP = Path(__file__).parent / "apps" / "toy" / "app.py"
# Three workers with 1 s trials call both servers all the time: 2 s down (plus the server's
# own stop and start) are met by their calls, as the warnings in their logs show. A longer
# outage adds its length and the retries' growing pauses (0.5, 1, 2, 4, 8 s), nothing more.
OUTAGE_S = 2.0
MLFLOW_SECRET = "tok-" + "5e3c7a91b2d4"


def environment(pg: Postgres, server: MlflowServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "OPTUNA_", "HYDRA_"))}
    env.update({
        "MLFLOW_TRACKING_URI": server.url,
        "OPTUNA_STORAGE": pg.url("optuna"),
        # the server runs without auth and ignores them; they must still never be recorded
        "MLFLOW_TRACKING_USERNAME": "worker", "MLFLOW_TRACKING_PASSWORD": MLFLOW_SECRET,
        # MLflow's own retries give up within seconds: the sweeper's outbox has to cope
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "OPTUNA_MLFLOW_PATIENCE": "240",
    })
    return env


def sweep_commands(pg: Postgres, study: str, n_trials: int, heartbeat: int) -> list[list[str]]:
    storages = [f"hydra.sweeper.storage={pg.url('optuna')}",  # typed: must be masked
                "hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}"]
    return [[sys.executable, str(APP), "-m", "hydra/sweeper=optuna_mlflow",
             f"hydra.sweep.dir=sweep-{i}", storage, f"hydra.sweeper.study_name={study}",
             # three workers: two in the first command's processes, one in the second's
             f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.n_jobs={2 - i}",
             f"hydra.sweeper.heartbeat_interval={heartbeat}", "x=interval(-5,5)", "log_mlflow=true",
             "sleep=1.0",
             # the toy job logs with MLflow's fluent API: its own retries cover the outage
             "++hydra.job.env_set.MLFLOW_HTTP_REQUEST_MAX_RETRIES=8"]
            for i, storage in enumerate(storages)]


def finished(pg: Postgres, study: str) -> int:
    try:
        s = optuna.load_study(study_name=study, storage=reader(pg.url("optuna")))
    except Exception:
        return 0
    return sum(t.state.is_finished() for t in s.get_trials(deepcopy=False))


def worker_logs(tmp_path: Path) -> str:
    """The tail of each worker's log: what a failed worker said is only there."""
    return "".join(f"\n--- {log}\n" + log.read_text(errors="replace")[-4000:]
                   for log in sorted(tmp_path.glob("sweep-*/workers/*.log")))


def run_with_outage(tmp_path: Path, pg: Postgres, server: MlflowServer, study: str,
                    stop: Callable[[], None], start: Callable[[], None],
                    n_trials: int = 6, heartbeat: int = 60) -> list[str]:
    """Two sweep commands (three workers); once 2 trials are done, stop a server for OUTAGE_S;
    return their output."""
    env = environment(pg, server)
    with contextlib.ExitStack() as stack:  # each command's process group ended with the block
        procs = [stack.enter_context(started(command, tmp_path, env))
                 for command in sweep_commands(pg, study, n_trials, heartbeat)]
        deadline = time.monotonic() + 180
        while finished(pg, study) < 2:
            assert time.monotonic() < deadline, "no trial finished in 180 s"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.2)
        stop()
        time.sleep(OUTAGE_S)
        start()
        outputs = []
        for p in procs:
            out, err = p.communicate(timeout=420)
            assert p.returncode == 0, out[-3000:] + err[-6000:] + worker_logs(tmp_path)
            outputs += [out, err]
        return outputs


def check_records(tmp_path: Path, pg: Postgres, server: MlflowServer, study: str,
                  n_trials: int = 6) -> None:
    s = optuna.load_study(study_name=study, storage=pg.url("optuna"))
    states = [t.state for t in s.trials]
    assert states.count(TrialState.COMPLETE) == n_trials, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states

    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name(study)
    every = client.search_runs([experiment.experiment_id], max_results=1000)
    assert all(r.info.status != "RUNNING" for r in every), [
        (r.info.run_name, r.info.status) for r in every]
    parents = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {int(r.data.tags["optuna.trial_number"]): r for r in every
                if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    for trial in s.trials:
        if trial.state != TrialState.COMPLETE:
            continue
        run = children[trial.number]
        assert run.info.status == "FINISHED", (trial.number, run.info.status)
        assert run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.metrics["objective"] == pytest.approx(trial.value)
        assert run.data.metrics["f_from_job"] == pytest.approx(trial.value)
    assert parents[0].data.metrics["sweep/n_complete"] == n_trials
    assert not list(tmp_path.glob("sweep-*/.mlflow_outbox/outbox-*")), "undelivered writes"


def assert_no_secret(tmp_path: Path, pg: Postgres, server: MlflowServer, study: str,
                     outputs: list[str]) -> None:
    """Neither password anywhere: files, output, MLflow records and artifacts, both databases."""
    secrets = [pg.password, MLFLOW_SECRET]
    texts: dict[str, str] = {f"output {i}": text for i, text in enumerate(outputs)}
    for root in (tmp_path, server.artifacts):
        for path in root.rglob("*"):
            if path.is_file():
                texts[str(path)] = path.read_text(errors="replace")
    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name(study)
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        texts[f"run {run.info.run_name}"] = repr((run.data.params, run.data.tags,
                                                   run.data.metrics))
    texts["optuna database"] = pg.dump("optuna")
    texts["mlflow database"] = pg.dump("mlflow")
    assert any("multirun.yaml" in k for k in texts) and any("hydra.yaml" in k for k in texts)
    leaks = [where for where, text in texts.items() if any(s in text for s in secrets)]
    assert not leaks, leaks
    typed = (tmp_path / "sweep-0" / "multirun.yaml").read_text()
    assert "sweeper:***@127.0.0.1" in typed  # recorded, masked


@pytest.mark.slow
def test_mlflow_server_outage_loses_nothing_and_no_password_is_recorded(
    tmp_path: Path, postgres: Postgres, mlflow_server: MlflowServer
) -> None:
    outputs = run_with_outage(tmp_path, postgres, mlflow_server, "outage_mlflow",
                              mlflow_server.stop, mlflow_server.start, heartbeat=5)
    check_records(tmp_path, postgres, mlflow_server, "outage_mlflow")
    assert_no_secret(tmp_path, postgres, mlflow_server, "outage_mlflow", outputs)


@pytest.mark.slow
def test_postgres_outage_loses_nothing_and_no_password_is_recorded(
    tmp_path: Path, postgres: Postgres, mlflow_server: MlflowServer
) -> None:
    # an outage shorter than the heartbeat's grace period (2 x 60 s): no trial is failed as
    # stale; a longer one fails the running trials, which are then retried
    outputs = run_with_outage(tmp_path, postgres, mlflow_server, "outage_pg",
                              postgres.stop, postgres.start)
    check_records(tmp_path, postgres, mlflow_server, "outage_pg")
    assert_no_secret(tmp_path, postgres, mlflow_server, "outage_pg", outputs)


def test_a_missing_database_driver_is_named_in_one_line() -> None:
    with pytest.raises(SweeperConfigError) as error:
        checked_db_url("mysql://sweeper:hunter22@127.0.0.1:3306/optuna", "hydra.sweeper.storage")
    message = str(error.value)
    assert "\n" not in message and "hunter22" not in message
    assert message.startswith("invalid value 'mysql://sweeper:***@127.0.0.1:3306/optuna' for "
                              "'hydra.sweeper.storage'")
    assert "the MySQL driver is missing: pip install 'mysqlclient'" in message
    assert checked_db_url("postgresql://u:p@h/db", "k").startswith("postgresql+psycopg://")


def test_the_study_reader_stamps_nothing_a_sweep_is_still_making(tmp_path: Path) -> None:
    """The tests' poll (`_testing.stores.reader`) between a sweep's tables and its schema stamp:
    Optuna's storage would stamp the schema itself, even told to skip the tables, racing the
    sweep that makes them. It answers "not there yet" and writes nothing."""
    from optuna.storages._rdb import models

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    engine = sqlalchemy.create_engine(url)
    models.BaseModel.metadata.create_all(engine)  # the tables made, the stamp not yet
    with pytest.raises(KeyError):
        reader(url)
    assert "alembic_version" not in sqlalchemy.inspect(engine).get_table_names()
    engine.dispose()


WRONG = "wrong-" + "7c41d0e2"  # a password that must never be shown


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
