"""What a sweep shows on the terminal: a trial's line (a table), and the launchers' and the
libraries' INFO records dropped while a sweep runs, their warnings kept, everything put back."""

from __future__ import annotations

import logging

import pytest
from hydra._internal.core_plugins.basic_launcher import BasicLauncher

from hydra_plugins.optuna_mlflow_sweeper._impl.console import sweep_console, trial_line

LAUNCHER = "hydra._internal.core_plugins.basic_launcher"


@pytest.mark.parametrize(("number", "params", "retry_of", "line"), [
    (3, {"x": 1.25, "y": -0.5}, None, "[optuna_mlflow] trial 3: x=1.25 y=-0.5"),
    (0, {"lr": 0.0012345678, "units": 64}, None, "[optuna_mlflow] trial 0: lr=0.001235 units=64"),
    (7, {"act": "relu"}, 2, "[optuna_mlflow] trial 7 (retry of trial 2): act=relu"),
    (1, {}, None, "[optuna_mlflow] trial 1"),  # a custom search space that suggests nothing
])
def test_a_trials_line_says_what_it_tries(number, params, retry_of, line) -> None:
    assert trial_line(number, params, retry_of) == line


@pytest.mark.parametrize(("progress", "shown"), [
    (True, ["launcher warning", "sweeper info", "mlflow info"]),
    (False, ["launcher warning"]),
])
def test_while_a_sweep_runs_infos_are_dropped_and_warnings_kept(
    caplog: pytest.LogCaptureFixture, progress: bool, shown: list[str]
) -> None:
    loggers = {name: logging.getLogger(name) for name in
               (LAUNCHER, "hydra_plugins.optuna_mlflow_sweeper", "mlflow")}
    before = {name: logger.level for name, logger in loggers.items()}
    with caplog.at_level(logging.INFO), sweep_console(progress, BasicLauncher()):
        loggers[LAUNCHER].info("launcher info")
        loggers[LAUNCHER].warning("launcher warning")
        loggers["hydra_plugins.optuna_mlflow_sweeper"].info("sweeper info")
        loggers["mlflow"].info("mlflow info")
    assert [r.getMessage() for r in caplog.records] == shown
    assert {name: logger.level for name, logger in loggers.items()} == before
    assert not loggers[LAUNCHER].filters
