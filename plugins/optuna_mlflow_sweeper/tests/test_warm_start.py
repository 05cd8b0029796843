"""Warm starts: which earlier trials seed a new study, and which are left out (tables)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from toyapp import NO_MLFLOW, study, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl.warm_start import (
    SEEDED_FROM_ATTR,
    best_trials,
    fitting_params,
)
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import free_port

OLD_SPACE = {"units": IntDistribution(8, 256, log=True), "lr": FloatDistribution(1e-4, 1e-1),
             "act": CategoricalDistribution(["relu", "tanh"])}


def trial(number: int, values: list[float] | None, state: TrialState = TrialState.COMPLETE,
          **params: object):
    t = create_trial(state=state, values=values, params=params or {"units": 32},
                     distributions={k: OLD_SPACE[k] for k in (params or {"units": 32})})
    t.number = number
    return t


TRIALS = [trial(0, [0.3]), trial(1, [0.1]), trial(2, None, TrialState.PRUNED),
          trial(3, [0.2]), trial(4, None, TrialState.FAIL)]


def in_a_study(trials, directions):
    kept = optuna.create_study(directions=directions)
    kept.add_trials(trials)  # numbered 0, 1, ... as they were
    return kept


@pytest.mark.parametrize(("directions", "top_k", "numbers"), [
    (["minimize"], 2, [1, 3]),
    (["maximize"], 2, [0, 3]),
    (["minimize"], 10, [1, 3, 0]),  # only COMPLETE trials
    (["minimize"], 0, []),
])
def test_best_trials_by_value(directions, top_k, numbers) -> None:
    assert [t.number for t in best_trials(in_a_study(TRIALS, directions), top_k)] == numbers


def test_best_trials_of_several_objectives_put_the_pareto_front_first() -> None:
    trials = [trial(0, [1.0, 5.0]), trial(1, [2.0, 6.0]), trial(2, [3.0, 1.0]),
              trial(3, [0.5, 9.0])]
    # front: 0, 2, 3 (1 is dominated by 0); then the rest by the first objective
    both = in_a_study(trials, ["minimize", "minimize"])
    assert [t.number for t in best_trials(both, 4)] == [0, 2, 3, 1]
    assert [t.number for t in best_trials(both, 2)] == [0, 2]


NEW_SPACE = {"units": IntDistribution(8, 128, log=True), "lr": FloatDistribution(1e-4, 1e-1),
             "act": CategoricalDistribution(["relu", "gelu"]), "dropout": FloatDistribution(0, .5)}


@pytest.mark.parametrize(("params", "entry", "misfit"), [
    ({"units": 64, "lr": 0.01}, {"units": 64, "lr": 0.01}, None),
    ({"units": 64, "act": "relu"}, {"units": 64, "act": "relu"}, None),
    ({"units": 200, "lr": 0.01}, None, "trial 0: units=200 outside the new search space"),
    ({"units": 64, "act": "tanh"}, None, "trial 0: act='tanh' outside the new search space"),
])
def test_fitting_params_keep_what_the_new_space_holds(params, entry, misfit) -> None:
    entries, misfits = fitting_params([trial(0, [0.1], **params)], NEW_SPACE)
    assert entries == ([entry] if entry else [])
    assert misfits == ([misfit] if misfit else [])


def test_params_the_new_space_lacks_are_dropped() -> None:
    units_only = {"units": IntDistribution(8, 128)}
    entries, misfits = fitting_params([trial(7, [0.1], units=16, lr=0.001)], units_only)
    assert entries == [{"units": 16}] and misfits == []
    entries, misfits = fitting_params([trial(7, [0.1], lr=0.001)], units_only)
    assert entries == [] and misfits == ["trial 7: none of its params is in the new search space"]


@pytest.mark.slow
def test_a_warm_started_study_first_runs_the_earlier_best_that_fit(
    tmp_path: Path, env: dict[str, str]
) -> None:
    sweep(tmp_path, env, "x=interval(-5,5)", "hydra.sweeper.n_trials=4",
          "hydra.sweeper.study_name=early", "hydra.sweeper.sampler.seed=0", NO_MLFLOW)
    early = study(tmp_path, "early")
    best = best_trials(early, 3)
    low, high = -5.0, sorted(t.params["x"] for t in best)[1]  # leaves the largest x out
    proc = sweep(tmp_path, env, f"x=interval({low},{high})", "hydra.sweeper.n_trials=3",
                 "hydra.sweeper.study_name=late", "hydra.sweeper.warm_start.study_name=early",
                 "hydra.sweeper.warm_start.top_k=3", NO_MLFLOW)
    late = study(tmp_path, "late")
    fit = [t for t in best if t.params["x"] <= high]
    assert len(fit) == 2
    assert [t.params["x"] for t in late.trials[:2]] == [t.params["x"] for t in fit]
    left_out = next(t for t in best if t.params["x"] > high)
    assert f"trial {left_out.number}: x=" in proc.stdout + proc.stderr + _logs(tmp_path)
    seeded = late.user_attrs[SEEDED_FROM_ATTR]
    assert seeded["study_name"] == "early" and seeded["trials"] == [t.number for t in fit]
    # resuming does not enqueue them again
    sweep(tmp_path, env, f"x=interval({low},{high})", "hydra.sweeper.n_trials=4",
          "hydra.sweeper.study_name=late", "hydra.sweeper.warm_start.study_name=early",
          "hydra.sweeper.warm_start.top_k=3", NO_MLFLOW)
    xs = [t.params["x"] for t in study(tmp_path, "late").trials]
    assert len(xs) == 4 and all(xs.count(t.params["x"]) == 1 for t in fit)


@pytest.mark.parametrize(("storage", "key"), [
    (None, "hydra.sweeper.warm_start.study_name"),  # this sweep's own (new) storage
    ("sqlite:///{tmp}/nosuch.db", "hydra.sweeper.warm_start.study_name"),  # no such file
    pytest.param("postgresql://u:pw-1234@127.0.0.1:{port}/optuna",
                 "cannot reach the Optuna storage", marks=pytest.mark.slow),
])
def test_a_warm_start_from_a_study_that_is_not_there_is_one_line_and_creates_nothing(
    tmp_path: Path, env: dict[str, str], storage: str | None, key: str
) -> None:
    given = ([f"hydra.sweeper.warm_start.storage="
              f"{storage.format(tmp=tmp_path, port=free_port())}"] if storage else [])
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = sweep(tmp_path, env, "x=interval(-5,5)", "hydra.sweeper.n_trials=2",
                 "hydra.sweeper.warm_start.study_name=nosuch", *given, ok=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert key in proc.stderr and "pw-1234" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no sweep folder, no store


def _logs(tmp_path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
