"""The command line explains itself: `--help`, `--version`, and config errors as one line.

Real `mnist-sweep` commands, run in this process as `helpers.mnist_sweep` does (each fails or
answers before any training).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import copied_store

from mnist_sweep.config.registry import sweep_names
from tests.helpers import mnist_sweep


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYDRA_"))}
    env.update(MLFLOW_TRACKING_URI=copied_store(tmp_path),
               XDG_STATE_HOME=str(tmp_path / "state"), TF_CPP_MIN_LOG_LEVEL="3")
    return mnist_sweep(tmp_path, env, *args)


def test_help_says_what_the_app_does_and_where_results_are(tmp_path):
    proc = cli(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    lines = text.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 100
    assert text.startswith("mnist-sweep: hyperparameter sweeps of Keras MNIST classifiers")
    for name in sweep_names():  # every ready-made sweep, with its line
        [line] = [line for line in lines if line.startswith(f"  {name} ")]
        assert len(line.split()) > 3, line
    assert "  model      cnn, dense" in text
    assert "schema" not in text  # the typed schemas are no option to pick
    for words in ("hydra.sweeper.n_jobs=N", "mnist-sweep-report <study>",
                  "models:/<study>@champion", "multirun/<study>/", "docs/reference.md"):
        assert words in text
    # the whole config stays behind --cfg job; the flags listed are this app's, not Hydra's text
    assert "epochs: 5" not in text and "--cfg job" in text
    assert "Hydra's version" not in text
    for flag in ("--cfg job", "--multirun", "--config-dir", "--info", "--version", "--hydra-help"):
        assert any(line.lstrip().startswith(flag) or f", {flag}" in line for line in lines), flag


def test_version_names_our_packages(tmp_path):
    proc = cli(tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("mnist-sweep 0.")
    named = {line.split()[0] for line in lines[1:]}
    assert {"tensorflow", "keras", "optuna", "mlflow", "hydra-core"} <= named
    assert "Hydra 1.3" not in proc.stdout


def slow(*case):
    """A case beside the quick tier's one (each is a 2 s command)."""
    return pytest.param(*case, marks=pytest.mark.slow)


@pytest.mark.parametrize(("args", "says"), [
    (["+train.epoch=3"], "unknown key 'train.epoch' (did you mean 'train.epochs'?)"),
    slow(["train.epoch=3"], "unknown key 'train.epoch' (did you mean 'train.epochs'?)"),
    slow(["sweep=quikstart"], "no option 'quikstart' in config group 'sweep' "
                              "(did you mean 'sweep=quickstart'?)"),
    slow(["hydra.sweeper.search_space={x:1}"], "its replacement is hydra.sweeper.params"),
    slow(["sweep=quickstart", "hydra.sweeper.search_space.x=1"],
         "its replacement is hydra.sweeper.params"),
    slow(["sweep=quickstart", "hydra.sweeper.n_trials=-1"],
         "invalid value -1 for 'hydra.sweeper.n_trials'"),
    slow(["train.epochs=abc"], "Value 'abc' of type 'str' could not be converted to Integer"),
])
def test_a_config_error_is_one_line(tmp_path, args, says):
    proc = cli(tmp_path, *args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mnist-sweep: error: ") and says in lines[0]
    assert "HYDRA_FULL_ERROR" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    trace = tmp_path / "state" / "mnist-sweep" / "last_error.log"
    if trace.exists():  # Hydra's errors: the whole trace kept, and named on the line
        assert str(trace) in lines[0] and "Traceback" in trace.read_text()


@pytest.mark.parametrize("mode", [[], slow(["-m"])], ids=["run", "multirun"])
def test_a_rejected_value_creates_no_folder(tmp_path, mode):
    """The config's checks run before Hydra creates the run's folder: a folder stays as it was
    (the user's MLflow store; the user's state gets the error's trace), a single run's as a
    sweep's."""
    proc = cli(tmp_path, *mode, "train.batch_size=-1")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "invalid value -1 for 'train.batch_size': allowed a positive int" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "store.db"]
