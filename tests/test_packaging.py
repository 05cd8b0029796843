"""Built wheels, installed in a fresh virtualenv, run the README's commands from an empty folder.

A checkout hides what a wheel lacks (configs read from the source tree, modules that only import
from the repository): this builds both wheels from this checkout, installs them the way a user
would (dependencies from the package index), and runs a small sweep and its report far from the
checkout.
"""

from __future__ import annotations

import os
import zipfile

import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing.wheels import (
    clean_env,
    fresh_venv,
    recorded_runs,
    run,
)

from tests.helpers import NO_REFERENCE


@pytest.mark.slow
def test_the_wheel_carries_its_configs_and_no_benchmarks(wheels):
    names = zipfile.ZipFile(wheels["mnist_sweep"]).namelist()
    assert "mnist_sweep/conf/config.yaml" in names
    assert "mnist_sweep/conf/model/cnn.yaml" in names
    assert "mnist_sweep/sweeps/quickstart.yaml" in names
    assert not [n for n in names if "bench" in n or n.startswith(("tests/", "benchmarks/"))]
    assert not [n for n in names if n.startswith("hydra_plugins/")]  # the plugin's own wheel


@pytest.mark.slow
def test_installed_wheels_run_a_sweep_and_its_report_from_an_empty_folder(
    wheels, tmp_path, mnist_cache
):
    venv = tmp_path / "venv"
    fresh_venv(venv, *wheels.values())

    empty = tmp_path / "empty"
    empty.mkdir()
    env = clean_env(XDG_STATE_HOME=str(tmp_path / "state"))
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    # the README's first command, made small; no MLFLOW_TRACKING_URI: the embedded default
    sweep = run(["mnist-sweep", "sweep=quickstart", "hydra.sweeper.n_trials=1",
                 "data.limit_train=300", "data.val_size=300", "train.epochs=1",
                 "tracking.log_plots=false", NO_REFERENCE],
                timeout=600, cwd=empty, env=env)
    assert "best trial" in sweep
    runs = [r for r in recorded_runs(venv / "bin" / "python", f"sqlite:///{empty}/mlflow.db")
            if r["experiment"] == "mnist-sweep"]
    assert sum("mlflow.parentRunId" in r["tags"] for r in runs) == 1
    assert all(r["status"] == "FINISHED" for r in runs)
    # the code that ran is the installed wheel, not this checkout
    [trial] = [r for r in runs if "mlflow.parentRunId" in r["tags"]]
    assert trial["tags"]["version.mnist-sweep"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = run(["mnist-sweep-report", "quickstart"], timeout=300, cwd=elsewhere, env=env)
    assert report.count("COMPLETE") == 1
    where = run([venv / "bin" / "python", "-c", "import mnist_sweep; print(mnist_sweep.__file__)"],
                timeout=60, cwd=elsewhere, env=env)
    assert str(venv) in where
