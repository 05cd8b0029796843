"""One trial composed into the app config and checked by the app, before anything is created.

A sampled trial's overrides must compose (a key the app does not have is named by its source: a
command-line override, `hydra.sweeper.params`, the custom search space), and the app's own check
(`hydra.sweeper.validate`) must accept them at each end and choice of every range: a range the
app refuses in part is named now, not when half the trials fail.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import optuna
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError, config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.jobs import trial_overrides
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import SearchSpace
from hydra_plugins.optuna_mlflow_sweeper._impl.study import optuna_quiet


def check_composes(
    config: DictConfig, loader: Any, space: SearchSpace, custom: Any, custom_path: str | None,
    app_check: Callable[[DictConfig], Any] | None = None, app_check_path: str | None = None,
) -> None:
    """Compose the app config for one sampled trial and let the app check it; name the key
    that breaks composition."""
    with optuna_quiet():
        dry = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        trial = dry.ask(space.distributions)
    try:
        lines = trial_overrides(trial, space, custom, config)
    except Exception as e:
        raise config_error("hydra.sweeper.custom_search_space", custom_path,
                           "fn(cfg, trial) -> dict | None", f"{type(e).__name__}: {e}") from None
    composed, error = _compose(config, loader, lines)
    if composed is not None:
        _check_added_keys(config, loader, space)
        check_ends(config, loader, space, custom, trial, lines, composed, app_check)
        if app_check is not None:  # the app's own error as it is (it names the app's key)
            try:
                app_check(composed)
            except SweeperConfigError:
                raise
            except Exception as e:
                raise config_error("hydra.sweeper.validate", app_check_path,
                                   "fn(cfg) accepting the app config",
                                   f"{type(e).__name__}: {e}") from None
        return
    fixed = list(space.fixed.values())
    if _compose(config, loader, fixed)[1] is not None:
        culprits = [(key, [line]) for key, line in space.fixed.items()]
    else:
        culprits = [(key, [*fixed, space.override_for(key, trial.params[key])])
                    for key in space.distributions]
    for key, candidate in culprits:
        culprit_error = _compose(config, loader, candidate)[1]
        if culprit_error is not None:
            raise config_error(
                space.sources[key], space.exprs.get(key),
                f"an override of a key in the composed app config (prefix '+' to add "
                f"'{key.lstrip('+~')}')", culprit_error,
            )
    raise config_error("hydra.sweeper.custom_search_space", custom_path,
                       "overrides of keys in the composed app config", error)


def check_ends(
    config: DictConfig, loader: Any, space: SearchSpace, custom: Any, sampled: optuna.Trial,
    lines: list[str], composed: DictConfig, app_check: Callable[[DictConfig], Any] | None,
) -> None:
    """Each param of the sampled trial (the custom search space's too) at each end of its range,
    and at each of its choices, the others as sampled: checked by the app, so that
    `interval(0.001,50)` for a rate the app takes below 10 is named now, not when half the
    trials fail. Each end alone, so that an error other than the sampled trial's own is that
    value's doing; applied to the sampled trial's composed config (a config group's choice is
    composed anew)."""
    groups = set(OmegaConf.select(composed, "hydra.runtime.choices", default=None) or {})
    sampled_error = _app_error(composed, app_check)
    for name, dist in sampled.distributions.items():
        ends = dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        for end in ends:
            if end == sampled.params.get(name):
                continue
            with optuna_quiet():
                sampled.study.sampler = _Pinned({**sampled.params, name: end})
                trial = sampled.study.ask(space.distributions)
            now = trial_overrides(trial, space, custom, config)
            changed = OverridesParser.create().parse_overrides(
                [_forced(line) for line in now if line not in lines])
            if any(o.key_or_group.lstrip("+~") in groups for o in changed):
                cfg, error = _compose(config, loader, now)
            else:
                cfg, error = copy.deepcopy(composed), None
                try:
                    ConfigLoaderImpl._apply_overrides_to_config(changed, cfg)
                except Exception as e:
                    error = f"{type(e).__name__}: {e}"
            if error is None:
                error = _app_error(cfg, app_check)
            if error is not None and error != sampled_error:
                source = space.sources.get(name, "hydra.sweeper.custom_search_space")
                raise config_error(source, space.exprs.get(name, f"{name}: {dist}"),
                                   f"a range the app accepts at every end and choice (at "
                                   f"{name}={end!r}: {' '.join(error.split())})")


def _forced(line: str) -> str:
    """`+key=value` as `++key=value`: applied to a config the sampled trial's `+key` already
    added, an append would fail (Hydra: 'An item is already at key')."""
    return "+" + line if line.startswith("+") and not line.startswith("++") else line


def _app_error(cfg: DictConfig, app_check: Callable[[DictConfig], Any] | None) -> str | None:
    try:
        if app_check is not None:
            app_check(cfg)
        return None
    except Exception as e:
        return str(e) if isinstance(e, SweeperConfigError) else f"{type(e).__name__}: {e}"


class _Pinned(optuna.samplers.RandomSampler):
    """RandomSampler(seed=0), except for the params in `values` their distribution holds."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(seed=0)
        self.values = values

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        if name in self.values and dist._contains(dist.to_internal_repr(self.values[name])):
            return self.values[name]
        return super().sample_independent(study, trial, name, dist)


def _check_added_keys(config: DictConfig, loader: Any, space: SearchSpace) -> None:
    """`+train.nonexistent=choice(1,2)`: Hydra adds the key even to a typed (structured) config
    node, whose schema says what keys exist; the app would never read it. Name it now."""
    added = [key for key in [*space.fixed, *space.distributions]
             if key.startswith("+") and not key.startswith("++")]
    if not added:
        return
    base = loader.load_sweep_config(config, [])
    for key in added:
        parent_path, _, leaf = key.lstrip("+").rpartition(".")
        parent = OmegaConf.select(base, parent_path) if parent_path else base
        schema = OmegaConf.get_type(parent) if isinstance(parent, DictConfig) else None
        if schema is not None and dataclasses.is_dataclass(schema) and leaf not in parent:
            fields = ", ".join(f.name for f in dataclasses.fields(schema))
            raise config_error(space.sources[key], space.exprs.get(key, key),
                               f"a key {schema.__name__} has ({fields}): '{leaf}' is not one")


def _compose(config: DictConfig, loader: Any,
             overrides: list[str]) -> tuple[DictConfig | None, str | None]:
    """(the composed job config, None), or (None, what went wrong)."""
    try:
        return loader.load_sweep_config(config, list(overrides)), None
    except Exception as e:
        return None, f"{type(e).__name__}: {e}".strip()
