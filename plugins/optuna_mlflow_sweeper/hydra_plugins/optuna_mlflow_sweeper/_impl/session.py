"""A sweep's session: the only code that creates anything, from a checked `SweepPlan`.

`open_session(plan)` makes the sweep folder and its multirun.yaml, then, under the setup lock
(workers started together on fresh stores make each thing once: locks.py), joins the study: opens
or creates it (a new SQLite storage as a copy of a blank one: blank_stores.py), agrees with the
conditions it started with, takes a worker number (which seeds its sampler), enqueues configs
and a warm start once, queues the retries of stopped trials and fails trials orphaned at birth;
then opens (or reopens) the sweep's parent run in MLflow. The `Session` holds the live objects
the trials use: the study and the MLflow tracker.

A process joining a study with other fixed overrides or another search space than it started with
would mix conditions in one study: it is refused, naming what differs, unless
`allow_changed_overrides` says so. Worker 0 keeps the configured seed (a one-process sweep repeats
exactly); worker k > 0 gets one derived from (seed, k): its own sequence, the same every time.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from hydra.utils import instantiate

from hydra_plugins.optuna_mlflow_sweeper._impl import warm_start
from hydra_plugins.optuna_mlflow_sweeper._impl.blank_stores import from_blank
from hydra_plugins.optuna_mlflow_sweeper._impl.console import PREFIX, say
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import LocalFault, local_fault
from hydra_plugins.optuna_mlflow_sweeper._impl.locks import setup_lock
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import SweepPlan, make
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import open_storage
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import retry_call
from hydra_plugins.optuna_mlflow_sweeper._impl.runs import MlflowTracker
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import same_override, stored_value
from hydra_plugins.optuna_mlflow_sweeper._impl.study import (
    STUDY_UID_ATTR,
    OneReadStorage,
    fail_orphans,
    optuna_quiet,
    requeue_stopped,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url, sqlite_path

ENQUEUED_ATTR = "optuna_mlflow:enqueued"
WORKERS_ATTR = "optuna_mlflow:workers"
CONDITIONS_ATTR = "optuna_mlflow:conditions"


@dataclass(frozen=True)
class Session:
    """The live objects of a sweep process: its study, and its MLflow tracker (None: off)."""

    study: optuna.Study
    tracker: MlflowTracker | None


def open_session(plan: SweepPlan) -> Session:
    """Create what `plan` says, in order (see the module doc)."""
    try:  # the one folder made on the user's behalf, and its multirun.yaml (as Hydra's sweeper)
        os.makedirs(plan.sweep_dir, exist_ok=True)
        with open(os.path.join(plan.sweep_dir, "multirun.yaml"), "w", encoding="utf-8") as f:
            f.write(plan.config_yaml)
    except OSError as e:
        if local_fault(e):  # a full or read-only disk: not the setting's fault
            raise LocalFault(f"cannot write the sweep folder {plan.sweep_dir}: "
                             f"{local_fault(e)}") from None
        raise config_error("hydra.sweep.dir", plan.sweep_dir, "a folder this user can write",
                           f"{type(e).__name__}: {e.strerror or e}") from None
    with setup_lock(plan.storage_url):
        study, n_enqueued = join_study(plan)
        tracker = None
        if plan.tracking_uri:
            tracker = MlflowTracker(plan.tracking_uri, plan.experiment,
                                    spool_dir=os.path.join(plan.sweep_dir, ".mlflow_outbox"))
            # a worker may start while the server is away: wait for it, as for every write
            # (a retry after a lost answer converges: the earliest parent is kept)
            retry_call(lambda: tracker.open_parent(
                study, f"{plan.storage_masked}|{plan.study_name}", plan.parent_params, {
                    "optuna.study_name": plan.study_name, "optuna.storage": plan.storage_masked,
                    "optuna.directions": ",".join(plan.directions), "sweeper": "optuna_mlflow",
                }), "opening the sweep's parent run")
    pruner = (plan.pruner or {}).get("_target_", "None").rpartition(".")[2]
    say(plan.progress, f"{PREFIX} study {plan.study_name} ({','.join(plan.directions)}), "
        f"storage {plan.storage_masked}, sampler {type(study.sampler).__name__}, pruner {pruner}"
        + (f", {n_enqueued} enqueued config(s) first" if n_enqueued else ""))
    return Session(study=study, tracker=tracker)


def join_study(plan: SweepPlan) -> tuple[optuna.Study, int]:
    """(the study, configs enqueued now); under the setup lock."""
    try:  # a new SQLite storage starts as a copy of the blank one Optuna made before
        storage = from_blank(sqlite_path(plan.storage_url), f"optuna-{optuna.__version__}",
                             lambda: open_storage(plan.storage_url, plan.heartbeat_interval,
                                                  plan.grace_period, plan.max_retry))
    except Exception as e:
        raise config_error("hydra.sweeper.storage", mask_url(plan.storage_url),
                           "an RDB URL such as sqlite:///path/optuna.db",
                           f"{type(e).__name__}: {e}") from None
    with optuna_quiet():
        study = optuna.create_study(
            study_name=plan.study_name, storage=OneReadStorage(storage),
            pruner=instantiate(plan.pruner, _convert_="all") if plan.pruner else None,
            directions=list(plan.directions), load_if_exists=True)
    existing = tuple(d.name.lower() for d in study.directions)
    if existing != plan.directions:
        raise config_error("hydra.sweeper.direction", list(plan.directions),
                           f"{list(existing)} (study '{plan.study_name}' exists with them)")
    attrs = study._storage.get_study_system_attrs(study._study_id)
    if STUDY_UID_ATTR not in study.user_attrs:  # one id per study
        study.set_user_attr(STUDY_UID_ATTR, uuid.uuid4().hex)
    check_resume(study, attrs.get(CONDITIONS_ATTR), plan)
    worker = int(attrs.get(WORKERS_ATTR, 0))  # this process' number among all that joined
    study._storage.set_study_system_attr(study._study_id, WORKERS_ATTR, worker + 1)
    study.sampler = sampler(plan.sampler, worker)
    if plan.metric_names and tuple(study.metric_names or ()) != plan.metric_names:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(plan.metric_names))
    n_enqueued = enqueue_once(study, plan)
    if plan.warm_start is not None:
        url, name, top_k = plan.warm_start
        earlier = optuna.load_study(study_name=name, storage=(
            study._storage if url == plan.storage_url else open_storage(url)))
        n_enqueued += warm_start.seed(study, earlier, top_k, plan.space.distributions,
                                      mask_url(url))[0]
    requeue_stopped(study, plan.max_retry)
    if plan.heartbeat_interval:  # asked, then killed before a first heartbeat: never stale
        fail_orphans(study, "its process ended before it started (no heartbeat)",
                     older_than=plan.grace_period or 2 * plan.heartbeat_interval)
    return study, n_enqueued


def sampler(cfg: dict[str, Any], worker: int) -> Any:
    """The sampler of worker `worker`: worker 0's seeded as configured, the others' with a seed
    derived from (seed, worker) (see the module doc)."""
    if worker and cfg.get("seed") is not None:
        seed = np.random.SeedSequence([int(cfg["seed"]), worker]).generate_state(1)[0] >> 1
        cfg = {**cfg, "seed": int(seed)}
    return make("hydra.sweeper.sampler", cfg, "an optuna sampler config")


def check_resume(study: optuna.Study, recorded: dict[str, str] | None, plan: SweepPlan) -> None:
    """Record the conditions on a new study; refuse to join one recorded with other ones."""
    space = plan.space
    conditions = {key: line.partition("=")[2] for key, line in space.fixed.items()}
    conditions.update({key: space.exprs.get(key, repr(dist))
                       for key, dist in space.distributions.items()})
    if recorded is None:
        study._storage.set_study_system_attr(study._study_id, CONDITIONS_ATTR, conditions)
        return
    allowed = plan.allow_changed_overrides
    if allowed is True:
        return
    may_change = set(allowed) if not isinstance(allowed, bool) else set()
    differ = sorted(key for key in set(recorded) | set(conditions)
                    if not same_override(key, recorded.get(key), conditions.get(key))
                    and key.lstrip("+~") not in may_change)
    if differ:
        shown = "; ".join(f"{key}: {recorded.get(key, '(not set)')} -> "
                          f"{conditions.get(key, '(not set)')}" for key in differ)
        raise config_error(
            "hydra.sweeper.allow_changed_overrides",
            allowed if isinstance(allowed, bool) else list(allowed),
            f"true (or a list of keys) to resume study '{study.study_name}' with other "
            f"overrides than it started with ({shown}); or start another study "
            "(hydra.sweeper.study_name=...)")


def enqueue_once(study: optuna.Study, plan: SweepPlan) -> int:
    """Enqueue known-good configs once per study: an entry is not enqueued again on resume."""
    done = list(study.user_attrs.get(ENQUEUED_ATTR) or [])
    new = [e for e in plan.enqueue if json.dumps(e, sort_keys=True, default=str) not in done]
    if not new:
        return 0
    study.set_user_attr(ENQUEUED_ATTR, done + [json.dumps(e, sort_keys=True, default=str)
                                               for e in new])
    for entry in new:
        study.enqueue_trial({str(key): stored_value(plan.space.distributions.get(key), value)
                             for key, value in entry.items()}, skip_if_exists=True)
    return len(new)
