"""`hydra.sweeper.params` (Hydra override grammar) -> Optuna distributions.

Same mapping as Hydra's optuna sweeper:
  interval(a,b)                 FloatDistribution(a, b)
  int(interval(a,b))            IntDistribution(a, b)
  tag(log, interval(a,b))       FloatDistribution(a, b, log=True)  (IntDistribution if int(...))
  range(a,b,step=s)             IntDistribution(a, last, step=s) over a, a+s, ... < b (b itself
                                excluded, like Hydra's range and Hydra-optuna's grid sampler);
                                FloatDistribution(.., step=s) if any bound/step is a float
  choice(x,y,...) / x,y,...     CategoricalDistribution (lists/dicts allowed as choices)
  shuffle(range(...))           CategoricalDistribution of the range's values
  a plain value                 a fixed override, passed to every trial as written
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import format_value

GRAMMAR_HELP = (
    "an override-grammar expression: interval(a,b), int(interval(a,b)), "
    "tag(log, interval(a,b)), range(a,b,step=s), choice(x,y,...) or a plain value"
)


@dataclass(frozen=True)
class SearchSpace:
    """What every trial samples (`distributions`) and what it gets as written (`fixed`)."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> override line, verbatim
    sources: dict[str, str] = field(default_factory=dict)  # key -> config key named in errors
    exprs: dict[str, str] = field(default_factory=dict)  # key -> expression as the user wrote it
    choice_texts: dict[str, dict[Any, str]] = field(default_factory=dict)

    def override_for(self, name: str, value: Any) -> str:
        """`name=value` in override grammar for a sampled value."""
        texts = self.choice_texts.get(name)
        if texts is not None and _hashable(value) in texts:
            return f"{name}={texts[_hashable(value)]}"
        return f"{name}={format_value(value)}"


def distribution_from_override(override: Override) -> tuple[BaseDistribution, dict[Any, str]]:
    """A sweep override -> (distribution, {categorical value: override text}). Raises ValueError."""
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices: list[Any] = []
        texts: dict[Any, str] = {}
        for item in override.sweep_iterator():
            # Optuna stores str/int/float/bool/None; lists and dicts become their override text.
            text = format_value(item, interpolate=True)
            choice = text if isinstance(item, (list, dict)) else item
            if _hashable(choice) in texts:  # (1 and true are different choices)
                continue
            choices.append(choice)
            texts[_hashable(choice)] = text
        if not choices:
            raise ValueError("choice() needs at least one option")
        return CategoricalDistribution(choices), texts
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if "log" in value.tags:
            raise ValueError("tag(log, ...) needs interval(a,b); range(...) has a step")
        start, stop, step = value.start, value.stop, value.step
        if step is None or step <= 0 or start is None or stop is None or stop <= start:
            raise ValueError("range(a,b,step=s) needs a < b and s > 0 (b is excluded)")
        n_values = math.ceil((stop - start) / step - 1e-9)  # a, a+s, ... < b
        if any(isinstance(v, float) for v in (start, stop, step)):
            high = float(round(start + (n_values - 1) * step, 12))
            return FloatDistribution(float(start), high, step=float(step)), {}
        return IntDistribution(int(start), int(start + (n_values - 1) * step), step=int(step)), {}
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log = "log" in value.tags
        if value.start is None or value.end is None or value.end < value.start:
            raise ValueError("interval(a,b) needs a <= b")
        if log and value.start <= 0:
            raise ValueError("tag(log, interval(a,b)) needs a > 0")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log), {}
        return FloatDistribution(float(value.start), float(value.end), log=log), {}
    raise ValueError(f"{type(value).__name__} sweeps are not supported by this sweeper")


def build_search_space(params: Mapping[str, Any] | None, arguments: list[str]) -> SearchSpace:
    """`hydra.sweeper.params` then command-line overrides (later wins for the same key)."""
    parser = OverridesParser.create()
    space = SearchSpace()
    lines: list[tuple[str, str, Any]] = []
    for key, expr in (params or {}).items():
        text = expr if isinstance(expr, str) else format_value(expr)
        lines.append((f"hydra.sweeper.params.{key}", f"{key}={text}", expr))
    for line in arguments:
        key = line.split("=", 1)[0]
        lines.append((f"{key} (command-line override)", line, line.split("=", 1)[-1]))

    for source, line, expr in lines:
        try:
            override = parser.parse_override(line)
        except Exception as e:  # Hydra raises OverrideParseException or HydraException
            raise config_error(source, expr, GRAMMAR_HELP, str(e)) from None
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        space.choice_texts.pop(key, None)
        space.sources[key] = source
        space.exprs[key] = line.split("=", 1)[1] if "=" in line else line
        if not override.is_sweep_override():
            space.fixed[key] = line
            continue
        try:
            dist, texts = distribution_from_override(override)
        except Exception as e:
            raise config_error(source, expr, GRAMMAR_HELP, str(e)) from None
        space.distributions[key] = dist
        if texts:
            space.choice_texts[key] = texts
    return space


def same_override(key: str, a: str | None, b: str | None) -> bool:
    """Whether `key=a` and `key=b` give every trial the same: the same distribution or the
    same value, however written (`interval(1e-4,3e-2)` is `interval(0.0001, 0.03)`)."""
    if a is None or b is None or a == b:
        return a == b
    return _meaning(key, a) == _meaning(key, b)


def _meaning(key: str, text: str) -> Any:
    try:
        override = OverridesParser.create().parse_override(f"{key}={text}")
        if override.is_sweep_override():
            return distribution_from_override(override)[0]
        return override.value()
    except Exception:  # not the grammar (recorded by another version): the text itself
        return text


def stored_value(dist: BaseDistribution | None, value: Any) -> Any:
    """`value` as Optuna stores it for `dist`: a list or dict choice as its override text."""
    if isinstance(dist, CategoricalDistribution) and isinstance(value, (list, dict)):
        return format_value(value, interpolate=True)
    return value


def holds(dist: BaseDistribution, value: Any) -> bool:
    """Whether `dist` can hold `value` (an enqueued one, say)."""
    try:
        return bool(dist._contains(dist.to_internal_repr(stored_value(dist, value))))
    except Exception:  # another type altogether (a string for a float range, say)
        return False


def grid_choices(space: SearchSpace) -> dict[str, list[Any]]:
    """The GridSampler's search space: every param must be a choice or a stepped range."""
    grid: dict[str, list[Any]] = {}
    for name, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            n = round((dist.high - dist.low) / dist.step)
            grid[name] = [round(dist.low + i * dist.step, 12) for i in range(n + 1)]
        else:
            raise config_error(
                space.sources.get(name, f"hydra.sweeper.params.{name}"),
                space.exprs.get(name, str(dist)),
                "choice(...) or range(a,b,step=s) with the grid sampler",
            )
    return grid


def _hashable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, type(None))):
        return type(value).__name__, value
    return "repr", repr(value)
