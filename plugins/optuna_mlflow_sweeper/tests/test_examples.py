"""The example apps in example/, run as a user would: `python example/X.py -m` in an empty folder,
recording to the default ./mlflow.db (no MLFLOW_TRACKING_URI): in this process (`in_process`),
and from the wheel in a fresh venv."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from hydra_plugins.optuna_mlflow_sweeper._testing import in_process
from hydra_plugins.optuna_mlflow_sweeper._testing.wheels import (
    clean_env,
    fresh_venv,
    recorded_runs,
    run,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "example"


def run_example(python: str | None, name: str, cwd: Path, *overrides: str,
                timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """`python example/<name>.py -m ...` in `cwd`, with no MLflow/Optuna/Hydra variables set: in
    this process (`in_process`) unless `python` names another interpreter (a venv's)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "OPTUNA_MLFLOW_", "HYDRA_", "PYTHON", "VIRTUAL_ENV"))}
    script = EXAMPLES / f"{name}.py"
    if python is None:
        proc = in_process.run(in_process.script_main(script), [str(script), "-m", *overrides],
                              cwd, env, EXAMPLES)
    else:
        proc = subprocess.run([python, str(script), "-m", *overrides], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def recorded(cwd: Path) -> tuple[dict, list, list]:
    """(optimization_results.yaml, parent runs, child runs) of the one sweep run in `cwd`."""
    [path] = cwd.glob("multirun/*/*/optimization_results.yaml")
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    ids = [e.experiment_id for e in client.search_experiments()]
    every = client.search_runs(ids, max_results=1000)
    parents = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    return yaml.safe_load(path.read_text()), parents, children


@pytest.mark.slow
def test_sphere_prunes_through_report(tmp_path: Path) -> None:
    proc = run_example(None, "sphere", tmp_path, "hydra.sweeper.n_trials=8")
    results, [parent], children = recorded(tmp_path)
    assert results["study_name"] == "sphere" and results["counts"]["pruned"] >= 1
    assert results["best_params"]["y"] in (-5, 0, 5)
    assert parent.info.status == "FINISHED" and len(children) == 8
    assert {c.info.status for c in children} == {"FINISHED", "KILLED"}  # KILLED: pruned
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[optuna_mlflow] trial ")]
    assert lines and all("x=" in ln and "y=" in ln for ln in lines)  # params, in any order
    assert f"best trial {results['best_trial']}: value=" in proc.stdout


@pytest.mark.slow
def test_multi_objective_gives_a_pareto_front(tmp_path: Path) -> None:
    run_example(None, "multi_objective", tmp_path, "hydra.sweeper.n_trials=4")
    results, [parent], children = recorded(tmp_path)
    assert results["solutions"] and "best_value" not in results
    assert parent.data.params["direction"] == "['minimize', 'minimize']"
    assert len(children) == 4


@pytest.mark.slow
def test_custom_search_space_adds_conditional_params(tmp_path: Path) -> None:
    run_example(None, "custom_search_space", tmp_path, "hydra.sweeper.n_trials=3")
    results, _, children = recorded(tmp_path)
    best = results["best_params"]
    assert abs(best["z"] - best["x"]) <= 0.5 and 0 <= best["+w"] <= 1
    assert "+w=" in " ".join(results["best_overrides"])
    assert len(children) == 3


@pytest.mark.slow
def test_the_wheel_ships_no_test_support(wheels: dict[str, Path]) -> None:
    """`_testing` (fixtures that import pytest) stays in the checkout, out of users' installs."""
    names = zipfile.ZipFile(wheels["optuna_mlflow_sweeper"]).namelist()
    assert "hydra_plugins/optuna_mlflow_sweeper/_impl/core.py" in names
    assert not [n for n in names if "/_testing/" in n or n.startswith("tests/")]


@pytest.mark.slow
def test_the_wheel_works_in_a_fresh_venv_without_tensorflow(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    """Install the wheel (and hydra-core, optuna, mlflow from the package index) into a new venv,
    and sweep an example there from an empty folder."""
    python = str(fresh_venv(tmp_path / "venv", wheels["optuna_mlflow_sweeper"]))
    where = run([python, "-c", "import hydra_plugins.optuna_mlflow_sweeper as m\n"
                 "print(m.__file__)\nimport importlib.util as u; print(u.find_spec('tensorflow'))"],
                timeout=120, env=clean_env())
    assert str(tmp_path / "venv") in where.splitlines()[0]  # the wheel's copy, not this checkout's
    assert where.splitlines()[1] == "None"  # no TensorFlow there

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_example(python, "sphere", empty, "hydra.sweeper.n_trials=4")
    [path] = empty.glob("multirun/*/*/optimization_results.yaml")
    results = yaml.safe_load(path.read_text())
    runs = recorded_runs(python, f"sqlite:///{empty}/mlflow.db")
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r["tags"]]
    assert parent["status"] == "FINISHED" and len(runs) == 1 + 4
    assert results["counts"]["complete"] + results["counts"]["pruned"] == 4
    assert "best trial" in proc.stdout
