"""Turn the sweeper config into a ready sweep, failing before any trial on a bad config."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.optuna_mlflow_sweeper._impl import validation as check
from hydra_plugins.optuna_mlflow_sweeper._impl import warm_start as warm_starts
from hydra_plugins.optuna_mlflow_sweeper._impl.console import PREFIX, say
from hydra_plugins.optuna_mlflow_sweeper._impl.drivers import checked_db_url
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.jobs import trial_overrides
from hydra_plugins.optuna_mlflow_sweeper._impl.locks import setup_lock
from hydra_plugins.optuna_mlflow_sweeper._impl.resume import (
    check_enqueue,
    check_resume,
    fixed_conditions,
    register_worker,
    reseed,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import retry_call
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import SearchSpace, build_search_space
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import (
    known_secrets,
    redact,
    redact_logs,
    scrub_config,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.study import (
    default_storage_url,
    enqueue_once,
    fail_orphans,
    make_storage,
    open_study,
    optuna_quiet,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    absolute_sqlite_url,
    has_password,
    mask_url,
    resolve_tracking_uri,
)
from hydra_plugins.optuna_mlflow_sweeper.config import SweeperSettings

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    study: optuna.Study
    study_name: str
    space: SearchSpace
    custom: Callable[..., Any] | None
    directions: list[str]
    n_trials: float  # math.inf: no limit but the timeout
    n_jobs: int
    max_failure_rate: float
    timeout: float | None
    heartbeat_interval: int | None
    pruner_config: dict[str, Any] | None
    storage_url: str
    storage_masked: str
    sweep_dir: str
    progress: bool
    worker: int = 0  # this process' number among the study's workers (seeds its sampler)
    max_retry: int = 1
    tracker: Any = None
    # env values holding a password are exported by the sweeper process, not written to the
    # per-job overrides (Hydra saves those in every job's .hydra/hydra.yaml)
    secret_env: dict[str, str] = field(default_factory=dict)
    last_failure: str | None = None


def prepare(
    s: SweeperSettings, config: DictConfig, loader: Any, arguments: list[str]
) -> Prepared:
    """Check every setting, compose one sample trial, open the study and the parent run."""
    # before anything is saved, logged or composed for a job: passwords masked in the config
    secrets = known_secrets([s.storage, s.mlflow.tracking_uri])
    scrub_config(config, secrets)
    redact_logs(secrets)
    check.check_numbers(s)
    directions = check.directions(s.direction)
    metric_names = check.metric_names(s.metric_names, directions)
    enqueue = check.enqueue_entries(s.enqueue)
    custom = check.custom_search_space(s.custom_search_space)
    space = build_search_space(check.plain(s.params) or {}, list(arguments))
    sampler, grid_size = check.make_sampler(s.sampler, space)
    pruner, pruner_config = check.make_pruner(s.pruner)
    check_composes(config, loader, space, custom, s.custom_search_space)

    n_trials = _budget(s.n_trials, grid_size, s.timeout)
    sweep_dir = str(config.hydra.sweep.dir)
    try:
        os.makedirs(sweep_dir, exist_ok=True)
        OmegaConf.save(config, os.path.join(sweep_dir, "multirun.yaml"))  # as Hydra's sweeper
    except OSError as e:
        raise config_error("hydra.sweep.dir", sweep_dir, "a folder this user can write",
                           f"{type(e).__name__}: {e.strerror or e}") from None
    storage_url = absolute_sqlite_url(s.storage) if s.storage else default_storage_url(sweep_dir)
    storage_url = checked_db_url(storage_url, "hydra.sweeper.storage")
    study_name = s.study_name or str(config.hydra.job.name)
    # Workers started together on fresh stores: one at a time through everything that creates
    # or records something once (tables, the study, enqueued configs, the parent run).
    with setup_lock(storage_url):
        storage = make_storage(storage_url, s.heartbeat_interval, s.grace_period, s.max_retry)
        study = open_study(study_name, storage, sampler, pruner, directions)
        check_resume(study, fixed_conditions(space), s.allow_changed_overrides)
        worker = register_worker(study)
        sampler = reseed(sampler, s.sampler, space, worker)
        study.sampler = sampler
        if metric_names and study.metric_names != metric_names:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(metric_names)
        check_enqueue(enqueue, space)
        n_enqueued = enqueue_once(study, enqueue, space.distributions)
        n_enqueued += warm_start(s, study, space, storage_url)
        if s.heartbeat_interval:  # asked, then killed before a first heartbeat: never stale
            grace = s.grace_period or 2 * s.heartbeat_interval
            fail_orphans(study, "its process ended before it started (no heartbeat)",
                         older_than=grace)

        p = Prepared(
            study=study, study_name=study_name, space=space, custom=custom,
            directions=directions, n_trials=n_trials, n_jobs=s.n_jobs,
            max_failure_rate=float(s.max_failure_rate), timeout=s.timeout,
            heartbeat_interval=s.heartbeat_interval, pruner_config=pruner_config,
            storage_url=storage_url, storage_masked=mask_url(storage_url), sweep_dir=sweep_dir,
            progress=bool(s.progress), worker=worker, max_retry=s.max_retry,
        )
        if has_password(storage_url):
            p.secret_env["OPTUNA_MLFLOW_STORAGE"] = storage_url
        if s.mlflow.enabled:
            from hydra_plugins.optuna_mlflow_sweeper._impl.runs import MlflowTracker

            tracking_uri = resolve_tracking_uri(s.mlflow.tracking_uri)
            # MLflow's own schema migrations race too
            with setup_lock(tracking_uri, name="mlflow"):
                p.tracker = MlflowTracker(tracking_uri, s.mlflow.experiment or study_name,
                                          spool_dir=os.path.join(sweep_dir, ".mlflow_outbox"))
            study_key = f"{p.storage_masked}|{study_name}"
            # the storage the sweep resolved (the config's null means a default path)
            params = {k: redact(v, secrets) for k, v in {
                **parent_params(config, space, n_trials), "storage": p.storage_masked}.items()}
            # a worker may start while the server is away: wait for it, as for every write
            # (a retry after a lost answer converges: the earliest parent is kept)
            retry_call(lambda: p.tracker.open_parent(study, study_key, params, {
                "optuna.study_name": study_name, "optuna.storage": p.storage_masked,
                "optuna.directions": ",".join(directions), "sweeper": "optuna_mlflow",
            }), "opening the sweep's parent run")
            if has_password(p.tracker.tracking_uri):
                p.secret_env["MLFLOW_TRACKING_URI"] = p.tracker.tracking_uri
    say(p.progress, f"{PREFIX} study {study_name} ({','.join(directions)}), storage "
        f"{p.storage_masked}, sampler {type(sampler).__name__}, "
        f"pruner {type(pruner).__name__ if pruner else None}"
        + (f", {n_enqueued} enqueued config(s) first" if n_enqueued else ""))
    return p


def warm_start(s: SweeperSettings, study: optuna.Study, space: SearchSpace,
               storage_url: str) -> int:
    """Enqueue the best fitting trials of `hydra.sweeper.warm_start.study_name`, once."""
    cfg = s.warm_start
    if not cfg.study_name:
        return 0
    if not isinstance(cfg.top_k, int) or isinstance(cfg.top_k, bool) or cfg.top_k < 1:
        raise config_error("hydra.sweeper.warm_start.top_k", cfg.top_k, "an integer >= 1")
    url = checked_db_url(absolute_sqlite_url(cfg.storage) if cfg.storage else storage_url,
                         "hydra.sweeper.warm_start.storage")
    storage = make_storage(url, None, None, s.max_retry)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    if cfg.study_name not in names or cfg.study_name == study.study_name and url == storage_url:
        raise config_error("hydra.sweeper.warm_start.study_name", cfg.study_name,
                           f"an earlier study in {mask_url(url)}: one of {sorted(names)}")
    earlier = optuna.load_study(study_name=cfg.study_name, storage=storage)
    n, _ = warm_starts.seed(study, earlier, cfg.top_k, space.distributions, mask_url(url))
    return n


def _budget(n_trials: int | None, grid_size: int | None, timeout: float | None) -> float:
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


def check_composes(
    config: DictConfig, loader: Any, space: SearchSpace, custom: Any, custom_path: str | None
) -> None:
    """Compose the app config for one sampled trial; name the key that breaks composition."""
    with optuna_quiet():
        dry = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        trial = dry.ask(space.distributions)
    try:
        lines = trial_overrides(trial, space, custom, config)
    except Exception as e:
        raise config_error("hydra.sweeper.custom_search_space", custom_path,
                           "fn(cfg, trial) -> dict | None", f"{type(e).__name__}: {e}") from None
    error = _compose_error(config, loader, lines)
    if error is None:
        _check_added_keys(config, loader, space)
        return
    fixed = list(space.fixed.values())
    culprits: list[tuple[str, list[str]]] = []
    if _compose_error(config, loader, fixed) is not None:
        culprits = [(key, [line]) for key, line in space.fixed.items()]
    else:
        culprits = [(key, [*fixed, space.override_for(key, trial.params[key])])
                    for key in space.distributions]
    for key, candidate in culprits:
        culprit_error = _compose_error(config, loader, candidate)
        if culprit_error is not None:
            raise config_error(
                space.sources[key], space.exprs.get(key),
                f"an override of a key in the composed app config (prefix '+' to add "
                f"'{key.lstrip('+~')}')", culprit_error,
            )
    raise config_error("hydra.sweeper.custom_search_space", custom_path,
                       "overrides of keys in the composed app config", error)


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


def _compose_error(config: DictConfig, loader: Any, overrides: list[str]) -> str | None:
    try:
        loader.load_sweep_config(config, list(overrides))
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}".strip()


def parent_params(config: DictConfig, space: SearchSpace, n_trials: float) -> dict[str, str]:
    """The sweeper config, flattened, with the effective search space (params + command line)."""
    sweeper = check.plain(config.hydra.sweeper) or {}
    flat: dict[str, str] = {}
    for key, value in sweeper.items():
        if key.startswith("_") or key == "params":
            continue
        if key in ("sampler", "pruner") and isinstance(value, dict):
            flat[key] = str(value.get("_target_", "")).rpartition(".")[2]
            value = {k: v for k, v in value.items() if not k.startswith("_")}
        _flatten(flat, key, value)
    flat["n_trials"] = str(n_trials)  # effective: capped to the grid
    for key, expr in space.exprs.items():
        flat[f"params.{key}"] = expr
    return flat


def _flatten(out: dict[str, str], prefix: str, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(out, f"{prefix}.{k}", v)
    elif prefix not in out:
        out[prefix] = str(value)
