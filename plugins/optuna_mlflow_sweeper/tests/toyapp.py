"""The generic toy app (apps/toy) run as a real sweep: commands, and reading back what it left.

Shared by the sweeper's tests; `conftest.py` holds the fixtures (a fresh MLflow store per test).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hydra_plugins.optuna_mlflow_sweeper._testing import in_process
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import reader

APP = Path(__file__).parent / "apps" / "toy" / "app.py"
XY = ["x=interval(-5,5)", "+hydra.sweeper.params.y='interval(-5,5)'"]
# For a test of what happens in Optuna alone (workers, resuming, launchers, GPUs, warm starts):
# MLflow's part of a command (its import, the store, the parent run, the report drawn by a helper
# process) is ~4 s of CPU the test would not read. The tests of the MLflow side keep it on.
NO_MLFLOW = "hydra.sweeper.mlflow.enabled=false"


def store_env(tmp_path: Path, template: Path) -> dict[str, str]:
    """This environment without MLflow/Optuna/Hydra settings, recording into a fresh copy of
    the template MLflow store in `tmp_path`."""
    shutil.copy(template, tmp_path / "mlflow.db")
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("MLFLOW_", "OPTUNA_MLFLOW_", "HYDRA_"))}
    environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"
    return environ


def command(*overrides: str, sweep_dir: str = "sweep", config: str | None = None) -> list[str]:
    """The app in multirun mode; with `config`, that config file selects the sweeper itself."""
    select = [f"--config-name={config}"] if config else ["hydra/sweeper=optuna_mlflow"]
    return [sys.executable, str(APP), "-m", *select, f"hydra.sweep.dir={sweep_dir}", *overrides]


def sweep(tmp_path: Path, env: dict[str, str], *overrides: str, ok: bool = True,
          sweep_dir: str = "sweep", config: str | None = None, own_process: bool = False
          ) -> subprocess.CompletedProcess[str]:
    """The command run to its end in `tmp_path` with exactly `env`: in this process (see
    `in_process`), or with `own_process` a process of its own (a Ray driver, say)."""
    args = command(*overrides, sweep_dir=sweep_dir, config=config)
    if own_process:
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=240)
    else:
        proc = in_process.run(in_process.script_main(APP), args[1:], tmp_path, env, APP.parent)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def study(tmp_path: Path, name: str = "app", sweep_dir: str = "sweep") -> optuna.Study:
    return optuna.load_study(study_name=name,
                             storage=f"sqlite:///{tmp_path / sweep_dir / 'optuna.db'}")


def peek(tmp_path: Path, name: str = "app", sweep_dir: str = "sweep") -> list[Any]:
    """The trials of a sweep in progress, read only ([] before its study exists): a reader that
    opened the database writable would create the tables, racing the sweep that creates them."""
    path = tmp_path / sweep_dir / "optuna.db"
    if not path.exists():
        return []
    try:
        storage = reader(f"sqlite:///file:{path}?mode=ro&uri=true", path)
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    except Exception:  # the tables or the study are not there yet
        return []


def runs(tmp_path: Path) -> tuple[MlflowClient, list[Any], list[Any]]:
    """(client, parent runs, child runs) across all experiments."""
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    ids = [e.experiment_id for e in client.search_experiments()]
    every = client.search_runs(ids, max_results=1000) if ids else []
    parents = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    return client, parents, sorted(children, key=lambda r: int(r.data.tags["optuna.trial_number"]))


def by_number(children: list[Any]) -> dict[int, Any]:
    return {int(r.data.tags["optuna.trial_number"]): r for r in children}


# ---- sweeps as processes of their own: started, watched, signalled, ended ----

SLOW_FAST = "sleep=choice(0.3,2.5)"  # trials of different lengths


def start(tmp_path: Path, env: dict[str, str], *overrides: str) -> subprocess.Popen[str]:
    """A sweep in its own process group (a terminal's Ctrl-C reaches the whole group)."""
    return subprocess.Popen(command(*overrides), cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def wait_for(condition, timeout: float = 120, what: str | Callable[[], str] = "condition",
             proc: subprocess.Popen[str] | None = None) -> None:
    """Until `condition()`; fails after `timeout`, or at once when `proc` ended (its output
    says why). `what` may be a function: its text, made when the wait fails, says what was
    found then."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = proc is not None and proc.poll() is not None
        if ended or time.monotonic() > deadline:
            output = ""
            if proc is not None:
                code, out, err = finish(proc, timeout=30)
                output = f" (exit {code}):\n{out[-2000:]}\n{err[-3000:]}"
            raise AssertionError(f"{'gave up' if ended else f'timed out after {timeout} s'} "
                                 f"waiting for {what() if callable(what) else what}{output}")
        time.sleep(0.2)


def running_trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    """Trials running their job (their MLflow child run made, or the toy app's pid recorded)."""
    return [t for t in peek(tmp_path) if t.state == TrialState.RUNNING
            and ("mlflow_run_id" in t.user_attrs or "pid" in t.user_attrs)]


def params_of(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in trials]


def budget_held_by_running(tmp_path: Path, n_trials: int) -> bool:
    """Every trial of the budget asked, some still running (their jobs started)."""
    trials = peek(tmp_path)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    running = running_trials(tmp_path)
    return bool(running) and len(complete) + len(running) == n_trials


def alive_in_group(pgid: int) -> list[str]:
    """The processes of a group that still run (zombies, already dead, not counted)."""
    ps = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(pgid)],
                        capture_output=True, text=True, timeout=30).stdout
    return [line for line in ps.splitlines() if line.split()[1:2] != ["Z"]]


def finished_study(directions: list[str], complete: int = 4) -> optuna.Study:
    """An in-memory study of `complete` finished trials over (x, y), one pruned, one failed."""
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(0))
    for _ in range(complete):
        trial = study.ask()
        x, y = trial.suggest_float("x", -5, 5), trial.suggest_int("y", 0, 3)
        study.tell(trial, (x * x + y) if len(directions) == 1 else (x * x, y))
    pruned = study.ask({"x": optuna.distributions.FloatDistribution(-5, 5)})
    if len(directions) == 1:  # Optuna cannot prune multi-objective trials
        pruned.report(30.0, 0)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    return study
