"""Preemption on real commands: a CNN trial killed (SIGKILL), stopped (SIGTERM) or preempted
(a submitit job's signal) mid-training resumes from its last checkpoint when run again, and ends
as the uninterrupted trial of the same seed does.

Every run is a real `mnist-sweep` command, SQLite stores in tmp_path: a subprocess in its own
process group where it is signalled, in this process where it runs to its end (the reruns); the
uninterrupted trial is run once, for the whole module. The SIGKILLed sweep runs again from
another folder, as on another machine: the study says where the trial's checkpoint is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing.processes import finish, started
from hydra_plugins.optuna_mlflow_sweeper._testing.stores import copied_store
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mnist_sweep.model import checkpoint_store
from mnist_sweep.tracking.keys import mlflow_key
from tests.helpers import TF_NATIVE, epochs_saved, mnist_sweep

pytestmark = pytest.mark.slow

# small: an epoch of 1,200 digits is still a second or more long, enough to signal a process in
# it; the test digits scored clean and at the one noise level the resumed run is compared on
TRAIN = ["model=cnn", "data.limit_train=1200", "data.val_size=300", "train.epochs=4",
         "train.seed=3", "train.learning_rate=0.003", "eval.noise_levels=[0.5]",
         "tracking.log_model=false", "tracking.log_plots=false"]
# a one-trial sweep of that training, checkpointed after each epoch
SWEEP = ["-m", "hydra/sweeper=mnist", "hydra.sweeper.study_name=resume",
         "hydra.sweep.dir=multirun/resume", "hydra.sweeper.n_trials=1",
         "hydra.sweeper.direction=maximize", "train.optimizer=choice(adam)",
         "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2",
         "hydra.callbacks.sweep_summary.reference=false", *TRAIN]
EPOCHS = list(range(1, 5))
STOPPED_AFTER = 2  # epochs saved when the trial is killed or stopped
# Tolerance: a resumed trial trains the same batches from the same state (measured: identical
# to the last digit); 1e-4 lets one test digit in 10,000 differ.
TOLERANCE = 1e-4
FINAL = ("val_accuracy", "test_accuracy", "test_accuracy_noise_0.5")


def environ(folder: Path, stores: Path | None = None) -> dict[str, str]:
    """A command's environment in `folder`, recording into the MLflow store in `stores`
    (default: `folder`; a copy of the migrated template)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_"))}
    env.update(MLFLOW_TRACKING_URI=copied_store(stores or folder), TF_CPP_MIN_LOG_LEVEL="3",
               XDG_STATE_HOME=str(folder / "state"))
    folder.mkdir(exist_ok=True)
    return env


def start(folder: Path, *args: str, stores: Path | None = None
          ) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """The command in its own process group (ended with the block), run in `folder`."""
    return started([sys.executable, "-m", "mnist_sweep", *args], folder, environ(folder, stores))


def run_to_end(folder: Path, *args: str, stores: Path | None = None) -> None:
    """The command, to its end (exit status 0), in this process: nothing signals it."""
    done = mnist_sweep(folder, environ(folder, stores), *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def said(err: str) -> list[str]:
    """What the command wrote to stderr, but TensorFlow's lines as it loads."""
    return [line for line in err.splitlines() if line.strip() and not TF_NATIVE.match(line)]


def wait_for_epochs(proc: subprocess.Popen[str], file: Path, epochs: int) -> None:
    deadline = time.monotonic() + 900
    while epochs_saved(file) < epochs:
        assert proc.poll() is None, f"ended before {epochs} epochs were saved"
        assert time.monotonic() < deadline, f"no checkpoint of epoch {epochs} in 900 s"
        time.sleep(0.05)


def trials(folder: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="resume",
                             storage=f"sqlite:///{folder}/multirun/resume/optuna.db").trials


def state_file(folder: Path, trial: int = 0) -> Path:
    return folder / f"multirun/resume/checkpoints/resume/trial-{trial}" / checkpoint_store.FILE


def assert_whole_history(client: MlflowClient, run_id: str) -> None:
    """MLflow's per-epoch curves of a resumed run: steps 1..4, each once."""
    for key in ("val_accuracy", "loss", "epoch_time_s"):
        steps = [m.step for m in client.get_metric_history(run_id, mlflow_key(key, per_epoch=True))]
        assert sorted(steps) == EPOCHS, key


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> optuna.trial.FrozenTrial:
    """The uninterrupted trial: what every resumed one must end as."""
    folder = tmp_path_factory.mktemp("whole")
    run_to_end(folder, *SWEEP)
    [trial] = trials(folder)
    assert sorted(trial.intermediate_values) == EPOCHS
    assert not list((folder / "multirun/resume/checkpoints").rglob("*.npz"))  # removed at the end
    return trial


@pytest.mark.parametrize("stop", ["sigkill", "sigterm"])
def test_a_stopped_trial_resumes_from_its_checkpoint_when_the_sweep_runs_again(
    tmp_path: Path, whole: optuna.trial.FrozenTrial, stop: str
) -> None:
    state = state_file(tmp_path)
    with start(tmp_path, *SWEEP) as proc:
        if stop == "sigkill":  # after the second epoch's checkpoint: the third epoch is lost
            wait_for_epochs(proc, state, STOPPED_AFTER)
            seen = epochs_saved(state)  # a loaded machine may see the file an epoch late
            os.killpg(proc.pid, signal.SIGKILL)
            finish(proc, expect=-signal.SIGKILL)
        else:  # during the second epoch, to the main process only, as a scheduler sends it
            wait_for_epochs(proc, state, STOPPED_AFTER - 1)
            seen = epochs_saved(state)
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            _, err = finish(proc, expect=143)
            print(f"SIGTERM to exit: {time.monotonic() - sent:.1f} s")  # the README's figure
            lines = said(err)
            assert len(lines) == 1 and "stopped (SIGTERM)" in lines[0], err[-3000:]
    # SIGKILL: the epochs saved stay, the one in progress is lost; SIGTERM: the one in progress
    # is finished, and no other (none more when the signal came during an epoch's end)
    saved = epochs_saved(state)
    assert saved == seen if stop == "sigkill" else saved in (seen, seen + 1)

    if stop == "sigkill":
        time.sleep(2.5)  # the killed trial's heartbeat goes stale: the rerun fails and retries it
        # from another folder, as on another machine, on the same stores: the checkpoint is
        # found through the study, in the first run's sweep folder
        run_to_end(tmp_path / "elsewhere", *SWEEP, "hydra.sweeper.storage=sqlite:///"
                   f"{tmp_path}/multirun/resume/optuna.db", stores=tmp_path)
    else:
        run_to_end(tmp_path, *SWEEP)
    first, retried = trials(tmp_path)
    assert first.state == TrialState.FAIL and retried.state == TrialState.COMPLETE
    assert sorted(first.intermediate_values) == EPOCHS[:saved]
    assert retried.system_attrs["failed_trial"] == 0 and retried.params == first.params
    assert sorted(retried.intermediate_values) == EPOCHS  # 1-2 replayed, each once
    assert retried.intermediate_values == pytest.approx(whole.intermediate_values, abs=TOLERANCE)
    assert not state.parent.exists()  # finished: its checkpoint is gone

    client = MlflowClient(f"sqlite:///{tmp_path}/store.db")
    run = client.get_run(retried.user_attrs["mlflow_run_id"])
    assert run.data.tags["resumed_from_epoch"] == str(saved)
    assert run.data.tags["optuna.retry_of"] == "0"
    assert_whole_history(client, run.info.run_id)
    assert run.data.metrics[mlflow_key("epochs_run")] == len(EPOCHS)
    for key in FINAL:
        assert retried.user_attrs[key] == pytest.approx(whole.user_attrs[key], abs=TOLERANCE), key
    if stop == "sigterm":
        stopped = client.get_run(first.user_attrs["mlflow_run_id"])
        assert stopped.info.status == "KILLED"


def test_a_single_run_stopped_by_sigterm_checkpoints_and_the_same_command_resumes_it(
    tmp_path: Path, whole: optuna.trial.FrozenTrial
) -> None:
    command = [*TRAIN, "train.checkpoint.enabled=true", f"train.checkpoint.dir={tmp_path}/ckpt"]
    with start(tmp_path, *command) as proc:
        file = None
        deadline = time.monotonic() + 900
        while file is None or epochs_saved(file) < STOPPED_AFTER - 1:  # in the second epoch
            assert proc.poll() is None and time.monotonic() < deadline
            file = next((tmp_path / "ckpt").glob(f"run-*/{checkpoint_store.FILE}"), None)
            time.sleep(0.05)
        seen = epochs_saved(file)  # a loaded machine may see the first epoch's file late
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc, expect=143)
    lines = said(err)
    assert len(lines) == 1, err[-3000:]
    # the epoch in progress is finished, and no other: the one after those saved when the signal
    # was sent, or none when it came while an epoch's end (its checkpoint just written) still ran
    saved = epochs_saved(file)
    assert saved in (seen, seen + 1)
    assert f"epochs 1-{saved} saved in {file.parent}" in lines[0]

    run_to_end(tmp_path, *command)
    assert not file.parent.exists()
    client = MlflowClient(f"sqlite:///{tmp_path}/store.db")
    stopped, resumed = sorted(client.search_runs([client.get_experiment_by_name(
        "mnist-sweep").experiment_id]), key=lambda r: r.info.start_time)
    assert stopped.info.status == "KILLED" and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from_epoch"] == str(saved)
    assert_whole_history(client, resumed.info.run_id)
    for key in FINAL:  # the same training as the sweep's trial
        logged = resumed.data.metrics[mlflow_key(key, per_epoch=True)]
        assert logged == pytest.approx(whole.user_attrs[key], abs=TOLERANCE)


def job_processes(group: int) -> list[int]:
    """The pids of a sweep's submitit jobs (the processes that run its workers)."""
    ps = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(group)], capture_output=True,
                        text=True, timeout=30).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if "submitit.core._submit" in line]


def test_a_preempted_submitit_worker_is_requeued_and_its_trial_resumes(tmp_path: Path) -> None:
    """Two workers as `submitit_local` jobs; each is sent submitit's preemption signal (USR2, as
    SLURM sends it before a preemption) mid-trial: its trial finishes the epoch and is recorded
    to run again, submitit requeues the job, and the retry resumes from the checkpoint."""
    sweep = [a for a in SWEEP if not a.startswith(("hydra.sweeper.n_trials", "data.limit_train"))]
    with start(tmp_path, *sweep, "data.limit_train=1000",
               "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
               "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=30") as proc:
        folder = state_file(tmp_path).parent.parent
        deadline = time.monotonic() + 900
        saved: dict[str, int] = {}
        while not any(epochs >= 2 for epochs in saved.values()):
            assert proc.poll() is None and time.monotonic() < deadline, "no trial saved 2 epochs"
            time.sleep(0.05)
            saved = {f.parent.name: epochs_saved(f)
                     for f in folder.glob(f"trial-*/{checkpoint_store.FILE}")}
        jobs = job_processes(proc.pid)
        assert len(jobs) == 2
        for pid in jobs:
            os.kill(pid, signal.SIGUSR2)
        finish(proc)

    every = trials(tmp_path)
    complete = [t for t in every if t.state == TrialState.COMPLETE]
    assert len(complete) == 2  # the budget, reached by the requeued workers
    name, epochs = max(saved.items(), key=lambda item: item[1])
    stopped = every[int(name.removeprefix("trial-"))]
    [retried] = [t for t in complete if t.system_attrs.get("failed_trial") == stopped.number]
    assert stopped.state == TrialState.FAIL and retried.params == stopped.params
    run = MlflowClient(f"sqlite:///{tmp_path}/store.db").get_run(retried.user_attrs["mlflow_run_id"])
    resumed = int(run.data.tags["resumed_from_epoch"])
    assert resumed >= epochs  # not one saved epoch trained again (and the one in progress kept)
    assert sorted(stopped.intermediate_values) == EPOCHS[:resumed]
    assert sorted(retried.intermediate_values) == EPOCHS
    assert_whole_history(MlflowClient(f"sqlite:///{tmp_path}/store.db"), run.info.run_id)
    logs = "".join(p.read_text(errors="replace")
                   for p in (tmp_path / "multirun/resume/.submitit").rglob("*_log.*"))
    requeued = [line for line in logs.splitlines()  # submitit's record (Hydra's echo aside)
                if line.startswith("submitit") and "Requeued job" in line]
    assert len(requeued) == 2
