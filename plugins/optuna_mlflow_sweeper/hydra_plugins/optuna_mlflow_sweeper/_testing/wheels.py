"""The checkout's wheels, built once per test session, and fresh virtualenvs to install them in.

Both test trees install a built wheel into an empty virtualenv (the app's wheels and the sweeper's
alone): one build serves them all, also across pytest-xdist's worker processes, which share
the session's temp root; a file lock makes the first worker build and the others wait for it.
Installs go through uv (the dev extra): the same resolution from the package index as pip, and
a dependency already in uv's cache is linked, not unpacked again (TensorFlow: 30 s instead of 80).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

PLUGIN = Path(__file__).resolve().parents[3]  # plugins/optuna_mlflow_sweeper
APP = PLUGIN.parents[1]  # the app's checkout, when the sweeper sits in it
BUILD_TIMEOUT_S = 300


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder all of this session's processes see: xdist workers' temp roots share a parent."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this venv's, MLflow's or Optuna's variables: a user's shell."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "OPTUNA_", "HYDRA_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, **extra}


def run(args: list[str | Path], timeout: float, **kwargs: object) -> str:
    """Run a command, fail the test with the end of its output if it fails; its stdout."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"optuna_mlflow_sweeper": wheel, "mnist_sweep": wheel (in the app's checkout)}."""
    out = shared_dir(tmp_path_factory) / "wheels"
    with FileLock(f"{out}.lock", timeout=2 * BUILD_TIMEOUT_S):
        if not (out / "done").exists():
            shutil.rmtree(out, ignore_errors=True)
            # setuptools builds in the source tree (build/, *.egg-info): a copy of the sweeper
            # keeps a build running in another checkout's process out of this one's way
            plugin = shutil.copytree(PLUGIN, out / "plugin-src", ignore=shutil.ignore_patterns(
                "build", "*.egg-info", "__pycache__", "tests"))
            sources = [plugin, *([APP] if (APP / "mnist_sweep").is_dir() else [])]
            run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "-q", "-w", out, *sources], timeout=BUILD_TIMEOUT_S)
            (out / "done").touch()
    return {w.name.split("-")[0]: w for w in sorted(out.glob("*.whl"))}


def fresh_venv(folder: Path, *wheels: Path) -> Path:
    """A new virtualenv in `folder` with `wheels` installed and their dependencies resolved from
    the package index; its python."""
    uv = Path(sys.executable).parent / "uv"
    run([uv, "venv", "-q", "--python", sys.executable, folder], timeout=120, env=clean_env())
    python = folder / "bin" / "python"
    run([uv, "pip", "install", "-q", "--python", python, *wheels], timeout=900, env=clean_env())
    return python


READ_RUNS = """
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1])
names = {e.experiment_id: e.name for e in client.search_experiments()}
runs = client.search_runs(list(names), max_results=1000) if names else []
print(json.dumps([{"experiment": names[r.info.experiment_id], "status": r.info.status,
                   "tags": r.data.tags} for r in runs]))
"""


def recorded_runs(python: Path, store_uri: str) -> list[dict[str, object]]:
    """The runs in `store_uri` ({experiment, status, tags}), read by `python`: the MLflow that
    wrote the store. It was resolved from the package index, and may be newer than this
    process's (whose MLflow then refuses the store's schema: 'out-of-date database')."""
    out = run([python, "-c", READ_RUNS, store_uri], timeout=120, env=clean_env())
    return json.loads(out.strip().splitlines()[-1])

