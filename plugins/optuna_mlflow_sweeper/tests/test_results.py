"""What a sweep leaves behind (optimization_results.yaml layout, plots, progress line), from
real in-memory Optuna studies."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import plotly.graph_objects as go
import pytest

from hydra_plugins.optuna_mlflow_sweeper._impl import results
from hydra_plugins.optuna_mlflow_sweeper._impl.html_report import IMPORTANCE_MIN_TRIALS
from hydra_plugins.optuna_mlflow_sweeper._impl.study import count_trials
from hydra_plugins.optuna_mlflow_sweeper.results import add_to_html_report, write_html_report


def _study(directions: list[str], complete: int = 4) -> optuna.Study:
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(0))
    for _ in range(complete):
        trial = study.ask()
        x, y = trial.suggest_float("x", -5, 5), trial.suggest_int("y", 0, 3)
        study.tell(trial, (x * x + y) if len(directions) == 1 else (x * x, y))
    pruned = study.ask({"x": optuna.distributions.FloatDistribution(-5, 5)})
    if len(directions) == 1:  # Optuna cannot prune multi-objective trials
        pruned.report(30.0, 0)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    return study


def test_single_objective_results_and_progress_line() -> None:
    study = _study(["minimize"])
    counts = count_trials(study.trials)
    data = results.results_dict(study, counts, "sqlite:///x.db", {"parent_run_id": "abc"})
    assert data["best_value"] == study.best_value and data["best_params"] == study.best_params
    assert data["counts"] == {"complete": 4, "pruned": 1, "failed": 1, "running": 0, "total": 6}
    assert data["mlflow"]["parent_run_id"] == "abc"
    line = results.progress_line(study, counts, 20)
    assert line == (f"[optuna_mlflow] trials 6/20 (pruned 1, failed 1) "
                    f"best value={study.best_value:.6g} (trial {study.best_trial.number})")


def test_metric_names_name_the_objective_and_the_best_line_gives_params() -> None:
    study = _study(["minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_loss"])
    counts = count_trials(study.trials)
    assert f"best val_loss={study.best_value:.6g}" in results.progress_line(study, counts, 20)
    line = results.best_line(study, counts)
    assert line.startswith(f"best trial {study.best_trial.number}: val_loss=")
    assert all(f"{name}=" in line for name in study.best_params)
    assert "Pareto front" in results.best_line(_study(["minimize", "minimize"]), counts)


def test_multi_objective_results_are_a_pareto_front() -> None:
    study = _study(["minimize", "minimize"])
    counts = count_trials(study.trials)
    data = results.results_dict(study, counts, "sqlite:///x.db", None)
    assert "best_value" not in data
    assert {s["number"] for s in data["solutions"]} == {t.number for t in study.best_trials}
    assert results.progress_line(study, counts, float("inf")).endswith(
        f"pareto set {len(study.best_trials)}")


@pytest.mark.parametrize("directions", [["minimize"], ["minimize", "maximize"]])
def test_write_study_plots(tmp_path: Path, directions: list[str]) -> None:
    written = results.write_study_plots(_study(directions, IMPORTANCE_MIN_TRIALS),
                                        tmp_path / "plots")
    names = {p.name for p in written}
    if len(directions) == 1:
        assert names == {"optimization_history.png", "param_importances.png",
                         "parallel_coordinate.png", "slice.png", "intermediate_values.png"}
    else:  # the HTML report's figures, as PNG files
        assert {"pareto_front.png", "optimization_history_1.png",
                "param_importances_1.png"} <= names
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    few = results.write_study_plots(_study(directions), tmp_path / "few")  # importances: noise
    assert "param_importances.png" not in {p.name for p in few} and few


@pytest.mark.parametrize(("directions", "titles"), [
    (["minimize"], ["Optimization history", "Parameter importances", "Parallel coordinates",
                    "Slices", "Intermediate values", "Figure of the app"]),
    (["minimize", "maximize"], ["Pareto front", "History of objective 0",
                                "Parameter importances for objective 0",
                                "History of objective 1",
                                "Parameter importances for objective 1", "Figure of the app"]),
])
def test_the_html_report_inlines_plotly_once_and_draws_every_figure(
        tmp_path: Path, directions: list[str], titles: list[str]) -> None:
    extra = go.Figure(go.Scatter(x=[0.9, 0.95], y=[0.5, 0.7], name="app trace"))
    path = write_html_report(_study(directions, IMPORTANCE_MIN_TRIALS), tmp_path,
                             [("Figure of the app", extra)])
    text = path.read_text()
    # plotly.js in the file, once: the MLflow UI's sandboxed iframe (and an offline copy) loads
    # nothing from a CDN
    assert text.count("plotly.js v") == 1 and "<script src=" not in text
    sections = text.split("<section>")[1:]
    assert [s.count('class="plotly-graph-div"') for s in sections] == [1] * len(titles)
    for section, title in zip(sections, titles, strict=True):
        assert f'"title":{{"text":"{title}"' in section
    assert '"name":"app trace"' in sections[-1]
    assert write_html_report(optuna.create_study(), tmp_path / "empty") is None  # nothing drawn


def test_an_app_adds_figures_to_the_report_a_sweep_wrote(tmp_path: Path) -> None:
    written = write_html_report(_study(["minimize"]), tmp_path)
    before = written.read_text()
    first = go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name="first trace"))
    second = go.Figure(go.Bar(x=[1, 2], y=[3, 4], name="second trace"))
    assert add_to_html_report(tmp_path, [("First", first), ("Second", second)]) == written
    text = written.read_text()
    # Optuna's figures kept as drawn, the app's after them, plotly.js still once
    assert text.startswith(before.removesuffix("</body></html>"))
    assert text.count("plotly.js v") == 1 and text.endswith("</body></html>")
    sections = text.split("<section>")[1:]
    assert len(sections) == 7
    assert '"name":"first trace"' in sections[5] and '"name":"second trace"' in sections[6]
    assert add_to_html_report(tmp_path / "no_sweep", [("First", first)]) is None


def _told(outcomes: list[float | str]) -> optuna.Study:
    """Trials told in order: a value (complete), "pruned", "failed" or "running"; each with a
    run id `r<number>`, except a trial whose outcome is "no run"."""
    study = optuna.create_study()
    for outcome in outcomes:
        trial = study.ask()
        if outcome != "no run":
            trial.set_user_attr("mlflow_run_id", f"r{trial.number}")
        if isinstance(outcome, float):
            study.tell(trial, outcome)
        elif outcome in ("pruned", "failed"):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED if outcome == "pruned"
                       else optuna.trial.TrialState.FAIL)
        elif outcome == "no run":
            study.tell(trial, 0.5)
    return study


@pytest.mark.parametrize(("outcomes", "maximize", "ranked"), [
    ([0.3, 0.9, 0.1], False, ["r2", "r0", "r1"]),
    ([0.3, 0.9, 0.1], True, ["r1", "r0", "r2"]),
    # pruned after complete (no objective), failed and running left out
    (["pruned", 0.2, "failed", "running", 0.4, "pruned"], True, ["r4", "r1", "r0", "r5"]),
    ([0.3, "no run", 0.1], False, ["r2", "r0"]),  # a trial without a run has no link
    ([], False, []),
])
def test_trials_are_ranked_best_first_as_the_ui_orders_them(outcomes, maximize, ranked) -> None:
    assert results.ranked_runs(_told(outcomes), maximize) == ranked


COMPARED = results.COMPARED
SUMMARY = {"tracking_uri": "http://h:5000", "experiment_id": "1", "parent_run_id": "p"}


@pytest.mark.parametrize(("n", "compared", "said"), [
    (1, 0, None), (3, 3, None), (COMPARED, COMPARED, None),
    (COMPARED + 5, COMPARED, f"(the best {COMPARED} of {COMPARED + 5})"),
])
def test_the_compare_page_holds_the_best_trials_only(n, compared, said) -> None:
    runs = [f"run{i:04d}" for i in range(n)]
    lines = results.where_to_look(SUMMARY, runs).splitlines()
    page = [line for line in lines if line.startswith("  compare page")]
    assert len(page) == (compared > 1)
    if page:
        assert [r for r in runs if f"%22{r}%22" in page[0]] == runs[:compared]
        assert page[0].endswith(said) if said else "(the best" not in page[0]
