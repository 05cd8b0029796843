"""Trial side: what task code calls while the `optuna_mlflow` sweeper runs it (public: ../trial.py).

Works in any process that runs a trial (in-process basic launcher, joblib/loky workers, remote
launchers): everything it needs arrives as environment variables the sweeper sets per job through
`hydra.job.env_set`. Outside a sweep every function is a cheap no-op.

    from hydra_plugins.optuna_mlflow_sweeper import report

    for epoch in range(epochs):
        ...
        report(val_accuracy, epoch + 1)  # raises optuna.TrialPruned when the pruner says so

Imports nothing heavy at module level (optuna is imported on first use inside a sweep).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hydra_plugins.optuna_mlflow_sweeper._impl.env import (
    ENV_HEARTBEAT,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL_ID,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.heartbeat import (
    BaseHeartbeat,
    NullHeartbeat,
    beating,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import known_secrets, redact

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

# trial system attr holding the pruner config ({_target_: ..., args}) the sweeper uses
PRUNER_ATTR = "optuna_mlflow:pruner"
# trial system attr: where the trial keeps its checkpoint; a retry inherits it (study.retry_later
# and Optuna's heartbeat retry copy the failed trial's system attrs), wherever it runs
CHECKPOINT_ATTR = "optuna_mlflow:checkpoint"

_lock = threading.Lock()
_cache: dict[str, Any] = {"key": None, "trial": None}
_storages: dict[str, Any] = {}
_warned_multi = False


def in_sweep() -> bool:
    """True when this process runs a trial of the optuna_mlflow sweeper."""
    return bool(os.environ.get(ENV_STORAGE) and os.environ.get(ENV_STUDY)
                and os.environ.get(ENV_TRIAL_ID))


def current_trial() -> optuna.Trial | None:
    """The running trial (lent by the sweeper in this process, or reconstructed from storage
    and cached per process), or None."""
    if not in_sweep():
        return None
    key = _key(os.environ[ENV_STORAGE], os.environ[ENV_STUDY], os.environ[ENV_TRIAL_ID])
    with _lock:
        if _cache["key"] != key:
            _cache["trial"] = _load_trial(
                os.environ[ENV_STORAGE], os.environ[ENV_STUDY], int(os.environ[ENV_TRIAL_ID])
            )
            _cache["key"] = key
            # until this process no longer runs that trial (the job ended, or the next began)
            _beat(_cache["trial"], None, lambda: _cache["key"] == key and in_sweep()).start()
        return _cache["trial"]


@contextlib.contextmanager
def lent(storage_url: str, study_name: str, trial: optuna.Trial) -> Iterator[None]:
    """While the block runs, a job in this process (Hydra's basic launcher in a worker) gets
    the worker's own `trial` from `current_trial()`: its study, pruner and heartbeat, instead of
    loading the trial again (three reads) and beating it from a second thread."""
    key = _key(storage_url, study_name, str(trial._trial_id))
    with _lock:
        _cache["key"], _cache["trial"] = key, trial
    try:
        yield
    finally:
        with _lock:
            if _cache["key"] == key:
                _cache["key"] = _cache["trial"] = None


def _key(storage_url: str, study_name: str, trial_id: str) -> str:
    return "|".join((storage_url, study_name, trial_id))


def report(value: float, step: int) -> None:
    """Report an intermediate objective value; raise optuna.TrialPruned if the pruner says so.

    No-op outside a sweep, and for multi-objective studies (Optuna cannot prune those).
    """
    trial = current_trial()
    if trial is None:
        return
    global _warned_multi
    if len(trial.study.directions) > 1:
        if not _warned_multi:  # a task reports whatever the sweep: nothing for its user to do
            log.debug("report() is ignored: multi-objective trials cannot be pruned")
            _warned_multi = True
        return
    import optuna

    trial.report(float(value), int(step))
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {step}")


@contextlib.contextmanager
def trial_heartbeat(interval: int | None = None) -> Iterator[optuna.Trial | None]:
    """Record heartbeats for the current trial while the block runs (yields the trial or None).

    current_trial() already starts a heartbeat when the sweeper enables them; use this for long
    work before the first report(), or to pick the interval yourself.
    """
    trial = current_trial()
    with NullHeartbeat() if trial is None else _beat(trial, interval, in_sweep):
        yield trial


def recorded_checkpoint() -> str | None:
    """Where the trial this one retries kept its checkpoint (`record_checkpoint`), or None (not
    a retry, none recorded, outside a sweep). Read from the study, so a retry finds it whatever
    folder or machine it runs in. A password in it was recorded as `***`."""
    trial = current_trial()
    if trial is None:
        return None
    location = trial.study._storage.get_trial_system_attrs(trial._trial_id).get(CHECKPOINT_ATTR)
    return None if location is None else str(location)


def record_checkpoint(location: str) -> None:
    """Record where the running trial keeps its checkpoint, before its first one is written
    (a password in the location is recorded masked). No-op outside a sweep."""
    trial = current_trial()
    if trial is not None:
        masked = redact(location, known_secrets([location]))
        trial.study._storage.set_trial_system_attr(trial._trial_id, CHECKPOINT_ATTR, masked)


def _load_trial(storage_url: str, study_name: str, trial_id: int) -> optuna.Trial:
    import warnings

    import optuna
    from hydra.utils import instantiate

    storage = _storages.get(storage_url)
    if storage is None:  # one engine per URL and process (a process may run many trials)
        from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import open_storage

        storage = _storages[storage_url] = open_storage(storage_url)
    pruner_config = storage.get_trial_system_attrs(trial_id).get(PRUNER_ATTR)
    pruner = (instantiate(pruner_config, _convert_="all") if pruner_config
              else optuna.pruners.NopPruner())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Params were sampled by the sweeper; a cheap sampler suffices here.
        study = optuna.load_study(
            study_name=study_name, storage=storage, pruner=pruner,
            sampler=optuna.samplers.RandomSampler(),
        )
        return optuna.trial.Trial(study, trial_id)


def _beat(trial: optuna.Trial, interval: int | None, alive: Callable[[], bool]) -> BaseHeartbeat:
    """Heartbeats of `trial` every `interval` s (default: the sweeper's), while `alive()`."""
    interval = interval or int(os.environ.get(ENV_HEARTBEAT) or 0)
    return beating(trial.study._storage, [trial._trial_id], interval, alive)
