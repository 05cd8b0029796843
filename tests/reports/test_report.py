"""The batch-size study end to end, and `mnist-sweep-report` on the study it leaves behind."""

from __future__ import annotations

import json

import optuna
import pytest

from mnist_sweep.reports import batch_size, report, studies
from mnist_sweep.tracking.keys import mlflow_key
from tests.helpers import NO_REFERENCE, SMALL, load_study, mlflow_runs, run_sweep

FIGURES = {"batch_size_vs_train_time.png", "batch_size_vs_accuracy.png",
           "batch_size_vs_epochs_to_target.png"}


@pytest.fixture(scope="module")
def batch_size_study(tmp_path_factory, mnist_cache):
    """Two batch sizes x two seeds, 2 epochs each on 300 digits: the notebook's study in
    miniature, too small to reach its target (0.93) or to time batch sizes apart."""
    tmp_path = tmp_path_factory.mktemp("batch_size_study")
    small = [o for o in SMALL if not o.startswith(("train.epochs", "data."))]
    proc = run_sweep(tmp_path, "sweep=batch_size_study", *small, "data.limit_train=300",
                     "data.val_size=300", "train.epochs=2", "repeats=2",
                     "train.batch_size=choice(32,128)", NO_REFERENCE)
    return tmp_path, proc


def strict_json(text: str) -> dict:
    """JSON as a strict parser reads it: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_the_study_runs_the_whole_grid_and_reports_onto_the_parent_run(batch_size_study):
    tmp_path, proc = batch_size_study
    study = load_study(tmp_path, "batch_size_study")
    grid = sorted((t.params["train.batch_size"], t.params["train.seed"]) for t in study.trials)
    assert grid == [(32, 0), (32, 1), (128, 0), (128, 1)]
    assert "batch-size study (mean ± std over seeds" in proc.stdout

    client, parent, children = mlflow_runs(tmp_path)
    assert len(children) == 4
    logged = {a.path.split("/")[-1] for a in
              client.list_artifacts(parent.info.run_id, "batch_size_study")}
    assert FIGURES | {"summary.json", "table.txt"} <= logged
    summary = strict_json(open(client.download_artifacts(
        parent.info.run_id, "batch_size_study/summary.json")).read())
    rows = {row["batch_size"]: row for row in summary["rows"]}
    assert set(rows) == {32, 128} and all(row["n"] == 2 for row in rows.values())
    for row in rows.values():
        assert row["train_time_s_mean"] > 0 and 0 < row["test_accuracy_mean"] <= 1
        # 0.93 is out of reach of 300 digits in 2 epochs: said so, in valid JSON
        assert row["reached_target"] == 0 and row["epochs"] == 2
        assert row["epochs_to_target_mean"] is None and row["epochs_to_target_std"] is None
    assert summary["spread_warnings"] == batch_size.spread_warnings(summary["rows"])


@pytest.mark.slow
def test_the_study_says_where_its_files_are_and_what_was_not_reached(batch_size_study):
    tmp_path, proc = batch_size_study
    out = "multirun/batch_size_study/report"
    assert f"plots, table.txt and summary.json in {out}/" in proc.stdout
    files = {p.name for p in (tmp_path / out).iterdir()}
    assert FIGURES | {"summary.json", "table.txt"} <= files
    strict_json((tmp_path / out / "summary.json").read_text())
    _, parent, _ = mlflow_runs(tmp_path)
    assert f"on the MLflow parent run {parent.info.run_id} (batch_size_study/)" in proc.stdout
    table = proc.stdout.split("batch-size study (")[1]
    assert table.count("not reached in 2 epochs") == 2
    assert "nan" not in table.lower()
    assert (tmp_path / out / "table.txt").read_text().count("not reached in 2 epochs") == 2


@pytest.mark.slow
def test_a_target_not_reached_is_said_not_drawn_empty(batch_size_study):
    tmp_path, _ = batch_size_study
    rows = batch_size.summarize(load_study(tmp_path, "batch_size_study"), 0.93)
    fig = batch_size.figures(rows, 0.93)["batch_size_vs_epochs_to_target.png"]
    [ax] = fig.axes
    assert not ax.lines and not ax.collections  # no empty error-bar series
    [text] = ax.texts
    assert text.get_text() == "not reached in 2 epochs at batch size 32, 128"


@pytest.mark.slow
def test_steady_epochs_are_timed_apart_from_the_first(batch_size_study):
    """The first epoch traces and compiles: the study's time is the steady epochs' (here the
    second), each trial's per-epoch times as MLflow has them."""
    tmp_path, _ = batch_size_study
    study = load_study(tmp_path, "batch_size_study")
    client, _, children = mlflow_runs(tmp_path)
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    for trial in study.trials:
        history = {m.step: m.value for m in client.get_metric_history(
            by_number[trial.number].info.run_id, mlflow_key("epoch_time_s", per_epoch=True))}
        assert trial.user_attrs["epoch_time_s_first"] == pytest.approx(history[1])
        assert trial.user_attrs["epoch_time_s_steady"] == pytest.approx(history[2])
    for row in batch_size.summarize(study, 0.93):
        steady = [t.user_attrs["epoch_time_s_steady"] for t in study.trials
                  if t.params["train.batch_size"] == row["batch_size"]]
        assert row["epoch_time_s_steady_mean"] == pytest.approx(sum(steady) / 2)
    assert "s/epoch (steady)" in batch_size.table(batch_size.summarize(study, 0.93), 0.93)


@pytest.mark.slow
def test_a_spread_larger_than_the_differences_is_warned_once(batch_size_study):
    tmp_path, proc = batch_size_study
    rows = batch_size.summarize(load_study(tmp_path, "batch_size_study"), 0.93)
    small, big = rows
    for key, label in batch_size.COMPARED.items():
        lost = max(small[f"{key}_std"], big[f"{key}_std"]) > abs(
            small[f"{key}_mean"] - big[f"{key}_mean"])
        assert lost == any(w.startswith(label) for w in batch_size.spread_warnings(rows))
    warned = [line for line in proc.stdout.splitlines() if line.startswith("warning: the spread")]
    assert warned == ([batch_size.warning_line(batch_size.spread_warnings(rows))]
                      if batch_size.spread_warnings(rows) else [])
    # the same seeds, spread twice as far as the batch sizes differ: warned, naming the pair
    for row in rows:
        row["test_accuracy_std"] = 2 * abs(small["test_accuracy_mean"] - big["test_accuracy_mean"])
    [*_, accuracy] = batch_size.spread_warnings(rows)
    assert accuracy.startswith("test accuracy: 32 vs 128 (")


@pytest.mark.slow
def test_summary_agrees_with_the_trials(batch_size_study):
    tmp_path, _ = batch_size_study
    study = load_study(tmp_path, "batch_size_study")
    rows = batch_size.summarize(study, target=0.5)
    for row in rows:
        trials = [t for t in study.trials if t.params["train.batch_size"] == row["batch_size"]]
        accuracies = [t.user_attrs["test_accuracy"] for t in trials]
        assert row["test_accuracy_mean"] == pytest.approx(sum(accuracies) / len(accuracies))
        reached = [batch_size.epochs_to_target(t, 0.5) for t in trials]
        assert row["reached_target"] == sum(r is not None for r in reached)


@pytest.mark.slow
def test_epochs_to_target_agrees_with_each_runs_per_epoch_history(batch_size_study):
    """One step convention: MLflow's per-epoch curve and Optuna's reports both count epochs done,
    so epochs-to-target read from the study is the MLflow step where the curve first gets there."""
    tmp_path, _ = batch_size_study
    study = load_study(tmp_path, "batch_size_study")
    client, _, children = mlflow_runs(tmp_path)
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    for trial in study.trials:
        history = client.get_metric_history(by_number[trial.number].info.run_id,
                                             mlflow_key("val_accuracy", per_epoch=True))
        assert sorted(m.step for m in history) == [1, 2] == sorted(trial.intermediate_values)
        target = max(m.value for m in history)  # reached at a known epoch
        first = min(m.step for m in history if m.value >= target)
        assert batch_size.epochs_to_target(trial, target) == first
        assert batch_size.epochs_to_target(trial, target + 1e-6) is None


@pytest.mark.slow
def test_report_cli_prints_the_table_and_writes_plots(batch_size_study, capsys):
    tmp_path, _ = batch_size_study
    storage = f"sqlite:///{tmp_path}/multirun/batch_size_study/optuna.db"
    out = tmp_path / "report"
    assert report.main(["batch_size_study", "--storage", storage, "--out", str(out),
                         "--target-accuracy", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("COMPLETE") == 4
    written = {p.name for p in out.iterdir()}
    assert FIGURES | {"summary.json", "table.txt"} <= written
    rows = strict_json((out / "summary.json").read_text())["rows"]
    assert [row["batch_size"] for row in rows] == [32, 128]
    assert "optimization_history.png" in written


def test_report_cli_names_the_studies_it_found(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="other", storage=storage)
    assert report.main(["missing", "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'missing'" in err and "other" in err


@pytest.mark.slow
def test_report_finds_a_study_from_any_folder(batch_size_study, tmp_path, monkeypatch, capsys):
    """The sweep recorded where its study is; the report needs only the name."""
    sweep_path, _ = batch_size_study
    monkeypatch.setenv("XDG_STATE_HOME", str(sweep_path / "state"))
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert report.main(["batch_size_study", "--target-accuracy", "0.5"]) == 0
    assert capsys.readouterr().out.count("COMPLETE") == 4
    assert (elsewhere / "reports" / "batch_size_study" / "optimization_history.png").is_file()

    # an unknown name: one line naming what is known, no traceback, nothing created
    assert report.main(["batch_size_studdy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'batch_size_studdy'" in err and "batch_size_study" in err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["reports"]


def test_report_of_a_moved_study_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    studies.record("gone", str(tmp_path / "multirun" / "gone"), None)
    assert report.main(["gone"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert not (tmp_path / "multirun").exists()  # not created by looking


def test_report_shows_the_best_trials_noisy_accuracy(tmp_path, capsys):
    """The table carries clean and noisy test accuracy per trial; below it, the best trial's
    robustness beside the notebook's models the sweep measured (kept on the study)."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="cnn_search", storage=storage, direction="maximize")
    for value, noisy in ((0.991, 0.594), (0.985, 0.91)):
        study.add_trial(create_trial(
            value=value, params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-4, 1)},
            user_attrs={"val_accuracy": value, "test_accuracy": value - 0.001,
                        "test_accuracy_noise_0.5": noisy, "train_time_s": 10.0}))
    reference = {"cnn": {"test_accuracy": 0.968, "test_accuracy_noise_0.5": 0.846}}
    study.set_user_attr("robustness", {"reference": reference})
    assert report.main(["cnn_search", "--storage", storage, "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "test_accuracy_noise_0.5=0.594" in printed and "test_accuracy=0.99 " in printed
    assert "at f=0.5 the best trial keeps 0.5940: notebook cnn 0.8460 (-0.2520)" in printed
    assert (tmp_path / "r" / "clean_vs_noisy.png").is_file()
