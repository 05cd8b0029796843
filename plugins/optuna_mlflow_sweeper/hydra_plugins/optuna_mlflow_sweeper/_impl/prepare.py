"""Start-up of a sweep process, in three steps: check everything, join the study, open the parent.

1. Checks, all of them, before anything is created: the settings and one composed trial config
   (checks.py), then one short contact with each service the command uses (preflight.py).
2. Join the study under its setup lock: open or create it, agree with the conditions it started
   with, take a worker number, enqueue configs once, fail trials orphaned at birth.
3. Open (or reopen) the sweep's parent run in MLflow.

The result, `Prepared`, is frozen: what changes while the sweep runs belongs to the worker loop.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.optuna_mlflow_sweeper._impl import preflight
from hydra_plugins.optuna_mlflow_sweeper._impl import validation as check
from hydra_plugins.optuna_mlflow_sweeper._impl import warm_start as warm_starts
from hydra_plugins.optuna_mlflow_sweeper._impl.checks import Checked, check_settings
from hydra_plugins.optuna_mlflow_sweeper._impl.console import PREFIX, say
from hydra_plugins.optuna_mlflow_sweeper._impl.drivers import checked_db_url
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import LocalFault, local_fault
from hydra_plugins.optuna_mlflow_sweeper._impl.locks import setup_lock
from hydra_plugins.optuna_mlflow_sweeper._impl.resume import (
    check_resume,
    fixed_conditions,
    register_worker,
    reseed,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import retry_call
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import SearchSpace
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import (
    known_secrets,
    redact,
    redact_logs,
    scrub_config,
    urls_in,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.study import (
    default_storage_url,
    enqueue_once,
    fail_orphans,
    make_storage,
    open_study,
    requeue_stopped,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    absolute_sqlite_url,
    has_password,
    mask_url,
    resolve_tracking_uri,
)
from hydra_plugins.optuna_mlflow_sweeper.config import SweeperSettings

log = logging.getLogger(__name__)
STORAGE_KEY = "hydra.sweeper.storage"


@dataclass(frozen=True)
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
    secret_env: Mapping[str, str] = field(default_factory=dict)


def prepare(
    s: SweeperSettings, config: DictConfig, loader: Any, arguments: list[str]
) -> Prepared:
    """Check everything, then join the study, then open the parent run (see the module doc)."""
    # before anything is saved, logged or composed for a job: passwords masked in the config
    secrets = known_secrets(urls_in(s))
    scrub_config(config, secrets)
    redact_logs(secrets)
    checked = check_settings(s, config, loader, arguments)
    sweep_dir = str(config.hydra.sweep.dir)
    storage_url = checked_db_url(absolute_sqlite_url(s.storage), STORAGE_KEY) if s.storage else None
    tracking_uri = tracking_uri_of(s) if s.mlflow.enabled else None
    if storage_url:  # the default one lives in the sweep's own folder, made below
        preflight.check_storage(storage_url, STORAGE_KEY)
    if tracking_uri:
        preflight.check_tracking(tracking_uri, tracking_key())
    storage_url = storage_url or default_storage_url(sweep_dir)
    study_name = s.study_name or str(config.hydra.job.name)
    earlier = warm_start_source(s, storage_url, study_name)

    save_sweep_config(config, sweep_dir)
    storage_masked = mask_url(storage_url)
    # Workers started together on fresh stores: one at a time through everything that creates
    # or records something once (tables, the study, enqueued configs, the parent run).
    with setup_lock(storage_url):
        study, worker, n_enqueued = join_study(s, checked, storage_url, study_name)
        if earlier is not None:
            n_enqueued += warm_starts.seed(study, earlier, s.warm_start.top_k,
                                           checked.space.distributions,
                                           mask_url(earlier_url(s, storage_url)))[0]
        tracker = None
        if tracking_uri:
            # the storage the sweep resolved (the config's null means a default path)
            params = {k: redact(v, secrets) for k, v in {
                **parent_params(config, checked.space, checked.n_trials, {
                    "mlflow.tracking_uri": mask_url(tracking_uri),
                    "mlflow.registered_model_name": check.registered_name(
                        s.mlflow.registered_model_name, study_name)}),
                "storage": storage_masked}.items()}
            tracker = open_parent_run(s, tracking_uri, study, storage_masked, sweep_dir,
                                      checked.directions, params)
    secret_env = {}
    if has_password(storage_url):
        secret_env["OPTUNA_MLFLOW_STORAGE"] = storage_url
    if tracker is not None and has_password(tracker.tracking_uri):
        secret_env["MLFLOW_TRACKING_URI"] = tracker.tracking_uri
    say(bool(s.progress), f"{PREFIX} study {study_name} ({','.join(checked.directions)}), "
        f"storage {storage_masked}, sampler {type(study.sampler).__name__}, pruner "
        f"{type(checked.pruner).__name__ if checked.pruner else None}"
        + (f", {n_enqueued} enqueued config(s) first" if n_enqueued else ""))
    return Prepared(
        study=study, study_name=study_name, space=checked.space, custom=checked.custom,
        directions=checked.directions, n_trials=checked.n_trials, n_jobs=s.n_jobs,
        max_failure_rate=float(s.max_failure_rate), timeout=s.timeout,
        heartbeat_interval=s.heartbeat_interval, pruner_config=checked.pruner_config,
        storage_url=storage_url, storage_masked=storage_masked, sweep_dir=sweep_dir,
        progress=bool(s.progress), worker=worker, max_retry=s.max_retry, tracker=tracker,
        secret_env=secret_env,
    )


def earlier_url(s: SweeperSettings, storage_url: str) -> str:
    cfg = s.warm_start
    return (checked_db_url(absolute_sqlite_url(cfg.storage), "hydra.sweeper.warm_start.storage")
            if cfg.storage else storage_url)


def warm_start_source(s: SweeperSettings, storage_url: str, study_name: str
                      ) -> optuna.Study | None:
    """The earlier study `hydra.sweeper.warm_start` names, read before anything is created
    (None: no warm start); one line naming the key when it is not there. A SQLite file that
    does not exist holds no study: it is not opened (opening would create it)."""
    cfg = s.warm_start
    if not cfg.study_name:
        return None
    if not isinstance(cfg.top_k, int) or isinstance(cfg.top_k, bool) or cfg.top_k < 1:
        raise config_error("hydra.sweeper.warm_start.top_k", cfg.top_k, "an integer >= 1")
    url = earlier_url(s, storage_url)
    if url != storage_url:
        preflight.check_storage(url, "hydra.sweeper.warm_start.storage")
    storage = None if preflight.missing_sqlite_file(url) else make_storage(url, None, None,
                                                                            s.max_retry)
    names = ([summary.study_name for summary in optuna.get_all_study_summaries(storage)]
             if storage is not None else [])
    if cfg.study_name not in names or (cfg.study_name == study_name and url == storage_url):
        raise config_error("hydra.sweeper.warm_start.study_name", cfg.study_name,
                           f"an earlier study in {mask_url(url)}: one of {sorted(names)}")
    return optuna.load_study(study_name=cfg.study_name, storage=storage)


def tracking_key() -> str:
    """Where the tracking URI came from, for errors: the environment wins over the config."""
    return ("MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI")
            else "hydra.sweeper.mlflow.tracking_uri")


def tracking_uri_of(s: SweeperSettings) -> str:
    return checked_db_url(resolve_tracking_uri(s.mlflow.tracking_uri), tracking_key())


def save_sweep_config(config: DictConfig, sweep_dir: str) -> None:
    """The sweep's folder (the one folder made on the user's behalf) and its multirun.yaml."""
    try:
        os.makedirs(sweep_dir, exist_ok=True)
        OmegaConf.save(config, os.path.join(sweep_dir, "multirun.yaml"))  # as Hydra's sweeper
    except OSError as e:
        if local_fault(e):  # a full or read-only disk: not the setting's fault
            raise LocalFault(f"cannot write the sweep folder {sweep_dir}: {local_fault(e)}"
                             ) from None
        raise config_error("hydra.sweep.dir", sweep_dir, "a folder this user can write",
                           f"{type(e).__name__}: {e.strerror or e}") from None


def join_study(
    s: SweeperSettings, c: Checked, storage_url: str, study_name: str
) -> tuple[optuna.Study, int, int]:
    """(study, this process' worker number, configs enqueued now); under the setup lock."""
    storage = make_storage(storage_url, s.heartbeat_interval, s.grace_period, s.max_retry)
    study = open_study(study_name, storage, c.sampler, c.pruner, c.directions)
    check_resume(study, fixed_conditions(c.space), s.allow_changed_overrides)
    worker = register_worker(study)
    study.sampler = reseed(c.sampler, s.sampler, c.space, worker)
    if c.metric_names and study.metric_names != c.metric_names:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(c.metric_names)
    n_enqueued = enqueue_once(study, c.enqueue, c.space.distributions)
    requeue_stopped(study, s.max_retry)
    if s.heartbeat_interval:  # asked, then killed before a first heartbeat: never stale
        grace = s.grace_period or 2 * s.heartbeat_interval
        fail_orphans(study, "its process ended before it started (no heartbeat)",
                     older_than=grace)
    return study, worker, n_enqueued


def open_parent_run(
    s: SweeperSettings, tracking_uri: str, study: optuna.Study, storage_masked: str,
    sweep_dir: str, directions: list[str], params: Mapping[str, str],
) -> Any:
    """The MLflow tracker of this sweep, its parent run opened (or reopened)."""
    # imported here: a sweep with MLflow off never imports MLflow
    from hydra_plugins.optuna_mlflow_sweeper._impl.runs import MlflowTracker

    name = study.study_name
    tracker = MlflowTracker(s.mlflow.tracking_uri, s.mlflow.experiment or name,
                            spool_dir=os.path.join(sweep_dir, ".mlflow_outbox"))
    # a worker may start while the server is away: wait for it, as for every write
    # (a retry after a lost answer converges: the earliest parent is kept)
    retry_call(lambda: tracker.open_parent(study, f"{storage_masked}|{name}", params, {
        "optuna.study_name": name, "optuna.storage": storage_masked,
        "optuna.directions": ",".join(directions), "sweeper": "optuna_mlflow",
    }), "opening the sweep's parent run")
    return tracker


def parent_params(
    config: DictConfig, space: SearchSpace, n_trials: float,
    used: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The sweeper config, flattened, with the effective search space (params + command line).

    `used`: what a setting resolved to, logged instead of the setting (the tracking URI the
    sweep writes to, the registered model's name rather than `true`); None leaves the key out.
    """
    sweeper = check.plain(config.hydra.sweeper) or {}
    used = used or {}
    flat: dict[str, str] = {k: str(v) for k, v in used.items()}  # first: _flatten keeps them
    for key, value in sweeper.items():
        if key.startswith("_") or key == "params":
            continue
        if key in ("sampler", "pruner") and isinstance(value, dict):
            flat[key] = str(value.get("_target_", "")).rpartition(".")[2]
            value = {k: v for k, v in value.items() if not k.startswith("_")}
        _flatten(flat, key, value)
    flat = {k: v for k, v in flat.items() if k not in used or used[k] is not None}
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
