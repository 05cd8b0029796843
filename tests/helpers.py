"""What several test modules share (not fixtures: those are in conftest.py): the checkout's
root, the app's composed config, running a sweep as a user does and reading back what it recorded,
TensorFlow's native log lines, a checkpoint's epoch count."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing import in_process
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import copied_store
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mnist_sweep import cli
from mnist_sweep.config import registry

ROOT = Path(__file__).resolve().parent.parent
# what TensorFlow's C++ side writes to stderr when it loads (absl's pre-init lines), not ours
TF_NATIVE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} )")


def compose_config(overrides=(), return_hydra_config=False):
    """The app's config as the CLI composes it (packaged configs, schemas, sweeps), quiet."""
    return registry.compose(["progress=false", *overrides], return_hydra_config)


# Small and quiet: a slice of MNIST, no model artifacts, one epoch unless a test says otherwise.
SMALL = ["data.limit_train=600", "data.val_size=1000", "train.epochs=1",
         "tracking.log_model=false", "tracking.log_plots=false"]
# the sweep's closing summary without the notebook's reference models: their training (once per
# data setting) is the point only of the tests that read the reference
NO_REFERENCE = "hydra.callbacks.sweep_summary.reference=false"


# a ready-made sweep's two workers as jobs of a launcher, tiny: what each job composes is the point
LAUNCHED = ["data.limit_train=300", "data.val_size=300", "train.epochs=1",
            "tracking.log_model=false", "tracking.log_plots=false",
            NO_REFERENCE, "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2", "hydra/sweeper/pruner=none"]  # 1 epoch: nothing to prune


def mnist_sweep(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`mnist-sweep ARGS` in `cwd` with exactly `env`, run to its end in this process (see
    `in_process`): what a user's command prints and returns, without its 8 s of imports."""
    return in_process.run(cli.main, [str(ROOT / "mnist_sweep" / "__main__.py"), *args], cwd, env)


def run_sweep(tmp_path: Path, *overrides: str, ok: bool = True, multirun_flag: bool = True,
              own_process: bool = False) -> subprocess.CompletedProcess:
    """`mnist-sweep [-m] OVERRIDES` in tmp_path, recording into a store of its own there; in this
    process unless `own_process`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    # Not the default ./mlflow.db: MLFLOW_TRACKING_URI must win for the trials and the sweeper.
    env["MLFLOW_TRACKING_URI"] = copied_store(tmp_path)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # the index of sweeps' studies (reports)
    args = [*(["-m"] if multirun_flag else []), *overrides]
    if own_process:
        proc = subprocess.run([sys.executable, "-m", "mnist_sweep", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
    else:
        proc = mnist_sweep(tmp_path, env, *args)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert not (tmp_path / "mlflow.db").exists()
    return proc


def assert_two_finished(tmp_path: Path, name: str) -> None:
    """Two trials of the sweep `name` complete, each with its finished run (LAUNCHED's budget)."""
    trials = load_study(tmp_path, name).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    _, parent, children = mlflow_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED"] * 2


def load_study(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=f"sqlite:///{tmp_path}/multirun/{name}/optuna.db"
    )


def mlflow_runs(tmp_path: Path, tracking_uri: str | None = None,
                experiment_name: str = "mnist-sweep") -> tuple[MlflowClient, Any, list[Any]]:
    """(client, the parent run, its child runs by trial number); the sweep's own SQLite store
    unless `tracking_uri` names another (a shared server: name the test's own experiment)."""
    client = MlflowClient(tracking_uri or f"sqlite:///{tmp_path}/store.db")
    experiment = client.get_experiment_by_name(experiment_name)
    every = client.search_runs([experiment.experiment_id], max_results=1000)
    [parent] = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in every if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, sorted(children, key=lambda r: int(r.data.tags["optuna.trial_number"]))


def epochs_saved(file: Path) -> int:
    try:
        with np.load(file, allow_pickle=False) as npz:
            return len(json.loads(str(npz["meta"]))["rows"])
    except (OSError, ValueError, KeyError):  # not there yet, or being replaced
        return 0


@dataclass(frozen=True)
class ServedSweep:
    """A finished quickstart sweep on the shared services, as users share them across machines."""

    folder: Path
    proc: subprocess.CompletedProcess
    study: str
    storage: str  # the study's PostgreSQL URL (the sweep read it, password and all, from the env)


# The tests that read it share one xdist worker, so the sweep runs once a session.
SERVED = pytest.mark.xdist_group("served_quickstart")
