"""Hydra's override grammar -> Optuna distributions, the grid's choices, the errors that name a
bad expression's key: pure functions, tested as tables."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError as ConfigError
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import directions
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import build_search_space, grid_choices


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


def test_directions() -> None:
    assert directions("maximize") == ["maximize"]
    assert directions(["minimize", "MAXIMIZE"]) == ["minimize", "maximize"]
    with pytest.raises(ConfigError, match="hydra.sweeper.direction"):
        directions("up")
