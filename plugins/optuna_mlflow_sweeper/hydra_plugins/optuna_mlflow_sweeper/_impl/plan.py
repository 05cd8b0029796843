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

import copy
import dataclasses
import functools
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution

from hydra_plugins.optuna_mlflow_sweeper._impl.env import ENV_STORAGE, started_by_a_sweep
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError, config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.html_report import IMPORTANCE_MIN_TRIALS
from hydra_plugins.optuna_mlflow_sweeper._impl.jobs import trial_overrides
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import plain
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import open_storage
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
from hydra_plugins.optuna_mlflow_sweeper._impl.study import optuna_quiet
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    absolute_sqlite_url,
    mask_url,
    resolve_tracking_uri,
    sqlite_path,
    tracking_key,
)
from hydra_plugins.optuna_mlflow_sweeper.config import SweeperSettings

log = logging.getLogger(__name__)
STORAGE_KEY = "hydra.sweeper.storage"
WARM_START_KEY = "hydra.sweeper.warm_start.storage"
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
    warm_start = warm_start_source(s, storage_url, study_name)
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
def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_numbers(s: Any) -> None:
    checks: list[tuple[str, Any, bool, str]] = [
        ("n_trials", s.n_trials, s.n_trials is None or (_int(s.n_trials) and s.n_trials >= 1),
         "an integer >= 1"),
        ("n_jobs", s.n_jobs, _int(s.n_jobs) and s.n_jobs >= 1, "an integer >= 1"),
        ("max_failure_rate", s.max_failure_rate,
         isinstance(s.max_failure_rate, (int, float)) and 0 <= s.max_failure_rate <= 1,
         "a number in [0, 1]"),
        ("timeout", s.timeout, s.timeout is None or s.timeout > 0, "null or seconds > 0"),
        ("heartbeat_interval", s.heartbeat_interval,
         s.heartbeat_interval is None or s.heartbeat_interval >= 1, "null or seconds >= 1"),
        ("grace_period", s.grace_period, s.grace_period is None or s.grace_period >= 1,
         "null or seconds >= 1"),
        ("max_retry", s.max_retry, _int(s.max_retry) and s.max_retry >= 0, "an integer >= 0"),
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


# ---- one trial composed, and checked by the app ----
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


# ---- the stores: drivers, then one contact each ----
def warm_start_source(s: SweeperSettings, storage_url: str, study_name: str
                      ) -> tuple[str, str, int] | None:
    """(storage URL, study name, top_k) of the earlier study `hydra.sweeper.warm_start` names,
    read before anything is created (None: no warm start); one line naming the key when it is not
    there. A SQLite file that does not exist holds no study: it is not opened (that creates it)."""
    cfg = s.warm_start
    if not cfg.study_name:
        return None
    if not _int(cfg.top_k) or cfg.top_k < 1:
        raise config_error("hydra.sweeper.warm_start.top_k", cfg.top_k, "an integer >= 1")
    url = checked_db_url(absolute_sqlite_url(cfg.storage), WARM_START_KEY) if cfg.storage \
        else storage_url
    if url != storage_url:
        check_storage(url, WARM_START_KEY)
    path = sqlite_path(url)
    names = [] if path is not None and not os.path.exists(path) else \
        optuna.get_all_study_names(open_storage(url))
    if cfg.study_name not in names or (cfg.study_name == study_name and url == storage_url):
        raise config_error("hydra.sweeper.warm_start.study_name", cfg.study_name,
                           f"an earlier study in {mask_url(url)}: one of {sorted(names)}")
    return url, cfg.study_name, cfg.top_k


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


# ---- settings that run but cannot do what they say: one warning line each ----
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
    return (f"hydra.sweeper.n_trials={n_trials:g}: the report's parameter importances need "
            f"{IMPORTANCE_MIN_TRIALS} finished trials; from fewer they would be noise and are "
            "left out")


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
