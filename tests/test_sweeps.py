"""The ready-made sweeps in sweeps/, run for real as `mnist-sweep -m sweep=NAME` on MNIST slices.

Each sweep is the real command run to its end in this process (`helpers.mnist_sweep`; a Ray
driver in its own) in tmp_path with its own SQLite tracking store; results are read back from
the sweep's Optuna storage and through MlflowClient.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from hydra.types import RunMode
from optuna.trial import TrialState

from mnist_sweep.config.registry import sweep_names
from mnist_sweep.data import mnist
from mnist_sweep.tracking.keys import mlflow_key
from tests.helpers import (
    LAUNCHED,
    NO_REFERENCE,
    SERVED,
    SMALL,
    assert_two_finished,
    compose_config,
    load_study,
    mlflow_runs,
    run_sweep,
)

SWEEPS = sweep_names()


@pytest.mark.parametrize("name", SWEEPS)
def test_every_ready_made_sweep_composes(name, mnist_cache):
    cfg = compose_config([f"sweep={name}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.study_name == name
    assert cfg.hydra.sweep.dir == f"multirun/{name}"
    assert cfg.hydra.mode == RunMode.MULTIRUN  # `mnist-sweep sweep=NAME` sweeps without -m
    assert sweeper.mlflow.tracking_uri == cfg.tracking.uri
    assert sweeper.params or sweeper.custom_search_space


@pytest.mark.parametrize("sampler", ["random", "tpe"])
@pytest.mark.parametrize("name", SWEEPS)
def test_a_ready_made_sweep_takes_another_sampler_from_the_command_line(name, sampler):
    """`sweep=NAME hydra/sweeper/sampler=X`: what a sweep tunes for its own sampler is an option
    of the sampler group (conf/hydra/sweeper/sampler/), so X replaces it whole; a setting left
    behind is a key X does not take, and the sweep would stop on it."""
    chosen = compose_config([f"sweep={name}", f"hydra/sweeper/sampler={sampler}"], True)
    alone = compose_config(["hydra/sweeper=mnist", f"hydra/sweeper/sampler={sampler}"], True)
    assert set(chosen.hydra.sweeper.sampler) == set(alone.hydra.sweeper.sampler)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, mnist_cache):
    """One quickstart sweep that two tests read: two trials on two workers, with the closing
    summary's reference models (its (tmp_path, finished process))."""
    tmp_path = tmp_path_factory.mktemp("quickstart")
    # without -m: a ready-made sweep sets hydra.mode=MULTIRUN itself
    proc = run_sweep(tmp_path, "sweep=quickstart", *SMALL, "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.n_jobs=2", multirun_flag=False)
    return tmp_path, proc


@pytest.mark.slow
def test_quickstart_records_a_parent_and_a_child_run_per_trial(quickstart):
    tmp_path, proc = quickstart

    study = load_study(tmp_path, "quickstart")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    # The enqueued known-good config, the notebook's own model, runs first.
    assert trials[0].params["train.learning_rate"] == pytest.approx(1e-3)
    assert trials[0].params["model.hidden.0.units"] == 16
    assert trials[0].params["model.hidden.0.activation"] == "sigmoid"
    assert {"test_accuracy", "train_time_s", "val_accuracy"} <= set(trials[0].user_attrs)

    client, parent, children = mlflow_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best_trial_number"] == str(study.best_trial.number)
    assert [c.data.tags["optuna.trial_number"] for c in children] == ["0", "1"]
    for child, trial in zip(children, trials, strict=True):
        assert child.info.status == "FINISHED"
        accuracy = trial.user_attrs["test_accuracy"]
        assert child.data.metrics[mlflow_key("test_accuracy")] == pytest.approx(accuracy)
        assert child.data.params["model.family"] == "dense"
        assert child.data.tags["optuna.state"] == "COMPLETE"
        # The sampled width reached the model: the child's config says what the trial tried,
        # each searched value once, under the config key it sets
        assert child.data.params["model.hidden.0.units"] == str(
            trial.params["model.hidden.0.units"])
        assert not {"model.units", "model.activation"} & set(child.data.params)
    assert f"#/experiments/{parent.info.experiment_id}?workflowType=machine_learning" in proc.stdout
    assert parent.info.run_id in proc.stdout
    best = study.best_trial
    assert f"best trial {best.number}: val_accuracy={best.value:.6g}" in proc.stdout
    assert "multirun/quickstart/optimization_results.yaml" in proc.stdout
    # robustness in sight: the best trial's noisy accuracy beside its objective, printed and on
    # the parent run, with the notebook's models measured on the same data as the reference
    assert f"trial {best.number} (val_accuracy={best.value:.4f})" in proc.stdout
    assert "notebook cnn (5 epochs)" in proc.stdout
    assert "at f=0.5 the best trial keeps" in proc.stdout
    # the comparison is a table, not a flood of single-bar charts in the chart view
    assert not [k for k in parent.data.metrics if k.startswith(("best.", "reference."))]
    table = json.loads((Path(client.download_artifacts(
        parent.info.run_id, "robustness/comparison.json", str(tmp_path)))).read_text())
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    assert rows[f"trial {best.number}"]["test_accuracy"] == pytest.approx(
        best.user_attrs["test_accuracy"])
    assert "test_accuracy_noise_0.5" in rows["notebook cnn"]
    # the parent's interactive report: Optuna's figures, then clean vs noisy, plotly.js inline
    report = Path(client.download_artifacts(parent.info.run_id, "sweep_report.html",
                                            str(tmp_path))).read_text()
    assert report.count("plotly.js v") == 1
    assert report.split("<section>")[-1].count('"name":"front (clean vs noisy)"') == 1


@pytest.mark.slow
def test_cnn_search_prunes_weak_trials_and_records_them(tmp_path):
    small = [o for o in SMALL if not o.startswith(("data.", "train.epochs"))]
    run_sweep(  # scored on the test digits clean and at one noise level: what pruning needs
        tmp_path, "sweep=cnn_search", *small, "data.limit_train=300", "data.val_size=300",
        "eval.noise_levels=[0.5]", "train.epochs=2", "hydra.sweeper.n_trials=3", NO_REFERENCE,
        "hydra.sweeper.n_jobs=1", "hydra/sweeper/pruner=percentile",
        # Keep only the top 1% at each epoch: a trial that trails the best so far is pruned.
        # (Optuna's percentile is what is kept: 90 would prune only the bottom tenth.)
        "hydra.sweeper.pruner.percentile=1", "hydra.sweeper.pruner.n_startup_trials=1",
    )
    study = load_study(tmp_path, "cnn_search")
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.PRUNED) >= 1, states
    assert TrialState.COMPLETE in states
    # step = epochs done; the enqueued known-good CNNs train their own (a cosine over each's
    # epochs: a pruned one stops early), the sampled ones the command line's 2
    sweeper = compose_config(["sweep=cnn_search"], return_hydra_config=True).hydra.sweeper
    trials = study.get_trials()
    assert trials[0].state == TrialState.COMPLETE
    for trial, known in zip(trials[:len(sweeper.enqueue)], sweeper.enqueue, strict=True):
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, len(steps) + 1)) and steps
        assert steps[-1] == known["train.epochs"] or trial.state == TrialState.PRUNED
    assert all(sorted(t.intermediate_values) == [1, 2]
               for t in trials[len(sweeper.enqueue):] if t.state == TrialState.COMPLETE)

    _, parent, children = mlflow_runs(tmp_path)
    pruned = [c for c in children if c.data.tags["optuna.state"] == "PRUNED"]
    assert len(pruned) == states.count(TrialState.PRUNED)
    for child in pruned:
        assert child.info.status == "KILLED"
        assert "pruned at step" in child.data.tags["pruned_reason"]
    assert parent.data.metrics["sweep/n_pruned"] == len(pruned)


@pytest.mark.slow
def test_accuracy_vs_time_yields_a_pareto_front(tmp_path):
    # A sweep override on the command line replaces that param's range, as in Hydra's sweeper.
    small = [o for o in SMALL if not o.startswith(("data.", "train.epochs"))]
    run_sweep(tmp_path, "sweep=accuracy_vs_time", *small, "hydra.sweeper.n_trials=2",
              "data.limit_train=300", "data.val_size=300", "train.epochs=range(1,3)",
              NO_REFERENCE)
    results = yaml.safe_load(
        (tmp_path / "multirun" / "accuracy_vs_time" / "optimization_results.yaml").read_text()
    )
    front = results["solutions"]
    assert front
    study = load_study(tmp_path, "accuracy_vs_time")
    assert {t.number for t in study.best_trials} == {s["number"] for s in front}
    for t in study.get_trials():
        accuracy, seconds = t.values
        assert 0 < accuracy <= 1 and seconds > 0

    client, parent, _ = mlflow_runs(tmp_path)
    assert "sweep_report.html" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    report = (tmp_path / "multirun" / "accuracy_vs_time" / "sweep_report.html").read_text()
    assert "Pareto front" in report


@pytest.mark.slow
def test_noise_robustness_yields_a_clean_vs_noisy_front(tmp_path):
    """Two objectives on the validation digits, clean and at f=0.5; the test set only reports."""
    small = [o for o in SMALL if not o.startswith("data.")]
    run_sweep(tmp_path, "sweep=noise_robustness", *small, "data.limit_train=300",
              "data.val_size=300", "hydra.sweeper.n_trials=2", NO_REFERENCE,
              "eval.noise_levels=[0.5]")  # the level both objectives and the front read
    study = load_study(tmp_path, "noise_robustness")
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE
        assert t.values == [t.user_attrs["val_accuracy"], t.user_attrs["val_accuracy_noise_0.5"]]
        assert "test_accuracy_noise_0.5" in t.user_attrs
    assert study.trials[0].params["train.noise_augment"] == 0.5  # the enqueued known-good CNN
    client, parent, _ = mlflow_runs(tmp_path)
    robust = {a.path for a in client.list_artifacts(parent.info.run_id, "robustness")}
    assert "robustness/clean_vs_noisy.png" in robust
    report = (tmp_path / "multirun" / "noise_robustness" / "sweep_report.html").read_text()
    assert "Pareto front" in report and "Clean vs noisy" in report


@pytest.mark.slow
def test_a_param_naming_no_config_key_fails_before_the_first_trial(tmp_path):
    proc = run_sweep(tmp_path, "sweep=quickstart", *SMALL, NO_REFERENCE,
                     "train.lerning_rate=interval(0.1,0.2)", ok=False)
    assert proc.returncode != 0
    assert "train.lerning_rate" in proc.stderr + proc.stdout
    assert not (tmp_path / "multirun" / "quickstart" / "optuna.db").exists() or not any(
        load_study(tmp_path, "quickstart").get_trials()
    )


@pytest.mark.slow
def test_two_workers_run_a_ready_made_sweep(quickstart):
    """hydra.sweeper.n_jobs=2: two warm worker processes share the study; one display."""
    tmp_path, proc = quickstart
    assert "2 workers (local processes)" in proc.stdout
    trials = load_study(tmp_path, "quickstart").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 2
    logs = sorted((tmp_path / "multirun" / "quickstart" / "workers").glob("worker-*.log"))
    assert len(logs) == 2
    assert_two_finished(tmp_path, "quickstart")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "launcher", "shown"), [
    ("quickstart", ["hydra/launcher=joblib"], "JoblibLauncher"),
    # the same jobs SLURM would run (hydra/launcher=submitit_slurm)
    ("dense_search", ["hydra/launcher=submitit_local"], "LocalLauncher"),
])
def test_a_ready_made_sweep_runs_through_a_launcher(tmp_path, name, launcher, shown):
    """`hydra.sweeper.n_jobs` on a ready-made sweep's command line: each worker job composes the
    command's `sweep=NAME`, which selects the sweeper those settings belong to."""
    proc = run_sweep(tmp_path, f"sweep={name}", *LAUNCHED, *launcher, multirun_flag=False)
    assert f"2 workers (jobs of {shown})" in proc.stdout
    assert_two_finished(tmp_path, name)


@SERVED
def test_two_workers_share_postgres_and_an_mlflow_server(served_quickstart, postgres,
                                                        mlflow_server):
    """The setup users share across machines: the study in PostgreSQL (its URL, password and
    all, from the environment), runs, figures and models on an MLflow server that serves the
    artifacts; two workers. Every trial's model loads back through the server, and the database
    password is in no output, file or MLflow record."""
    tmp_path, proc, study = (served_quickstart.folder, served_quickstart.proc,
                             served_quickstart.study)
    assert mlflow_server.url in proc.stdout  # the UI hint is the server itself

    trials = optuna.load_study(study_name=study, storage=served_quickstart.storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    client, parent, children = mlflow_runs(tmp_path, mlflow_server.url, experiment_name=study)
    assert parent.info.status == "FINISHED" and len(children) == 2
    for run in children:
        assert run.info.status == "FINISHED"
        assert {mlflow_key("test_accuracy"), mlflow_key("test_accuracy_noise_1")} <= set(
            run.data.metrics)
        assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")}

    models = client.search_logged_models(experiment_ids=[parent.info.experiment_id])
    assert {m.source_run_id for m in models} == {r.info.run_id for r in children}
    digits = mnist.load_mnist().x_test[:20]
    previous = mlflow.get_tracking_uri()  # an earlier test may have set one: it beats the env
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        for model in models:
            uri = f"models:/{model.model_id}"
            assert np.asarray(mlflow.pyfunc.load_model(uri).predict(digits)).shape == (20, 10)
    finally:
        mlflow.set_tracking_uri(previous)

    records = [repr((r.data.params, r.data.tags)) for r in [parent, *children]]
    files = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    leaks = [text[:200] for text in [proc.stdout, proc.stderr, *records, *files]
             if postgres.password in text]
    assert not leaks, leaks
