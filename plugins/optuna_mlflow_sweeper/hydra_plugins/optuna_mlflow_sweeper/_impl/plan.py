"""A sweep's plan: every check, before anything is created, and what the sweep runs with.

`plan(settings, config, loader, arguments)` returns a `SweepPlan` of plain values, or raises at
the first failing check: a `SweeperConfigError` naming its key, an `Unreachable` naming its
service. It creates nothing (no folder, no storage, no MLflow run: session.py does that); it masks
the passwords of every URL the sweep was given in the config and the logs first, before anything
is composed, logged or saved. The order is the reader's: the numbers, the objectives, the search
space and what is enqueued, the sampler and pruner, one trial composed into the app config and
checked by the app at each end of each range, the stores (their drivers, then one short contact
with each), the warm-start source.

Each store is reached once, briefly, by the command a user typed (services.py): a wrong address
is one line, not an outage. Settings that run but cannot do what they say are warned of, one
line each, by the command alone.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.optuna_mlflow_sweeper._impl.advice import setting_warnings
from hydra_plugins.optuna_mlflow_sweeper._impl.composing import check_composes
from hydra_plugins.optuna_mlflow_sweeper._impl.env import ENV_STORAGE, started_by_a_sweep
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import plain
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import (
    SearchSpace,
    build_search_space,
    grid_choices,
    holds,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import (
    known_secrets,
    redact,
    redact_logs,
    scrub_config,
    url_password,
    urls_in,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.services import (
    check_storage,
    check_tracking,
    checked_db_url,
    installed,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    absolute_sqlite_url,
    mask_url,
    resolve_tracking_uri,
    tracking_key,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.warm_start import checked_source
from hydra_plugins.optuna_mlflow_sweeper.config import SweeperSettings

log = logging.getLogger(__name__)
STORAGE_KEY = "hydra.sweeper.storage"
TRACKING_KEY = "hydra.sweeper.mlflow.tracking_uri"
DIRECTIONS = ("minimize", "maximize")
# samplers whose optional dependency is only imported when they first sample
_SAMPLER_NEEDS = {"CmaEsSampler": ("cmaes",), "GPSampler": ("torch", "scipy")}


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep runs with, checked: plain values (session.py makes the live objects)."""

    study_name: str
    sweep_dir: str
    storage_url: str  # driver pinned; by default `optuna.db` in the sweep folder
    storage_masked: str
    tracking_uri: str | None  # None: MLflow off
    experiment: str
    directions: tuple[str, ...]
    metric_names: tuple[str, ...] | None
    space: SearchSpace
    enqueue: tuple[dict[str, Any], ...]
    custom_search_space: str | None  # the dotted path of fn(cfg, trial)
    sampler: dict[str, Any]  # its config; the grid sampler's holds the grid
    pruner: dict[str, Any] | None  # its config (the trial side instantiates it too)
    n_trials: float  # math.inf: no limit but the timeout
    n_jobs: int
    max_failure_rate: float
    timeout: float | None
    heartbeat_interval: int | None
    grace_period: int | None
    max_retry: int
    allow_changed_overrides: bool | tuple[str, ...]
    warm_start: tuple[str, str, int] | None  # (storage URL, study name, top_k)
    registered_model: str | None
    parent_params: dict[str, str]  # the parent run's params, passwords masked
    config_yaml: str  # multirun.yaml, passwords masked
    # values holding a password, exported to the jobs rather than written to their overrides
    # (Hydra saves those in every job's .hydra/hydra.yaml)
    secret_env: dict[str, str]
    progress: bool


def plan(s: SweeperSettings, config: DictConfig, loader: Any, arguments: list[str]) -> SweepPlan:
    """Every check of the settings, the app config and the services (see the module doc)."""
    secrets = known_secrets(urls_in(s))
    scrub_config(config, secrets)
    redact_logs(secrets)
    check_numbers(s)
    registered_name(s.mlflow.registered_model_name, "")
    dirs = directions(s.direction)
    names = metric_names(s.metric_names, dirs)
    enqueue = enqueue_entries(s.enqueue)
    custom = function("hydra.sweeper.custom_search_space", s.custom_search_space,
                      "a dotted path to fn(cfg, trial) -> dict | None")
    app_check = function("hydra.sweeper.validate", s.validate,
                         "a dotted path to fn(cfg) that raises on a bad app config")
    space = build_search_space(plain(s.params) or {}, list(arguments))
    check_enqueue(enqueue, space)
    sampler, grid_size = sampler_config(s.sampler, space)
    pruner = plain(s.pruner) or None
    if pruner:
        make("hydra.sweeper.pruner", pruner, "an optuna pruner config")
    check_composes(config, loader, space, custom, s.custom_search_space, app_check, s.validate)
    n_trials = budget(s.n_trials, grid_size, s.timeout)
    if not started_by_a_sweep():  # once, by the command the user typed, not by each worker
        for line in setting_warnings(s.sampler, s.pruner, n_trials):
            log.warning("warning: %s", line)  # Hydra's log format shows no level

    sweep_dir = str(config.hydra.sweep.dir)
    storage_url = checked_db_url(absolute_sqlite_url(s.storage), STORAGE_KEY) if s.storage else None
    tracking_uri = (checked_db_url(resolve_tracking_uri(s.mlflow.tracking_uri),
                                   tracking_key(TRACKING_KEY)) if s.mlflow.enabled else None)
    if storage_url:  # the default one lives in the sweep's own folder, made by the session
        check_storage(storage_url, STORAGE_KEY)
    if tracking_uri:
        check_tracking(tracking_uri, TRACKING_KEY)
    storage_url = storage_url or "sqlite:///" + os.path.join(os.path.abspath(sweep_dir),
                                                             "optuna.db")
    study_name = s.study_name or str(config.hydra.job.name)
    warm_start = checked_source(s.warm_start, storage_url, study_name)
    storage_masked = mask_url(storage_url)
    model = registered_name(s.mlflow.registered_model_name, study_name)
    params = parent_params(config, space, n_trials, {
        "mlflow.tracking_uri": mask_url(tracking_uri),
        "mlflow.registered_model_name": model, "storage": storage_masked})
    secret_env = {name: url for name, url in ((ENV_STORAGE, storage_url),
                                              ("MLFLOW_TRACKING_URI", tracking_uri))
                  if url and url_password(url)}
    allowed = s.allow_changed_overrides
    return SweepPlan(
        study_name=study_name, sweep_dir=sweep_dir, storage_url=storage_url,
        storage_masked=storage_masked, tracking_uri=tracking_uri,
        experiment=s.mlflow.experiment or study_name, directions=tuple(dirs),
        metric_names=tuple(names) if names else None, space=space, enqueue=tuple(enqueue),
        custom_search_space=s.custom_search_space, sampler=sampler, pruner=pruner,
        n_trials=n_trials, n_jobs=s.n_jobs, max_failure_rate=float(s.max_failure_rate),
        timeout=s.timeout, heartbeat_interval=s.heartbeat_interval,
        grace_period=s.grace_period, max_retry=s.max_retry,
        allow_changed_overrides=(allowed if isinstance(allowed, bool)
                                 else tuple(plain(allowed) or ())),
        warm_start=warm_start, registered_model=model,
        parent_params={k: redact(v, secrets) for k, v in params.items()},
        config_yaml=OmegaConf.to_yaml(config), secret_env=secret_env,
        progress=bool(s.progress),
    )


# ---- the settings ----
def check_numbers(s: Any) -> None:
    checks: list[tuple[str, Any, bool, str]] = [
        ("n_trials", s.n_trials,
         s.n_trials is None or (type(s.n_trials) is int and s.n_trials >= 1), "an integer >= 1"),
        ("n_jobs", s.n_jobs, type(s.n_jobs) is int and s.n_jobs >= 1, "an integer >= 1"),
        ("max_failure_rate", s.max_failure_rate,
         isinstance(s.max_failure_rate, (int, float)) and 0 <= s.max_failure_rate <= 1,
         "a number in [0, 1]"),
        ("timeout", s.timeout, s.timeout is None or s.timeout > 0, "null or seconds > 0"),
        ("heartbeat_interval", s.heartbeat_interval,
         s.heartbeat_interval is None or s.heartbeat_interval >= 1, "null or seconds >= 1"),
        ("grace_period", s.grace_period, s.grace_period is None or s.grace_period >= 1,
         "null or seconds >= 1"),
        ("max_retry", s.max_retry, type(s.max_retry) is int and s.max_retry >= 0,
         "an integer >= 0"),
        ("gpus", s.gpus, s.gpus is None or all(str(g).strip() and "," not in str(g)
                                              for g in s.gpus),
         "null, [] or a list of device ids (CUDA_VISIBLE_DEVICES entries, one per item)"),
    ]
    for key, value, ok, allowed in checks:
        if not ok:
            raise config_error(f"hydra.sweeper.{key}", value, allowed)


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


def enqueue_entries(enqueue: Any) -> list[dict[str, Any]]:
    value = plain(enqueue) or []
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise config_error("hydra.sweeper.enqueue", value, "a list of {override_key: value} dicts")
    return [dict(e) for e in value]


def check_enqueue(entries: Sequence[Mapping[str, Any]], space: SearchSpace) -> None:
    """Every enqueued value must be one the param's distribution can hold: otherwise Optuna
    fails the trial while sampling it, after it exists (a trial left RUNNING with no process)."""
    for i, entry in enumerate(entries):
        for key, value in entry.items():
            dist = space.distributions.get(str(key))
            if dist is not None and not holds(dist, value):
                raise config_error(f"hydra.sweeper.enqueue.{i}.{key}", value,
                                   f"a value of {space.exprs.get(str(key), dist)}")


def function(key: str, path: str | None, allowed: str) -> Callable[..., Any] | None:
    """The function a dotted path names (None: no path)."""
    if not path:
        return None
    try:
        return get_method(path)
    except Exception as e:
        raise config_error(key, path, allowed, str(e)) from None


def make(key: str, cfg: dict[str, Any], allowed: str) -> Any:
    """The Optuna object a config describes (a sampler, a pruner), built as Hydra builds it."""
    try:
        made = instantiate(cfg, _convert_="all")
    except Exception as e:
        raise config_error(key, cfg.get("_target_"), allowed, str(e).splitlines()[0]) from None
    return made() if isinstance(made, functools.partial) else made


def sampler_config(config: Any, space: SearchSpace) -> tuple[dict[str, Any], int | None]:
    """(the sampler config, checked: the grid sampler's with the grid; the grid's size)."""
    cfg = plain(config) or {"_target_": "optuna.samplers.TPESampler"}
    target = str(cfg.get("_target_", ""))
    for module in _SAMPLER_NEEDS.get(target.rpartition(".")[2], ()):
        if not installed(module):
            raise config_error("hydra.sweeper.sampler", target, f"a sampler whose dependencies "
                               f"are installed ('{module}' is missing: pip install {module})")
    grid_size = None
    if target.endswith("GridSampler"):
        grid = cfg.pop("search_space", None) or grid_choices(space)
        cfg.pop("_partial_", None)
        cfg["search_space"] = grid
        grid_size = functools.reduce(lambda n, v: n * len(v), grid.values(), 1)
    make("hydra.sweeper.sampler", cfg, "an optuna sampler config")
    return cfg, grid_size


def budget(n_trials: int | None, grid_size: int | None, timeout: float | None) -> float:
    """n_trials, capped to the grid; null = the whole grid, or unlimited with a timeout."""
    if n_trials is None:
        if grid_size is not None:
            return grid_size
        if timeout:
            return math.inf
        raise config_error("hydra.sweeper.n_trials", None, "an integer >= 1 (null only with the "
                           "grid sampler, meaning the whole grid, or with a timeout)")
    if grid_size is not None and grid_size < n_trials:
        log.info("n_trials capped to the grid size %d", grid_size)
        return grid_size
    return n_trials


# ---- what the parent run records ----
def parent_params(config: DictConfig, space: SearchSpace, n_trials: float,
                  used: Mapping[str, Any]) -> dict[str, str]:
    """The sweeper config, flattened, with the effective search space (params + command line).
    `used`: what a setting resolved to, logged instead of the setting (the tracking URI the
    sweep writes to, the registered model's name rather than `true`); None leaves the key out."""
    flat: dict[str, str] = {k: str(v) for k, v in used.items()}  # first: _flatten keeps them
    for key, value in (plain(config.hydra.sweeper) or {}).items():
        if key.startswith("_") or key == "params":
            continue
        if key in ("sampler", "pruner") and isinstance(value, dict):
            flat[key] = str(value.get("_target_", "")).rpartition(".")[2]
            value = {k: v for k, v in value.items() if not k.startswith("_")}
        _flatten(flat, key, value)
    flat = {k: v for k, v in flat.items() if k not in used or used[k] is not None}
    flat["n_trials"] = str(n_trials)  # effective: capped to the grid
    return {**flat, **{f"params.{key}": expr for key, expr in space.exprs.items()}}


def _flatten(out: dict[str, str], prefix: str, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(out, f"{prefix}.{k}", v)
    elif prefix not in out:
        out[prefix] = str(value)
