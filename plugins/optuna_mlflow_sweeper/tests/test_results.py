"""What a sweep leaves behind (optimization_results.yaml layout, plots, progress line, its
closing lines), from real in-memory Optuna studies (the HTML report: test_html_report)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from toyapp import finished_study

from hydra_plugins.optuna_mlflow_sweeper._impl import results
from hydra_plugins.optuna_mlflow_sweeper._impl.html_report import IMPORTANCE_MIN_TRIALS
from hydra_plugins.optuna_mlflow_sweeper._impl.study import count_trials


def test_single_objective_results_and_progress_line() -> None:
    study = finished_study(["minimize"])
    counts = count_trials(study.trials)
    data = results.results_dict(study, counts, "sqlite:///x.db", {"parent_run_id": "abc"})
    assert data["best_value"] == study.best_value and data["best_params"] == study.best_params
    assert data["counts"] == {"complete": 4, "pruned": 1, "failed": 1, "running": 0, "total": 6}
    assert data["mlflow"]["parent_run_id"] == "abc"
    line = results.progress_line(study, counts, 20)
    assert line == (f"[optuna_mlflow] trials 6/20 (pruned 1, failed 1) "
                    f"best value={study.best_value:.6g} (trial {study.best_trial.number})")


def test_metric_names_name_the_objective_and_the_best_line_gives_params() -> None:
    study = finished_study(["minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_loss"])
    counts = count_trials(study.trials)
    assert f"best val_loss={study.best_value:.6g}" in results.progress_line(study, counts, 20)
    line = results.best_line(study, counts)
    assert line.startswith(f"best trial {study.best_trial.number}: val_loss=")
    assert all(f"{name}=" in line for name in study.best_params)
    assert "Pareto front" in results.best_line(finished_study(["minimize", "minimize"]), counts)


def test_multi_objective_results_are_a_pareto_front() -> None:
    study = finished_study(["minimize", "minimize"])
    counts = count_trials(study.trials)
    data = results.results_dict(study, counts, "sqlite:///x.db", None)
    assert "best_value" not in data
    assert {s["number"] for s in data["solutions"]} == {t.number for t in study.best_trials}
    assert results.progress_line(study, counts, float("inf")).endswith(
        f"pareto set {len(study.best_trials)}")


@pytest.mark.parametrize("directions", [["minimize"], ["minimize", "maximize"]])
def test_write_study_plots(tmp_path: Path, directions: list[str]) -> None:
    written = results.write_study_plots(finished_study(directions, IMPORTANCE_MIN_TRIALS),
                                        tmp_path / "plots")
    names = {p.name for p in written}
    if len(directions) == 1:
        assert names == {"optimization_history.png", "param_importances.png",
                         "parallel_coordinate.png", "slice.png", "intermediate_values.png"}
    else:  # the HTML report's figures, as PNG files
        assert {"pareto_front.png", "optimization_history_1.png",
                "param_importances_1.png"} <= names
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    few = results.write_study_plots(finished_study(directions), tmp_path / "few")  # noise
    assert "param_importances.png" not in {p.name for p in few} and few


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
