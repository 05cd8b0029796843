"""Checks that run before the first trial; each error names the offending `hydra.sweeper.*` key."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import SearchSpace, grid_choices

DIRECTIONS = ("minimize", "maximize")
# samplers whose optional dependency is only imported when they first sample
_SAMPLER_NEEDS = {"CmaEsSampler": ("cmaes",), "GPSampler": ("torch", "scipy")}


def plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def directions(direction: Any) -> list[str]:
    value = plain(direction)
    items = value if isinstance(value, list) else [value]
    names = [getattr(d, "name", d) for d in items]
    if not names or any(not isinstance(n, str) or n.lower() not in DIRECTIONS for n in names):
        raise config_error("hydra.sweeper.direction", value, "minimize, maximize or a list of them")
    return [n.lower() for n in names]


def metric_names(names: Any, directions: list[str]) -> list[str] | None:
    value = plain(names)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if len(items) != len(directions) or not all(isinstance(n, str) and n for n in items):
        raise config_error("hydra.sweeper.metric_names", value,
                           f"null or {len(directions)} name(s), one per direction {directions}")
    return items


def check_numbers(sweeper: Any) -> None:
    checks: list[tuple[str, Any, bool, str]] = [
        ("n_trials", sweeper.n_trials,
         sweeper.n_trials is None or (_int(sweeper.n_trials) and sweeper.n_trials >= 1),
         "an integer >= 1"),
        ("n_jobs", sweeper.n_jobs, _int(sweeper.n_jobs) and sweeper.n_jobs >= 1,
         "an integer >= 1"),
        ("max_failure_rate", sweeper.max_failure_rate,
         isinstance(sweeper.max_failure_rate, (int, float)) and 0 <= sweeper.max_failure_rate <= 1,
         "a number in [0, 1]"),
        ("timeout", sweeper.timeout, sweeper.timeout is None or sweeper.timeout > 0,
         "null or seconds > 0"),
        ("heartbeat_interval", sweeper.heartbeat_interval,
         sweeper.heartbeat_interval is None or sweeper.heartbeat_interval >= 1,
         "null or seconds >= 1"),
        ("grace_period", sweeper.grace_period,
         sweeper.grace_period is None or sweeper.grace_period >= 1, "null or seconds >= 1"),
        ("max_retry", sweeper.max_retry, _int(sweeper.max_retry) and sweeper.max_retry >= 0,
         "an integer >= 0"),
        ("gpus", sweeper.gpus, sweeper.gpus is None or all(
            str(g).strip() and "," not in str(g) for g in sweeper.gpus),
         "null, [] or a list of device ids (CUDA_VISIBLE_DEVICES entries, one per item)"),
    ]
    for key, value, ok, allowed in checks:
        if not ok:
            raise config_error(f"hydra.sweeper.{key}", value, allowed)


def enqueue_entries(enqueue: Any) -> list[dict[str, Any]]:
    value = plain(enqueue) or []
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise config_error("hydra.sweeper.enqueue", value, "a list of {override_key: value} dicts")
    return [dict(e) for e in value]


def custom_search_space(path: str | None) -> Callable[..., Any] | None:
    return _function("hydra.sweeper.custom_search_space", path,
                     "a dotted path to fn(cfg, trial) -> dict | None")


def app_validate(path: str | None) -> Callable[..., Any] | None:
    """The app's check of its composed config (`hydra.sweeper.validate`), if any."""
    return _function("hydra.sweeper.validate", path, "a dotted path to fn(cfg) that raises on "
                     "a bad app config")


def _function(key: str, path: str | None, allowed: str) -> Callable[..., Any] | None:
    if not path:
        return None
    from hydra.utils import get_method

    try:
        return get_method(path)
    except Exception as e:
        raise config_error(key, path, allowed, str(e)) from None


def make_sampler(config: Any, space: SearchSpace) -> tuple[Any, int | None]:
    """Instantiate the sampler config; the grid sampler gets the grid (and caps n_trials)."""
    from hydra.utils import instantiate

    cfg = plain(config) or {"_target_": "optuna.samplers.TPESampler"}
    target = str(cfg.get("_target_", ""))
    for module in _SAMPLER_NEEDS.get(target.rpartition(".")[2], ()):
        if importlib.util.find_spec(module) is None:
            raise config_error("hydra.sweeper.sampler", target, f"a sampler whose dependencies "
                               f"are installed ('{module}' is missing: pip install {module})")
    grid_size = None
    if target.endswith("GridSampler"):
        grid = cfg.pop("search_space", None) or grid_choices(space)
        cfg.pop("_partial_", None)
        cfg["search_space"] = grid
        grid_size = functools.reduce(lambda n, v: n * len(v), grid.values(), 1)
    try:
        sampler = instantiate(cfg, _convert_="all")
    except Exception as e:
        raise config_error("hydra.sweeper.sampler", cfg.get("_target_"), "an optuna sampler config",
                           str(e).splitlines()[0]) from None
    if isinstance(sampler, functools.partial):
        sampler = sampler()
    return sampler, grid_size


def make_pruner(config: Any) -> tuple[Any, dict[str, Any] | None]:
    """(pruner or None, its config as a plain dict for the trial side)."""
    cfg = plain(config)
    if not cfg:
        return None, None
    from hydra.utils import instantiate

    try:
        return instantiate(cfg, _convert_="all"), cfg
    except Exception as e:
        raise config_error("hydra.sweeper.pruner", cfg.get("_target_"), "an optuna pruner config",
                           str(e).splitlines()[0]) from None


def has_key(cfg: DictConfig, dotted: str) -> bool:
    """Whether a dotted key (list indices allowed) names a node of the config."""
    node: Any = cfg
    for part in dotted.lstrip("+~").split("."):
        if isinstance(node, DictConfig) and part in node.keys():  # `in node` is False for ???
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return False
    return True


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def registered_name(setting: Any, study_name: str) -> str | None:
    """`hydra.sweeper.mlflow.registered_model_name`: true = the study's name, a string = that
    name, null/false/"" = no registration."""
    if setting is None or setting is False or setting == "":
        return None
    if setting is True:
        return study_name
    if isinstance(setting, str):
        return setting
    raise config_error("hydra.sweeper.mlflow.registered_model_name", setting,
                       "true (the study's name), a model name, or false/null (off)")
