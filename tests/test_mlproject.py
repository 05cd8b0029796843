"""`mlflow run` of the MLproject's entry points, in the current environment.

Each runs on a copy of the project (so a stray file would show) from another folder, with the
Hydra folders sent to a temporary XDG_DATA_HOME.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mnist_sweep.tracking.keys import mlflow_key
from tests.helpers import NO_REFERENCE, ROOT


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if "__pycache__" not in p.parts}


def mlflow_run(tmp_path: Path, *args: str) -> tuple[Path, str, set[str]]:
    """(the project copy, the tracking URI, the files the run added to the copy)."""
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".venv", ".git", "mlruns", "multirun", "outputs", "mlflow.db", "__pycache__", "build",
        "*.egg-info", ".pytest_cache", ".ruff_cache"))
    before = files_under(project)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env.update(MLFLOW_TRACKING_URI=uri, XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_STATE_HOME=str(tmp_path / "state"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(project), "--env-manager", "local", *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return project, uri, files_under(project) - before


@pytest.mark.slow
def test_mlflow_run_of_main_records_in_the_mnist_sweep_experiment(tmp_path, mnist_cache):
    overrides = ("data.limit_train=500 data.val_size=300 tracking.log_model=false "
                 "tracking.log_plots=false eval.noise_levels='[0.5]'")
    _, uri, added = mlflow_run(tmp_path, "-e", "main", "-P", "epochs=1", "-P", "model=dense",
                               "-P", f"overrides={overrides}")
    assert added == set()  # nothing written into the project
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("mnist-sweep").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1"
    assert mlflow_key("test_accuracy_noise_0.5") in run.data.metrics
    # the run `mlflow run` opened in the Default experiment points at it
    [outer] = client.search_runs(["0"])
    assert outer.data.tags["mnist_sweep.run"].endswith(run.info.run_id)
    assert run.data.tags["mlflow_run.run_id"] == outer.info.run_id
    assert list((tmp_path / "data" / "mnist-sweep" / "outputs").iterdir())


@pytest.mark.slow
def test_mlflow_run_of_the_sweep_entry_point_passes_overrides_through(tmp_path, mnist_cache):
    overrides = ("data.limit_train=500 data.val_size=300 train.epochs=1 hydra.sweeper.n_trials=1 "
                 "tracking.log_model=false tracking.log_plots=false "
                 f"{NO_REFERENCE} eval.noise_levels='[0.5]'")  # quoted as on a shell command line
    _, uri, added = mlflow_run(tmp_path, "-e", "sweep", "--experiment-name", "mnist-sweep",
                               "-P", "name=quickstart", "-P", f"overrides={overrides}")
    assert added == set()
    assert (tmp_path / "data" / "mnist-sweep" / "multirun" / "quickstart" / "optuna.db").is_file()

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mnist-sweep")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`optuna.study_name` = 'quickstart'")
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 1
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.params["data.limit_train"] == "500"
        assert run.data.params["train.epochs"] == "1"
        assert mlflow_key("test_accuracy_noise_0.5") in run.data.metrics
        assert mlflow_key("test_accuracy_noise_1") not in run.data.metrics
