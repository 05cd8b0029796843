"""Checks that run before the first trial; each error names the offending `hydra.sweeper.*` key."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import plain
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import SearchSpace, grid_choices

DIRECTIONS = ("minimize", "maximize")
# samplers whose optional dependency is only imported when they first sample
_SAMPLER_NEEDS = {"CmaEsSampler": ("cmaes",), "GPSampler": ("torch", "scipy")}


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


# ---- settings that run but cannot do what they say: one warning line each, before the trials ----
IMPORTANCE_MIN_TRIALS = 10
"""Finished trials below which parameter importances (fANOVA on a handful of points) are noise."""


def setting_warnings(sampler: Any, pruner: Any, n_trials: float) -> list[str]:
    """What the sampler, pruner and report will not do with this budget (pure: configs in,
    lines out). `n_trials` counts every trial of the study, enqueued ones included: they are
    finished trials to a sampler's start-up and to a pruner's rungs alike."""
    if n_trials == float("inf"):
        return []
    lines = [sampler_warning(plain(sampler), n_trials), pruner_warning(plain(pruner), n_trials),
             importance_warning(n_trials)]
    return [line for line in lines if line]


def sampler_warning(cfg: Mapping[str, Any] | None, n_trials: float) -> str | None:
    """A model-based sampler (TPE, GP, CMA-ES) draws at random until `n_startup_trials` trials
    have finished: a budget no larger than that never uses the model."""
    startup = (cfg or {}).get("n_startup_trials")
    if not isinstance(startup, int) or startup < n_trials:
        return None
    name = _short(cfg, "TPESampler")
    return (f"hydra.sweeper.sampler.n_startup_trials={startup} >= hydra.sweeper.n_trials="
            f"{n_trials:g}: {name} is never used, every trial is enqueued or a random draw "
            f"(set n_startup_trials below n_trials, or use hydra/sweeper/sampler=random)")


def pruner_warning(cfg: Mapping[str, Any] | None, n_trials: float) -> str | None:
    """A pruner judges a trial only against enough others at the same step: Median/Percentile
    after `n_startup_trials` finished trials, SuccessiveHalving with `reduction_factor` trials
    at its first rung (fewer: only the best so far survives), Hyperband so in each bracket."""
    cfg = cfg or {}
    name = _short(cfg, "")
    if name in ("MedianPruner", "PercentilePruner"):
        needed = int(cfg.get("n_startup_trials", 5)) + 1
        if n_trials < needed:
            return (f"hydra.sweeper.pruner: {name} waits for n_startup_trials="
                    f"{needed - 1} finished trials, so with hydra.sweeper.n_trials={n_trials:g} "
                    "it never prunes")
    elif name in ("SuccessiveHalvingPruner", "HyperbandPruner"):
        factor = int(cfg.get("reduction_factor", 4 if name.startswith("Succ") else 3))
        bootstrap = int(cfg.get("bootstrap_count", 0))
        brackets = _hyperband_brackets(cfg) if name == "HyperbandPruner" else 1
        needed = brackets * max(factor, bootstrap + 1)
        if n_trials < needed:
            per = f" in each of its {brackets} brackets" if brackets > 1 else ""
            return (f"hydra.sweeper.pruner: {name} ranks its first rung among reduction_factor="
                    f"{factor} trials{per} ({needed} in all); with hydra.sweeper.n_trials="
                    f"{n_trials:g} it cannot rank them: it stops every trial that is not the "
                    "best so far at that rung")
    return None


def importance_warning(n_trials: float) -> str | None:
    if n_trials >= IMPORTANCE_MIN_TRIALS:
        return None
    return (f"hydra.sweeper.n_trials={n_trials:g}: the report's parameter importances need about "
            f"{IMPORTANCE_MIN_TRIALS} finished trials; from fewer they are noise")


def _hyperband_brackets(cfg: Mapping[str, Any]) -> int:
    """Optuna's floor(log_rf(max/min)) + 1; 1 while max_resource is "auto" (known only after
    the first trial)."""
    low, high = cfg.get("min_resource", 1), cfg.get("max_resource", "auto")
    factor = int(cfg.get("reduction_factor", 3))
    if not (_int(low) and _int(high)) or low < 1 or high < low or factor < 2:
        return 1
    brackets = 1
    while low * factor ** brackets <= high:
        brackets += 1
    return brackets


def _short(cfg: Mapping[str, Any] | None, default: str) -> str:
    return str((cfg or {}).get("_target_") or default).rpartition(".")[2]
