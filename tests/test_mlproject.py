"""`mlflow run` of the MLproject's entry points, in the current environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mlflow_run_of_the_sweep_entry_point_passes_overrides_through(tmp_path, mnist_cache):
    project = tmp_path / "project"  # a copy, so the sweep's files land outside the checkout
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".venv", ".git", "mlruns", "multirun", "outputs", "mlflow.db", "__pycache__"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env.update(MLFLOW_TRACKING_URI=uri,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    overrides = ("data.limit_train=500 train.epochs=1 hydra.sweeper.n_trials=2 "
                 "tracking.log_model=false tracking.log_plots=false "
                 "eval.noise_levels='[0.5]'")  # quoted as on a shell command line
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(project), "-e", "sweep", "--env-manager",
         "local", "--experiment-name", "mnist-sweep", "-P", "name=quickstart",
         "-P", f"overrides={overrides}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mnist-sweep")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`optuna.study_name` = 'quickstart'")
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 2
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.params["data.limit_train"] == "500"
        assert run.data.params["train.epochs"] == "1"
        assert "test_accuracy_noise_0.5" in run.data.metrics
        assert "test_accuracy_noise_1" not in run.data.metrics
