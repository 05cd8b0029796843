"""Warm starts: a new study tries an earlier study's best params first.

The case it serves: a quick sweep on a slice of the data (or in a narrower space) found good
regions; the full-data sweep, or the wider one, should begin there instead of from scratch. The
earlier study's best `top_k` COMPLETE trials are enqueued, each with those of its params the new
search space has and can hold (the others are sampled); a trial with a value the new space cannot
hold is left out and named. The new study records where it was seeded from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import open_storage
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import holds
from hydra_plugins.optuna_mlflow_sweeper._impl.services import check_storage, checked_db_url
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    absolute_sqlite_url,
    mask_url,
    sqlite_path,
)

log = logging.getLogger(__name__)

SEEDED_FROM_ATTR = "optuna_mlflow:warm_start"
KEY = "hydra.sweeper.warm_start.storage"


def checked_source(cfg: Any, storage_url: str, study_name: str) -> tuple[str, str, int] | None:
    """(storage URL, study name, top_k) of the earlier study `hydra.sweeper.warm_start` names,
    read before anything is created (None: no warm start); one line naming the key when it is not
    there. A SQLite file that does not exist holds no study: it is not opened (that creates it)."""
    if not cfg.study_name:
        return None
    if type(cfg.top_k) is not int or cfg.top_k < 1:
        raise config_error("hydra.sweeper.warm_start.top_k", cfg.top_k, "an integer >= 1")
    url = checked_db_url(absolute_sqlite_url(cfg.storage), KEY) if cfg.storage \
        else storage_url
    if url != storage_url:
        check_storage(url, KEY)
    path = sqlite_path(url)
    names = [] if path is not None and not os.path.exists(path) else \
        optuna.get_all_study_names(open_storage(url))
    if cfg.study_name not in names or (cfg.study_name == study_name and url == storage_url):
        raise config_error("hydra.sweeper.warm_start.study_name", cfg.study_name,
                           f"an earlier study in {mask_url(url)}: one of {sorted(names)}")
    return url, cfg.study_name, cfg.top_k


def best_trials(study: optuna.Study, top_k: int) -> list[FrozenTrial]:
    """The best `top_k` COMPLETE trials: Optuna's best (the Pareto front for several objectives)
    by trial number, then the rest by their first objective."""
    front = sorted(study.best_trials, key=lambda t: t.number)
    on_front = {t.number for t in front}
    sign = 1.0 if study.directions[0] == StudyDirection.MINIMIZE else -1.0
    rest = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.number not in on_front), key=lambda t: (sign * t.values[0], t.number))
    return (front + rest)[:top_k]


def fitting_params(
    trials: Sequence[FrozenTrial], distributions: Mapping[str, BaseDistribution]
) -> tuple[list[dict[str, Any]], list[str]]:
    """(params to enqueue, one reason per trial left out). Each entry holds the trial's params
    that the new space has; a trial with a value outside its new distribution is left out."""
    entries: list[dict[str, Any]] = []
    misfits: list[str] = []
    for t in trials:
        outside = [f"{key}={value!r}" for key, value in t.params.items()
                   if key in distributions and not holds(distributions[key], value)]
        if outside:
            misfits.append(f"trial {t.number}: {', '.join(outside)} outside the new search space")
            continue
        entry = {key: value for key, value in t.params.items() if key in distributions}
        if entry:
            entries.append(entry)
        else:
            misfits.append(f"trial {t.number}: none of its params is in the new search space")
    return entries, misfits


def seed(study: optuna.Study, earlier: optuna.Study, top_k: int,
         distributions: Mapping[str, BaseDistribution], source: str) -> tuple[int, list[str]]:
    """Enqueue `earlier`'s best fitting params into `study`, once: (how many, misfits).

    A study already seeded (a resume) is left as it is, so nothing is enqueued twice."""
    if study.user_attrs.get(SEEDED_FROM_ATTR):
        return 0, []
    best = best_trials(earlier, top_k)
    entries, misfits = fitting_params(best, distributions)
    study.set_user_attr(SEEDED_FROM_ATTR, {
        "source": source, "study_name": earlier.study_name, "top_k": top_k,
        "trials": [t.number for t in best if not any(m.startswith(f"trial {t.number}:")
                                                     for m in misfits)],
    })
    for entry in entries:
        study.enqueue_trial(entry, skip_if_exists=True)
    for misfit in misfits:
        log.warning("warm start from %s: %s: not enqueued", earlier.study_name, misfit)
    return len(entries), misfits
