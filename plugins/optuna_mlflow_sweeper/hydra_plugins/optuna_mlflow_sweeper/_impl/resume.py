"""What a process joining a study must agree with, and what it must not repeat.

Every process that runs a sweep (a worker, a resumed command, the same command on another
machine) joins the study under the setup lock and gets a number. Its sampler's seed is derived
from the configured seed and that number, so a seeded sweep stays repeatable while no two workers
(nor a resumed run) draw the same sequence. The study records the conditions it started with (the
fixed overrides and the search space); a process that joins with other ones would mix conditions
in one study, so it is refused, naming what differs, unless `allow_changed_overrides` says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from hydra_plugins.optuna_mlflow_sweeper._impl import validation as check
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import format_value
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import SearchSpace, same_override

WORKERS_ATTR = "optuna_mlflow:workers"
CONDITIONS_ATTR = "optuna_mlflow:conditions"


def register_worker(study: optuna.Study) -> int:
    """This process' number among all that ever joined the study (call under the setup lock)."""
    storage = study._storage
    number = int(storage.get_study_system_attrs(study._study_id).get(WORKERS_ATTR, 0))
    storage.set_study_system_attr(study._study_id, WORKERS_ATTR, number + 1)
    return number


def reseed(sampler: Any, sampler_config: Any, space: SearchSpace, worker: int) -> Any:
    """Worker 0 keeps the configured seed (a one-process sweep repeats exactly); worker k > 0
    gets a seed derived from (seed, k): its own sequence, the same one every time."""
    cfg = check.plain(sampler_config) or {}
    seed = cfg.get("seed")
    if worker == 0 or seed is None:
        return sampler  # unseeded samplers already differ from process to process
    derived = int(np.random.SeedSequence([int(seed), worker]).generate_state(1)[0] >> 1)
    return check.make_sampler({**cfg, "seed": derived}, space)[0]


def fixed_conditions(space: SearchSpace) -> dict[str, str]:
    """Override key -> what every trial gets (a fixed value) or draws from (an expression)."""
    conditions = {key: line.partition("=")[2] for key, line in space.fixed.items()}
    conditions.update({key: space.exprs.get(key, repr(dist))
                       for key, dist in space.distributions.items()})
    return conditions


def check_resume(study: optuna.Study, conditions: Mapping[str, str], allowed: Any) -> None:
    """Record the conditions on a new study; refuse to join one recorded with other ones."""
    storage = study._storage
    recorded = storage.get_study_system_attrs(study._study_id).get(CONDITIONS_ATTR)
    if recorded is None:
        storage.set_study_system_attr(study._study_id, CONDITIONS_ATTR, dict(conditions))
        return
    may_change = set(check.plain(allowed) or []) if not isinstance(allowed, bool) else set()
    if allowed is True:
        return
    differ = sorted(
        key for key in set(recorded) | set(conditions)
        if not same_override(key, recorded.get(key), conditions.get(key))
        and key.lstrip("+~") not in may_change
    )
    if not differ:
        return
    shown = "; ".join(f"{key}: {recorded.get(key, '(not set)')} -> "
                      f"{conditions.get(key, '(not set)')}" for key in differ)
    raise config_error(
        "hydra.sweeper.allow_changed_overrides", allowed,
        f"true (or a list of keys) to resume study '{study.study_name}' with other overrides "
        f"than it started with ({shown}); or start another study "
        "(hydra.sweeper.study_name=...)",
    )


def check_enqueue(entries: Sequence[Mapping[str, Any]], space: SearchSpace) -> None:
    """Every enqueued value must be one the param's distribution can hold: otherwise Optuna
    fails the trial while sampling it, after it exists (a trial left RUNNING with no process)."""
    for i, entry in enumerate(entries):
        for key, value in entry.items():
            dist = space.distributions.get(str(key))
            if dist is None:
                continue
            if isinstance(dist, CategoricalDistribution) and isinstance(value, (list, dict)):
                value = format_value(value, interpolate=True)
            try:
                ok = dist._contains(dist.to_internal_repr(value))
            except Exception:
                ok = False
            if not ok:
                raise config_error(f"hydra.sweeper.enqueue.{i}.{key}", value,
                                   f"a value of {space.exprs.get(str(key), dist)}")
