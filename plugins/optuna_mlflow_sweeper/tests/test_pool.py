"""The parent's progress display of a sweep whose trials run in worker processes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hydra_plugins.optuna_mlflow_sweeper._impl.pool import Watcher


def started(study: optuna.Study, x: float) -> optuna.Trial:
    """A trial as a worker starts it: asked, its params and overrides recorded."""
    trial = study.ask({"x": optuna.distributions.FloatDistribution(x, x)})
    trial.set_user_attr("overrides", [f"x={x}"])
    return trial


@pytest.mark.parametrize("finished_before_the_look", [False, True])
def test_every_trial_of_this_command_gets_its_line_once(tmp_path: Path, capsys,
                                                        finished_before_the_look: bool) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    study.tell(started(study, 1.0), 1.0)  # an earlier command's trial
    watch = Watcher(study, n_trials=3, progress=True)
    trial = started(study, 2.5)
    if finished_before_the_look:  # a quick trial on a loaded machine: never seen running
        study.tell(trial, 0.5)
    assert watch() and watch()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " trial " in ln]
    assert lines == [f"[optuna_mlflow] trial {trial.number}: x=2.5"]
