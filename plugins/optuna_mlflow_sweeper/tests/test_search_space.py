"""Unit tests of the optuna_mlflow sweeper's pure parts: grammar -> distributions, override text,
trial outcomes, budget counting. No subprocesses (see test_worker.py for real sweeps)."""

from __future__ import annotations

import math

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError as ConfigError
from hydra_plugins.optuna_mlflow_sweeper._impl.jobs import DIVERGED, has_key, outcome
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import (
    env_override,
    format_value,
    override,
    quote,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import directions
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import build_search_space, grid_choices
from hydra_plugins.optuna_mlflow_sweeper._impl.study import count_trials
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("interval(0,1)", FloatDistribution(0.0, 1.0)),
        ("interval(1,10)", FloatDistribution(1.0, 10.0)),  # interval() is float, as in Hydra
        ("int(interval(1,10))", IntDistribution(1, 10)),
        ("tag(log, interval(1e-4,1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
        ("tag(log, int(interval(8,256)))", IntDistribution(8, 256, log=True)),
        # range() excludes its stop, as in Hydra's grammar (and Hydra-optuna's grid sampler)
        ("range(16,128,step=16)", IntDistribution(16, 112, step=16)),
        ("range(1,10,step=4)", IntDistribution(1, 9, step=4)),
        ("range(0,3)", IntDistribution(0, 2)),
        ("range(1,8)", IntDistribution(1, 7)),
        ("range(0.1,0.5,step=0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
        ("range(0,5,step=0.5)", FloatDistribution(0.0, 4.5, step=0.5)),
        ("choice(relu,tanh)", CategoricalDistribution(["relu", "tanh"])),
        ("relu,tanh", CategoricalDistribution(["relu", "tanh"])),
        ("choice(1,2.5,true)", CategoricalDistribution([1, 2.5, True])),
        ("shuffle(range(1,4))", CategoricalDistribution([1, 2, 3])),
    ],
)
def test_grammar_maps_to_optuna_distributions(expr: str, expected: object) -> None:
    space = build_search_space({"a.b": expr}, [])
    dist = space.distributions["a.b"]
    if isinstance(expected, CategoricalDistribution):
        assert isinstance(dist, CategoricalDistribution)
        assert sorted(map(str, dist.choices)) == sorted(map(str, expected.choices))
    else:
        assert dist == expected
    assert space.exprs["a.b"] == expr


def test_plain_values_are_fixed_and_command_line_wins() -> None:
    space = build_search_space(
        {"x": "interval(0,1)", "y": 3, "z": "abc"}, ["x=0.5", "+extra=[1,2]", "w=choice(a,b)"]
    )
    assert set(space.distributions) == {"w"}
    assert space.fixed == {"y": "y=3", "z": "z=abc", "x": "x=0.5", "+extra": "+extra=[1,2]"}
    assert space.sources["x"] == "x (command-line override)"
    assert space.sources["y"] == "hydra.sweeper.params.y"


def test_list_and_dict_choices_are_categorical_over_override_text() -> None:
    space = build_search_space({"model.hidden": "choice([64],[64,32],{units:8})"}, [])
    dist = space.distributions["model.hidden"]
    assert dist.choices == ("[64]", "[64,32]", "{units:8}")
    line = space.override_for("model.hidden", "[64,32]")
    assert line == "model.hidden=[64,32]"
    assert OverridesParser.create().parse_override(line).value() == [64, 32]


@pytest.mark.parametrize(
    ("expr", "detail"),
    [
        ("interval(0,", "no viable alternative"),
        ("interval(5,1)", "a <= b"),
        ("tag(log, interval(0,1))", "a > 0"),
        ("tag(log, range(1,5))", "needs interval"),
        ("range(5,1)", "a < b"),
        ("range(1,1)", "a < b"),
    ],
)
def test_bad_expressions_name_the_key(expr: str, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_search_space({"model.lr": expr}, [])
    message = str(info.value)
    assert "hydra.sweeper.params.model.lr" in message
    assert expr in message
    assert detail in message


def test_grid_choices_from_choices_and_ranges() -> None:
    space = build_search_space({"u": "range(16,64,step=16)", "a": "choice(relu,tanh)",
                                "f": "range(0.1,0.4,step=0.1)", "seed": "range(0, 3)"}, [])
    assert grid_choices(space) == {"u": [16, 32, 48], "a": ["relu", "tanh"],
                                   "f": [0.1, 0.2, 0.3], "seed": [0, 1, 2]}
    with pytest.raises(ConfigError, match="hydra.sweeper.params.x"):
        grid_choices(build_search_space({"x": "interval(0,1)"}, []))


@pytest.mark.parametrize(
    "text",
    ["it's", "a\\b", "a\\", "x\\'y", "${foo}", "a,b", "a=b", "", " x ", "1", "true", "null",
     "postgresql://u:p@ss'w@h/db", "a\\${x}"],
)
def test_quote_round_trips_through_hydra_and_omegaconf(text: str) -> None:
    value = OverridesParser.create().parse_override(f"k={quote(text)}").value()
    cfg = OmegaConf.create({"k": None})
    cfg.k = value
    assert cfg.k == text


@pytest.mark.parametrize(
    "value",
    [None, True, 3, 2.5, 1e-5, "relu", "1", "a b", [1, "a", {"units": 64, "act": "relu"}],
     {"a": [1, 2]}, []],
)
def test_format_value_round_trips(value: object) -> None:
    assert OverridesParser.create().parse_override(override("k", value)).value() == value


def test_env_override_is_one_force_add_of_quoted_values() -> None:
    line = env_override({"A_B": "sqlite:////tmp/x y/optuna.db", "C": "it's"})
    assert line.startswith("++hydra.job.env_set={")
    assert OverridesParser.create().parse_override(line).value() == {
        "A_B": "sqlite:////tmp/x y/optuna.db", "C": "it's"}
    assert format_value(float("nan")) == "nan"


def _ret(value: object, status: JobStatus) -> JobReturn:
    ret = JobReturn()
    ret._return_value = value
    ret.status = status
    return ret


def test_outcomes_of_jobs() -> None:
    assert outcome(_ret(0.5, JobStatus.COMPLETED), 1) == (TrialState.COMPLETE, [0.5], None)
    assert outcome(_ret([1, 2], JobStatus.COMPLETED), 2) == (TrialState.COMPLETE, [1.0, 2.0], None)
    assert outcome(_ret(math.nan, JobStatus.COMPLETED), 1) == (TrialState.FAIL, None, DIVERGED)
    assert outcome(_ret(math.inf, JobStatus.COMPLETED), 1)[2] == DIVERGED
    pruned = _ret(optuna.TrialPruned("pruned at step 2"), JobStatus.FAILED)
    assert outcome(pruned, 1) == (TrialState.PRUNED, None, None)
    failed = outcome(_ret(RuntimeError("boom"), JobStatus.FAILED), 1)
    assert failed == (TrialState.FAIL, None, "RuntimeError: boom")
    assert "invalid return value" in outcome(_ret("abc", JobStatus.COMPLETED), 1)[2]
    assert "expected 2 floats" in outcome(_ret(1.0, JobStatus.COMPLETED), 2)[2]


def test_budget_counts_running_and_unretried_failures() -> None:
    def trial(number: int, state: TrialState, history: list[int] | None = None):
        return optuna.trial.FrozenTrial(
            number=number, state=state, value=1.0 if state == TrialState.COMPLETE else None,
            datetime_start=None, datetime_complete=None, params={}, distributions={},
            user_attrs={}, system_attrs={"retry_history": history} if history else {},
            intermediate_values={}, trial_id=number, values=None,
        )

    counts = count_trials([
        trial(0, TrialState.COMPLETE), trial(1, TrialState.FAIL), trial(2, TrialState.FAIL),
        trial(3, TrialState.RUNNING), trial(4, TrialState.PRUNED),
        trial(5, TrialState.WAITING, history=[2]),  # retry of 2: 2 does not count
    ])
    assert (counts.complete, counts.pruned, counts.failed, counts.running) == (1, 1, 1, 1)
    assert counts.used == 4 and counts.waiting == 1


def test_mask_url_hides_passwords() -> None:
    assert mask_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"
    assert mask_url("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"


def test_directions_and_has_key() -> None:
    assert directions("maximize") == ["maximize"]
    assert directions(["minimize", "MAXIMIZE"]) == ["minimize", "maximize"]
    with pytest.raises(ConfigError, match="hydra.sweeper.direction"):
        directions("up")
    cfg = OmegaConf.create({"model": {"hidden": [{"units": 1}], "lr": "???"}})
    assert has_key(cfg, "model.hidden.0.units") and has_key(cfg, "model.lr")
    assert not has_key(cfg, "model.nope") and not has_key(cfg, "model.hidden.1")
