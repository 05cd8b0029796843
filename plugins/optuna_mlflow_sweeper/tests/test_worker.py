"""Real sweeps of the generic app in tests/apps/toy with `hydra/sweeper=optuna_mlflow`.

Each sweep is the toy app's command (cwd=tmp_path, MLFLOW_TRACKING_URI=sqlite:///tmp_path/
mlflow.db), in this process unless it is killed or run beside another; results are read back
with a real Optuna storage and MlflowClient. No mocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from toyapp import (  # noqa: F401
    APP,
    NO_MLFLOW,
    XY,
    alive_in_group,
    budget_held_by_running,
    by_number,
    command,
    finish,
    running_trials,
    runs,
    start,
    store_env,
    study,
    sweep,
    wait_for,
)

from hydra_plugins.optuna_mlflow_sweeper._impl.study import INTERRUPTED
from hydra_plugins.optuna_mlflow_sweeper._impl.worker import too_many_failures


@pytest.mark.slow
def test_sweep_records_parent_and_child_runs(tmp_path: Path, env: dict[str, str]) -> None:
    proc = sweep(tmp_path, env, *XY, "hydra.sweeper.n_trials=4", "log_mlflow=true",
                 "hydra.sweeper.sampler.seed=0")
    s = study(tmp_path)
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 4
    assert "[optuna_mlflow] trials 4/4 (pruned 0, failed 0) best value=" in proc.stdout
    # a trial's launch line names its params, nothing internal (Hydra's launcher lists are off)
    x, y = (s.trials[3].params[k] for k in ("x", "y"))
    assert f"[optuna_mlflow] trial 3: y={y:.4g} x={x:.4g}\n" in proc.stdout
    shown = proc.stdout + proc.stderr
    assert not any(word in shown for word in ("env_set", "MLFLOW_RUN_ID", "Launching", " : "))

    client, parents, children = runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "app"
    assert parent.data.params["params.x"] == "interval(-5,5)"
    assert parent.data.params["sampler"] == "TPESampler"
    assert parent.data.params["n_trials"] == "4"
    # what the sweep used: the registered model's name (the study's), not the setting `True`
    assert parent.data.params["mlflow.registered_model_name"] == "app"
    assert parent.data.tags["optuna.study_name"] == "app"
    assert parent.data.tags["optuna.storage"].endswith("sweep/optuna.db")
    # the storage the sweep resolved, not the config's null
    assert parent.data.params["storage"] == f"sqlite:///{tmp_path}/sweep/optuna.db"
    # MLflow's context tags, as mlflow.start_run sets them: the UI's "Created by" and "Source"
    for run in [parent, *children]:
        assert run.data.tags["mlflow.user"]
        assert run.data.tags["mlflow.source.name"] and run.data.tags["mlflow.source.type"]
    # where each trial ran: the host (a Ray cluster's node id too; not in Ray here)
    for run in children:
        assert run.data.tags["host"] == socket.gethostname()
        assert "ray.node_id" not in run.data.tags
    assert parent.data.tags["best_trial_number"] == str(s.best_trial.number)
    assert parent.data.metrics["sweep/best_value"] == pytest.approx(s.best_value)
    # the parent's series in a section of their own in the chart view, apart from the trials'
    assert all(key.startswith("sweep/") for key in parent.data.metrics)
    # MLflow's compare page for the four trials, printed at the end
    compare = next(ln for ln in proc.stdout.splitlines() if ln.startswith("  compare page"))
    for child in children:
        assert f"%22{child.info.run_id}%22" in compare
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "plots" not in artifacts  # the report holds the figures: no static copies drawn
    assert "optimization_results.yaml" in artifacts
    assert "search_space.json" in artifacts
    # the interactive report: one self-contained HTML file with Optuna's plotly figures
    assert "sweep_report.html" in artifacts
    report = (tmp_path / "sweep" / "sweep_report.html").read_text()
    assert report.count("<section>") == 4 and report.count("plotly.js v") == 1
    for title in ("Optimization history", "Parallel coordinates", "Slices"):
        assert title in report
    assert "<b>Left out.</b> Parameter importances from 4 finished trial(s)" in report
    space = json.loads((tmp_path / "sweep" / "search_space.json").read_text())
    assert space["x"] == {"name": "FloatDistribution", "attributes": {
        "step": None, "low": -5.0, "high": 5.0, "log": False}}
    assert set(space) == {"x", "y"}

    for number, run in by_number(children).items():
        trial = s.trials[number]
        assert run.info.run_name == f"trial-{number}"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.state"] == "COMPLETE"
        assert run.info.status == "FINISHED"
        assert run.data.metrics["objective"] == pytest.approx(trial.value)
        # the job logged into its child run through MLFLOW_RUN_ID
        assert run.data.metrics["f_from_job"] == pytest.approx(trial.value)
        assert float(run.data.params["x"]) == pytest.approx(trial.params["x"])
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert (tmp_path / "sweep" / str(number) / ".hydra").is_dir()  # job dir = trial number

    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_value == pytest.approx(s.best_value)
    assert dict(results.best_params) == s.best_params
    assert results.counts.complete == 4
    assert results.mlflow.parent_run_id == parent.info.run_id
    assert results.mlflow.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert results.storage == f"sqlite:///{tmp_path}/sweep/optuna.db"


@pytest.mark.slow
def test_failed_and_diverged_trials_are_recorded_and_the_sweep_goes_on(
    tmp_path: Path, env: dict[str, str]
) -> None:
    proc = sweep(tmp_path, env, *XY, "hydra.sweeper.n_trials=4",
                 "hydra.sweeper.max_failure_rate=1.0",
                 "hydra.sweeper.enqueue=[{fail:true},{nan:true}]", "hydra.sweeper.progress=false")
    s = study(tmp_path)
    # progress off: the failures (warnings) and the answer, nothing else
    lines = proc.stdout.splitlines()
    answer = [line for line in lines if "WARNING" not in line.upper() and " failed: " not in line]
    assert answer == [
        f"best trial {s.best_trial.number}: value={s.best_value:.6g}  "
        + ", ".join(f"{k}={v:.4g}" for k, v in s.best_params.items()),
        "  all results     sweep/optimization_results.yaml",
    ]
    states = [t.state for t in s.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert s.trials[0].user_attrs["fail_reason"].startswith("RuntimeError: boom at x=")
    assert s.trials[1].user_attrs["fail_reason"] == "diverged (non-finite objective)"

    _, parents, children = runs(tmp_path)
    child = by_number(children)
    assert child[0].info.status == "FAILED" and child[0].data.tags["optuna.state"] == "FAIL"
    assert child[0].data.tags["fail_reason"].startswith("RuntimeError: boom")
    assert child[1].data.tags["fail_reason"] == "diverged (non-finite objective)"
    assert child[2].info.status == "FINISHED"
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["sweep/n_failed"] == 2


@pytest.mark.slow
def test_too_many_failures_abort_the_sweep(tmp_path: Path, env: dict[str, str]) -> None:
    proc = sweep(tmp_path, env, *XY, "fail=true", "hydra.sweeper.n_trials=5",
                 "hydra.sweeper.n_jobs=1", "hydra.sweeper.max_failure_rate=0.0", ok=False)
    assert proc.returncode != 0
    assert "hydra.sweeper.max_failure_rate=0.0" in proc.stderr
    assert len(study(tmp_path).trials) == 1
    _, parents, _ = runs(tmp_path)
    assert parents[0].info.status == "FAILED"


@pytest.mark.slow
def test_a_first_trial_that_fails_does_not_stop_the_sweep(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """1 of 1 is not a rate: max_failure_rate (0.5 here) is judged over min(n_trials, 5)."""
    proc = sweep(tmp_path, env, *XY, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                 "hydra.sweeper.enqueue=[{fail:true}]", "hydra.sweeper.progress=false", NO_MLFLOW)
    states = [t.state for t in study(tmp_path).trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE], proc.stderr


@pytest.mark.parametrize(("failed", "done", "rate", "n_trials", "stop"), [
    (1, 1, 0.5, 20, False),  # one diverged first trial
    (2, 2, 0.5, 20, False),  # 2 of 5 may still fail
    (3, 3, 0.5, 20, True),  # 3 of the first 5 failed, whatever comes next
    (3, 6, 0.5, 20, False),
    (4, 7, 0.5, 20, True),
    (1, 1, 0.0, 20, True),  # 0.0: the first failure stops it
    (2, 2, 0.5, 2, True),  # a budget of 2: both failed
    (1, 1, 0.5, 1, True),
    (1, 1, 0.5, float("inf"), False),  # no budget but the timeout
])
def test_the_failure_rate_is_judged_over_enough_trials(
    failed: int, done: int, rate: float, n_trials: float, stop: bool
) -> None:
    assert too_many_failures(failed, done, rate, n_trials) is stop


@pytest.mark.slow
def test_pruning_marks_trials_pruned_and_child_runs_killed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # trial 0 is optimal, trial 1 far worse at every step: median pruner prunes it at step 0
    sweep(tmp_path, env, *XY, "steps=4", "log_mlflow=true", "hydra/sweeper/pruner=median",
          "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.n_jobs=1",
          "hydra.sweeper.n_trials=3", "hydra.sweeper.enqueue=[{x:2.0,y:-1.0},{x:-5.0,y:5.0}]")
    s = study(tmp_path)
    assert s.trials[0].state == TrialState.COMPLETE
    assert sorted(s.trials[0].intermediate_values) == [0, 1, 2, 3]
    assert s.trials[1].state == TrialState.PRUNED
    assert list(s.trials[1].intermediate_values) == [0]

    _, parents, children = runs(tmp_path)
    pruned = by_number(children)[1]
    # the job's `with mlflow.start_run()` ended the run FAILED on TrialPruned; pruned = KILLED
    assert pruned.info.status == "KILLED"
    assert pruned.data.tags["optuna.state"] == "PRUNED"
    assert parents[0].data.params["pruner"] == "MedianPruner"


@pytest.mark.slow
def test_rerunning_the_command_resumes_the_study_and_parent_run(
    tmp_path: Path, env: dict[str, str]
) -> None:
    args = [*XY, "hydra.sweeper.n_jobs=2", "hydra.sweeper.enqueue=[{x:1.5}]"]
    sweep(tmp_path, env, *args, "hydra.sweeper.n_trials=2")
    proc = sweep(tmp_path, env, *args, "hydra.sweeper.n_trials=3")
    assert "trials 3/3" in proc.stdout
    again = sweep(tmp_path, env, *args, "hydra.sweeper.n_trials=3")
    assert "study app already has 3/3 trials: nothing to run" in again.stdout

    s = study(tmp_path)
    assert len(s.trials) == 3 and all(t.state == TrialState.COMPLETE for t in s.trials)
    assert [t.params["x"] for t in s.trials].count(1.5) == 1  # enqueued once per study
    _, parents, children = runs(tmp_path)
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    assert s.user_attrs["mlflow_parent_run_id"] == parents[0].info.run_id
    assert parents[0].data.params["n_trials"] == "2"
    assert parents[0].data.tags["latest.n_trials"] == "3"
    assert sorted(by_number(children)) == [0, 1, 2]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    job_dirs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.name.isdigit())
    assert job_dirs == list("012")


@pytest.mark.slow
def test_concurrent_sweeps_share_the_budget(tmp_path: Path, env: dict[str, str]) -> None:
    storage = f"sqlite:///{tmp_path}/shared.db"
    optuna.create_study(study_name="shared", storage=storage)
    args = [*XY, "sleep=0.5", f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=shared", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2"]
    procs = [subprocess.Popen(command(*args, sweep_dir=f"sweep{i}"), cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, out[-2000:] + err[-4000:]
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert len(trials) == 4  # n_trials across both commands' workers, not one more
    assert sum(t.state == TrialState.COMPLETE for t in trials) == len(trials)
    _, parents, children = runs(tmp_path)
    assert len(parents) == 1  # both processes converged on one parent run
    assert parents[0].info.status == "FINISHED"
    assert len(children) == len(trials)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}


@pytest.mark.slow
def test_timeout_stops_new_batches_and_mlflow_can_be_disabled(
    tmp_path: Path, env: dict[str, str]
) -> None:
    proc = sweep(tmp_path, env, *XY, "+z=choice(a,b)", "sleep=1.5", "hydra.sweeper.timeout=1",
                 "hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=1",
                 "hydra.sweeper.mlflow.enabled=false")
    trials = study(tmp_path).trials
    assert len(trials) == 1 and trials[0].state == TrialState.COMPLETE
    assert trials[0].params["+z"] in ("a", "b")  # a '+key' param adds a new config key
    assert "trials 1/20" in proc.stdout
    assert "MLFLOW_RUN_ID" not in " ".join(trials[0].user_attrs["overrides"])
    assert runs(tmp_path)[1:] == ([], [])
    assert OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml").counts.complete == 1


@pytest.mark.slow
def test_grid_sampler_with_null_n_trials_runs_the_whole_grid(
    tmp_path: Path, env: dict[str, str]
) -> None:
    proc = sweep(tmp_path, env, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=null",
                 "x=choice(1.0,2.0)", "+hydra.sweeper.params.y='range(0, 3)'", "fail=false",
                 "hydra.sweeper.mlflow.enabled=false")
    trials = study(tmp_path).trials
    assert sorted((t.params["x"], t.params["y"]) for t in trials) == [
        (x, y) for x in (1.0, 2.0) for y in (0, 1, 2)]  # range() stops before 3
    assert "trials 6/6" in proc.stdout


@pytest.mark.slow
def test_multi_objective_writes_a_pareto_front(tmp_path: Path, env: dict[str, str]) -> None:
    # conf/multi_objective.yaml is written like a config for Hydra's own optuna sweeper
    proc = sweep(tmp_path, env, config="multi_objective")
    assert "trials 4/4 (pruned 0, failed 0) pareto set" in proc.stdout
    s = study(tmp_path, name="mo")
    assert [d.name for d in s.directions] == ["MINIMIZE", "MINIMIZE"]
    assert all(t.params["y"] in (-1, 0, 1) and t.params["x"] in [i / 2 for i in range(10)]
               for t in s.trials)  # range(0, 5, step=0.5) stops before 5
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert "best_value" not in results
    assert len(results.solutions) >= 1
    for solution in results.solutions:
        assert len(solution["values"]) == 2 and set(solution["params"]) == {"x", "y"}
    client, parents, children = runs(tmp_path)
    assert "Pareto front" in (tmp_path / "sweep" / "sweep_report.html").read_text()
    assert {"objective_0", "objective_1"} <= set(children[0].data.metrics)
    assert parents[0].data.metrics["sweep/pareto_size"] == len(results.solutions)
    assert parents[0].data.params["sampler"] == "NSGAIISampler"
    assert parents[0].data.params["params.x"] == "range(0, 5, step=0.5)"


@pytest.mark.slow
def test_joblib_launcher_runs_trials_in_subprocesses_with_pruning(
    tmp_path: Path, env: dict[str, str]
) -> None:
    proc = subprocess.Popen(
        command(*XY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
                "hydra.sweeper.n_trials=4", "steps=3", "log_mlflow=true",
                "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1",
                "hydra.sweeper.enqueue=[{x:2.0,y:-1.0},{x:1.9,y:-1.0},{x:-5.0,y:5.0}]"),
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-2000:] + err[-5000:]
    assert "env_set" not in out + err and "Joblib.Parallel" not in out + err
    s = study(tmp_path)
    pids = {t.user_attrs["pid"] for t in s.trials}
    assert proc.pid not in pids  # jobs ran in loky workers, not in the sweeper process
    assert s.trials[0].state == TrialState.COMPLETE
    assert s.trials[2].state == TrialState.PRUNED  # pruned inside a worker via report()
    _, _, children = runs(tmp_path)
    child = by_number(children)
    assert child[2].info.status == "KILLED"
    assert child[0].data.metrics["f_from_job"] == pytest.approx(s.trials[0].value)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_trial_whose_process_died_is_failed_and_retried(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "sweep").mkdir()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/sweep/optuna.db",
                                         heartbeat_interval=1)
    dead = optuna.create_study(study_name="app", storage=storage).ask(
        {"x": FloatDistribution(-5, 5), "y": FloatDistribution(-5, 5)})
    storage.record_heartbeat(dead._trial_id)  # ...then its process "dies"
    time.sleep(2.5)
    sweep(tmp_path, env, *XY, "hydra.sweeper.heartbeat_interval=1",
          "hydra.sweeper.grace_period=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1")
    trials = study(tmp_path).trials
    assert trials[0].state == TrialState.FAIL
    assert trials[1].state == TrialState.COMPLETE
    assert trials[1].system_attrs["failed_trial"] == 0  # the retry of the dead trial
    assert trials[1].params == trials[0].params
    assert [t.state for t in trials[2:]] == [TrialState.COMPLETE]  # budget: 2 counted trials
    _, _, children = runs(tmp_path)
    assert by_number(children)[1].data.tags["optuna.retry_of"] == "0"


@pytest.mark.slow
def test_custom_search_space_builds_a_list_valued_key(tmp_path: Path, env: dict[str, str]) -> None:
    sweep(tmp_path, env, "hydra.sweeper.custom_search_space=space.layers",
          "hydra.sweeper.n_trials=3",
          "hydra.sweeper.enqueue=[{n_layers:1,units_0:16,activation_0:relu}]")
    s = study(tmp_path)
    first = s.trials[0]
    assert first.params == {"n_layers": 1, "units_0": 16, "activation_0": "relu"}
    assert first.user_attrs["overrides"] == ["model.hidden=[{units:16,activation:relu}]"]
    assert first.value == pytest.approx(4.0 + 1.0 + 0.016)  # the app saw model.hidden
    for trial in s.trials:
        (line,) = trial.user_attrs["overrides"]  # internal names (n_layers...) are no overrides
        assert line.count("units:") == trial.params["n_layers"]
    _, _, children = runs(tmp_path)
    assert by_number(children)[0].data.params["units_0"] == "16"


BAD_CONFIGS: dict[str, tuple[list[str], list[str]]] = {
    "unknown sampler": (["hydra/sweeper/sampler=nope"], ["hydra/sweeper/sampler", "tpe", "grid"]),
    "unknown pruner": (["hydra/sweeper/pruner=nope"], ["hydra/sweeper/pruner", "median"]),
    "malformed params": (["+hydra.sweeper.params.lr='interval(0,'"],
                         ["hydra.sweeper.params.lr", "interval(0,"]),
    "bad interval": (["+hydra.sweeper.params.lr='tag(log, interval(0,1))'"],
                     ["hydra.sweeper.params.lr", "a > 0"]),
    "unknown param key": (["+hydra.sweeper.params.nope='interval(0,1)'"],
                          ["hydra.sweeper.params.nope", "'+' to add"]),
    "unknown command-line key": (["nope=interval(0,1)"], ["'nope (command-line override)'"]),
    "direction": (["hydra.sweeper.direction=up"], ["hydra.sweeper.direction", "maximize"]),
    "direction list": (["hydra.sweeper.direction=[minimize,sideways]"],
                       ["hydra.sweeper.direction"]),
    "metric_names": (["hydra.sweeper.metric_names=[a,b]"],
                     ["hydra.sweeper.metric_names", "1 name(s), one per direction"]),
    "n_trials": (["hydra.sweeper.n_trials=0"], ["hydra.sweeper.n_trials", ">= 1"]),
    "null n_trials without grid": (["hydra.sweeper.n_trials=null"],
                                   ["hydra.sweeper.n_trials", "grid sampler"]),
    "max_failure_rate": (["hydra.sweeper.max_failure_rate=2"], ["hydra.sweeper.max_failure_rate"]),
    "grid needs discrete params": (["hydra/sweeper/sampler=grid"],
                                   ["'x (command-line override)'", "grid"]),
    "custom search space": (["hydra.sweeper.custom_search_space=nowhere.fn"],
                            ["hydra.sweeper.custom_search_space", "nowhere.fn"]),
    "sqlite folder missing": (["hydra.sweeper.storage=sqlite:////nonexistent/x/optuna.db"],
                              ["'hydra.sweeper.storage'", "/nonexistent/x does not exist"]),
    "app validate hook": (["hydra.sweeper.validate=nowhere.check"],
                          ["hydra.sweeper.validate", "nowhere.check"]),
}


@pytest.fixture(scope="module")
def bad_config_runs(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> dict:
    """Every bad config run once (each fails before any trial): name -> (proc, tmp dir)."""
    done = {}
    for name, (overrides, _) in BAD_CONFIGS.items():
        tmp = tmp_path_factory.mktemp("bad")
        proc = sweep(tmp, store_env(tmp, mlflow_template), "x=interval(-5,5)", *overrides,
                     ok=False)
        done[name] = (proc, tmp, proc.stdout, proc.stderr)
    return done


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_fails_before_any_trial_naming_the_key(name: str, bad_config_runs: dict) -> None:
    proc, tmp, out, err = bad_config_runs[name]
    assert proc.returncode != 0, out
    for needle in BAD_CONFIGS[name][1]:
        assert needle in err, err[-3000:]
    if name not in ("unknown sampler", "unknown pruner"):  # those Hydra rejects, not the sweeper
        assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err
    _, parents, children = runs(tmp)
    assert children == [] and parents == []
    assert not Path("/nonexistent").exists()
    if (tmp / "sweep" / "optuna.db").exists():
        assert all(not s.trials for s in optuna.get_all_studies(
            storage=f"sqlite:///{tmp}/sweep/optuna.db"))


@pytest.mark.slow
def test_the_rerun_after_a_sigkill_says_what_it_waits_for(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The killed trial holds the budget's last place: the rerun waits out its heartbeat with a
    line every ~10 s (a third of a shorter grace period) naming the trial. The grace period
    outlasts the rerun's start-up here (MLflow off: ~2 s): its first line comes 12 / 3 s into
    its wait, which begins ~2 s after the kill (the trial goes stale ~11 s after it)."""
    args = ["x=interval(-5,5)", "sleep=60", "hydra.sweeper.n_trials=1", NO_MLFLOW,
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=12"]
    first = start(tmp_path, env, *args)
    wait_for(lambda: running_trials(tmp_path), what="a running trial", proc=first)
    os.killpg(first.pid, signal.SIGKILL)
    finish(first, timeout=60)
    proc = sweep(tmp_path, env, *args[:1], *args[2:], "sleep=0",
                 "hydra.sweeper.allow_changed_overrides=[sleep]")
    lines = [line for line in proc.stdout.splitlines() if "for the heartbeat of trial(s) 0" in line]
    assert lines, proc.stdout
    assert "none yet; without one they are failed and run again here" in lines[0]
    assert [t.state for t in study(tmp_path).trials] == [TrialState.FAIL, TrialState.COMPLETE]


@pytest.mark.slow
def test_ctrl_c_that_the_app_turns_into_another_error_still_stops_and_reruns_the_trial(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A KeyboardInterrupt that lands in code which raises something else instead (a library's
    cleanup, Hydra composing the job) must not pass for the trial's own failure: it is
    recorded as interrupted and queued to run again first."""
    proc = start(tmp_path, env, "x=interval(-5,5)", "sleep=60", "interrupt_becomes_error=true",
                 "hydra.sweeper.n_trials=2", NO_MLFLOW)
    wait_for(lambda: any("pid" in t.user_attrs for t in running_trials(tmp_path)),
             what="the trial's job to start (it records its pid, then sleeps)")
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, out[-2000:] + err[-3000:]
    [stopped, retry] = study(tmp_path).trials
    assert stopped.state == TrialState.FAIL, stopped
    assert stopped.user_attrs["fail_reason"] == INTERRUPTED
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0


@pytest.mark.slow
def test_sigkill_and_ctrl_c_mid_trial_then_the_command_completes_the_budget(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Trials that outlast any wait for the signals: on a loaded machine the second process
    # started its trial 5.5 s after the first, whose 5-s trial then ended before its SIGKILL.
    # The two processes start together; a budget of three leaves room for one to start a trial
    # later than the other: each runs one trial at a time, so two running trials are one of each.
    # The rerun is the same command with short trials.
    args = ["x=interval(-5,5)", "sleep=60", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]
    killed = start(tmp_path, env, *args)
    interrupted = start(tmp_path, env, *args)
    wait_for(lambda: len(running_trials(tmp_path)) == 2, what="a trial of each process")
    os.killpg(killed.pid, signal.SIGKILL)
    os.killpg(interrupted.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert finish(killed)[0] == -signal.SIGKILL
    code, out, err = finish(interrupted)
    assert code == 130, out[-2000:] + err[-3000:]
    assert "Traceback" not in err and "resume with" in err
    assert "hydra.sweeper.n_trials=3" in err  # the command that resumes

    # waits for the SIGKILLed trial's heartbeat to go stale
    sweep(tmp_path, env, *args[:1], "sleep=0.5", *args[2:],
          "hydra.sweeper.allow_changed_overrides=[sleep]")
    trials = study(tmp_path).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2
    retried = {t.system_attrs.get("failed_trial") for t in trials
               if t.state == TrialState.COMPLETE}
    assert {t.number for t in failed} <= retried  # both ran again, with the same params
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 3
    client, parents, children = runs(tmp_path)
    statuses = {int(c.data.tags["optuna.trial_number"]): c.info.status for c in children}
    assert "RUNNING" not in statuses.values() and parents[0].info.status == "FINISHED"
    assert "KILLED" in {statuses.get(t.number) for t in failed}  # the interrupted one


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["sigkill", "two quick ctrl-c"])
def test_a_sweep_stopped_as_a_whole_in_its_last_trials_finishes_when_rerun_at_once(
    tmp_path: Path, env: dict[str, str], stop: str
) -> None:
    """Two workers, stopped as a whole while they run the budget's last two trials: the same
    command, run at once, waits for those trials to go stale, retries them and ends the sweep
    (before, the rerun found the budget used by RUNNING trials nobody ran: a jammed study)."""
    args = ["x=interval(-5,5)", "sleep=3", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]
    first = start(tmp_path, env, *args)
    wait_for(lambda: budget_held_by_running(tmp_path, 2), timeout=240,
             what="the budget's last trials running", proc=first)
    if stop == "sigkill":
        os.killpg(first.pid, signal.SIGKILL)
    else:
        os.killpg(first.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(first.pid, signal.SIGINT)
    finish(first, timeout=120)
    with contextlib.suppress(ProcessLookupError):  # the workers too, whatever became of them
        os.killpg(first.pid, signal.SIGKILL)
    wait_for(lambda: not alive_in_group(first.pid), timeout=10,  # gone, as a user's rerun finds it
             what=lambda: f"the stopped sweep's processes to end: {alive_in_group(first.pid)}")

    # At once: the dead trials' heartbeats are still fresh. In a process of its own: run in this
    # one, the rerun starts a second sooner, and twice in ~16 runs (2026-12-07) only one of the
    # two trials completed. Two faults of workers settling at once were found and fixed since
    # (test_study); 24 runs in this process and 5 of the whole file then passed, before and after.
    proc = sweep(tmp_path, env, *args, own_process=True)
    assert "nothing to run" not in proc.stdout
    trials = study(tmp_path).trials
    said = "\n".join([*(f"{t.number} {t.state.name} {t.system_attrs} {t.user_attrs}"
                         for t in trials), proc.stdout[-2000:], proc.stderr[-3000:]])
    assert not [t for t in trials if t.state == TrialState.RUNNING], said
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2, said
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped  # (one or two: the workers start unevenly)
    assert {t.number for t in stopped} == {t.system_attrs.get("failed_trial") for t in complete
                                           if "failed_trial" in t.system_attrs}
    client, parents, children = runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert not [c for c in children if c.info.status == "RUNNING"]
    numbers = [int(c.data.tags["optuna.trial_number"]) for c in children]
    assert len(numbers) == len(set(numbers)) == len(trials)  # one child run per trial
