"""Settings that run but cannot do what they say: one warning line each, once, before the trials.

The checks are pure (sampler and pruner configs and the budget in, lines out): tested as tables.
One real sweep of the toy app, with workers, shows that the command prints them once.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from toyapp import XY, study, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl.advice import (
    importance_warning,
    pruner_warning,
    sampler_warning,
    setting_warnings,
)
from hydra_plugins.optuna_mlflow_sweeper.results import write_html_report

TPE = "optuna.samplers.TPESampler"


@pytest.mark.parametrize(("cfg", "n_trials", "warned"), [
    ({"_target_": TPE, "n_startup_trials": 10}, 6, True),  # quickstart before: TPE never ran
    ({"_target_": TPE, "n_startup_trials": 6}, 6, True),  # the 6th trial sees 5 finished
    ({"_target_": TPE, "n_startup_trials": 3}, 6, False),  # 3 TPE trials
    ({"_target_": TPE, "n_startup_trials": 10}, 20, False),
    ({"_target_": "optuna.samplers.GPSampler", "n_startup_trials": 10}, 10, True),
    ({"_target_": "optuna.samplers.RandomSampler", "seed": 0}, 2, False),  # no start-up
    (None, 2, False),
])
def test_a_sampler_whose_start_up_outlasts_the_budget_is_named(cfg, n_trials, warned) -> None:
    line = sampler_warning(cfg, n_trials)
    assert (line is not None) == warned
    if warned:
        assert "hydra.sweeper.sampler.n_startup_trials" in line and "\n" not in line
        assert cfg["_target_"].rpartition(".")[2] in line


MEDIAN = "optuna.pruners.MedianPruner"
SHA = "optuna.pruners.SuccessiveHalvingPruner"
HYPERBAND = "optuna.pruners.HyperbandPruner"


@pytest.mark.parametrize(("cfg", "n_trials", "needed"), [
    ({"_target_": MEDIAN, "n_startup_trials": 5}, 5, 6),  # never prunes
    ({"_target_": MEDIAN, "n_startup_trials": 5}, 6, None),
    ({"_target_": "optuna.pruners.PercentilePruner", "n_startup_trials": 2}, 2, 3),
    ({"_target_": SHA, "reduction_factor": 4}, 3, 4),
    ({"_target_": SHA, "reduction_factor": 4}, 4, None),
    ({"_target_": SHA, "reduction_factor": 2, "bootstrap_count": 4}, 4, 5),
    # Hyperband: floor(log_3(15 / 1)) + 1 = 3 brackets of 3
    ({"_target_": HYPERBAND, "min_resource": 1, "max_resource": 15, "reduction_factor": 3}, 8, 9),
    ({"_target_": HYPERBAND, "min_resource": 1, "max_resource": 15, "reduction_factor": 3}, 9,
     None),
    ({"_target_": HYPERBAND, "min_resource": 1, "max_resource": "auto", "reduction_factor": 3},
     2, 3),  # brackets unknown before the first trial: at least one
    ({"_target_": "optuna.pruners.NopPruner"}, 1, None),
    (None, 1, None),
])
def test_a_pruner_that_cannot_rank_its_first_rung_is_named(cfg, n_trials, needed) -> None:
    line = pruner_warning(cfg, n_trials)
    assert (line is not None) == (needed is not None)
    if needed is not None:
        assert line.startswith("hydra.sweeper.pruner: ") and "\n" not in line
        assert f"n_trials={n_trials}" in line
        assert str(needed - 1 if cfg["_target_"] in (MEDIAN, "optuna.pruners.PercentilePruner")
                   else needed) in line


@pytest.mark.parametrize(("n_trials", "warned"), [(1, True), (9, True), (10, False),
                                                  (float("inf"), False)])
def test_importances_from_fewer_than_ten_trials_are_called_noise(n_trials, warned) -> None:
    assert (importance_warning(n_trials) is not None) == warned


def test_an_unlimited_budget_warns_of_nothing() -> None:
    assert setting_warnings({"_target_": TPE, "n_startup_trials": 10},
                            {"_target_": MEDIAN, "n_startup_trials": 5}, float("inf")) == []


@pytest.mark.parametrize(("n_trials", "ranked"), [(4, False), (10, True)])
def test_importances_from_few_trials_are_left_out_and_the_report_says_so(
        tmp_path: Path, n_trials: int, ranked: bool) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    study.optimize(lambda t: t.suggest_float("x", -5, 5) ** 2 + t.suggest_int("y", 0, 3),
                   n_trials=n_trials)
    sections = write_html_report(study, tmp_path).read_text().split("<section>")[1:]
    drawn = ['"text":"Parameter importances"' in section for section in sections]
    left_out = [section for section in sections if "Left out." in section]
    assert any(drawn) == ranked and len(left_out) == (not ranked)
    if not ranked:
        assert f"from {n_trials} finished trial(s) would be noise" in left_out[0]


@pytest.mark.slow
def test_the_sweep_warns_once_before_its_trials(tmp_path: Path, env: dict[str, str]) -> None:
    """Two workers (each prepares the sweep too): still one line per setting, before trial 0."""
    proc = sweep(tmp_path, env, *XY, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                 "hydra/sweeper/pruner=median", "steps=3", "hydra.sweeper.mlflow.enabled=false")
    shown = proc.stdout + proc.stderr
    for text in ("n_startup_trials=10 >= hydra.sweeper.n_trials=4: TPESampler is never used",
                 "MedianPruner waits for n_startup_trials=5 finished trials",
                 "parameter importances need 10 finished trials"):
        assert shown.count(text) == 1, shown[-4000:]
    assert len(study(tmp_path).trials) == 4
