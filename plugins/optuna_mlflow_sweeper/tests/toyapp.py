"""The generic toy app (apps/toy) run as a real sweep: commands, and reading back what it left.

Shared by the sweeper's tests; `conftest.py` holds the fixtures (a fresh MLflow store per test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient

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
