"""Python values -> Hydra override text, and back through Hydra's own parser: every value a
trial's override carries round-trips exactly."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import (
    env_override,
    format_value,
    override,
    quote,
)


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
