"""The sweep's closing lines (its trials ranked as the MLflow UI shows them, the links), and
its failures in one line."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from toyapp import study, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl.core import COMPARED, _where, ranked_runs


def _study(outcomes: list[float | str]) -> optuna.Study:
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
            study.tell(trial, state=TrialState.PRUNED if outcome == "pruned" else TrialState.FAIL)
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
    assert ranked_runs(_study(outcomes), maximize) == ranked


SUMMARY = {"tracking_uri": "http://h:5000", "experiment_id": "1", "parent_run_id": "p"}


@pytest.mark.parametrize(("n", "compared", "said"), [
    (1, 0, None), (3, 3, None), (COMPARED, COMPARED, None),
    (COMPARED + 5, COMPARED, f"(the best {COMPARED} of {COMPARED + 5})"),
])
def test_the_compare_page_holds_the_best_trials_only(n, compared, said) -> None:
    runs = [f"run{i:04d}" for i in range(n)]
    lines = _where(SUMMARY, runs).splitlines()
    page = [line for line in lines if line.startswith("  compare page")]
    assert len(page) == (compared > 1)
    if page:
        assert [r for r in runs if f"%22{r}%22" in page[0]] == runs[:compared]
        assert page[0].endswith(said) if said else "(the best" not in page[0]


@pytest.mark.parametrize(("overrides", "says"), [
    (["x=choice(1,2)", "hydra.sweeper.enqueue=[{x:3}]"], "'hydra.sweeper.enqueue.0.x'"),
    pytest.param(["x=interval(-5,5)", "fail=true", "hydra.sweeper.max_failure_rate=0.1"],
                 "more than hydra.sweeper.max_failure_rate=0.1", marks=pytest.mark.slow),
    (["x=interval(-5,5)", "hydra.sweep.dir=/proc/no-such-place"], "'hydra.sweep.dir'"),
])
def test_clean_failures_are_one_line_without_a_traceback(
    tmp_path: Path, env: dict[str, str], overrides: list[str], says: str
) -> None:
    proc = sweep(tmp_path, env, "hydra.sweeper.n_trials=2", *overrides, ok=False)
    assert proc.returncode != 0
    assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    storage = tmp_path / "sweep" / "optuna.db"
    if storage.exists() and "max_failure_rate" not in says:
        assert not study(tmp_path).trials  # refused before any trial
