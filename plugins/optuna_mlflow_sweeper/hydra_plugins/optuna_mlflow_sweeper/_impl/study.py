"""The Optuna side of a running sweep: one read of the trials per decision, counts, stale trials."""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl.resilient import ResilientRDBStorage, StaleTrialRetry
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import poll

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 10.0  # a line while waiting for a killed sweep's trials

PARENT_RUN_ATTR = "mlflow_parent_run_id"
# Names this study, not just its name in its storage: a study started over in a new database
# file at the same path has the same name and storage URL, and must not adopt the old parent run.
STUDY_UID_ATTR = "optuna_mlflow:uid"
# why a trial was stopped; both promise that it runs again when the sweep resumes
INTERRUPTED = "interrupted (Ctrl-C): runs again first when the sweep resumes"
TERMINATED = "stopped (SIGTERM): runs again first when the sweep resumes, from its checkpoint"


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's INFO lines ("A new study created...") off: the sweeper says it in its own words."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


class OneReadStorage(_CachedStorage):
    """Optuna's own cache of a study's trials (what `create_study` wraps an RDB storage in),
    read from the database once per decision.

    Optuna refreshes its cache on every look at the trials: the budget, `study.ask` (its waiting
    trials), a sampler, the best trial each read again, one transaction each. Within
    `one_read()` the first look reads and the others see that read; writes go through as ever.
    """

    def __init__(self, backend: ResilientRDBStorage) -> None:
        super().__init__(backend)
        self._held = self._read = False

    @contextlib.contextmanager
    def one_read(self) -> Iterator[None]:
        self._held, self._read = True, False
        try:
            yield
        finally:
            self._held = False

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        if self._held and self._read:
            return
        super()._read_trials_from_remote_storage(study_id)
        self._read = self._held


def one_read(study: optuna.Study) -> contextlib.AbstractContextManager[None]:
    """The study's trials read once while the block runs (`OneReadStorage`)."""
    storage = study._storage
    return storage.one_read() if isinstance(storage, OneReadStorage) else contextlib.nullcontext()


def asked_system_attrs(trial: optuna.Trial) -> dict[str, Any]:
    """The system attrs a trial was asked with (an enqueued trial's `fixed_params`, a retry's
    `failed_trial`), as `study.ask` read them: Optuna keeps no public copy, and they do not
    change while it runs."""
    return trial._cached_frozen_trial.system_attrs


def write_trial(study: optuna.Study, trial_id: int, user_attrs: dict[str, Any],
                system_attrs: dict[str, Any]) -> None:
    """A running trial's attrs, and its heartbeat where the storage keeps them, in one
    transaction (`ResilientRDBStorage.write_trial`)."""
    backend: ResilientRDBStorage = study._storage._backend
    backend.write_trial(trial_id, user_attrs, system_attrs,
                        heartbeat=bool(backend.get_heartbeat_interval()))


@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0  # not retried
    running: int = 0
    waiting: int = 0

    @property
    def used(self) -> int:
        """Trials that count against n_trials (finished, not retried, or running)."""
        return self.complete + self.pruned + self.failed + self.running

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """The numbers of the trials whose retry is queued or ran (`retry_later`'s history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def count_trials(trials: Sequence[FrozenTrial]) -> Counts:
    retried = retried_numbers(trials)
    counts = Counts()
    for t in trials:
        if t.state == TrialState.COMPLETE:
            counts.complete += 1
        elif t.state == TrialState.PRUNED:
            counts.pruned += 1
        elif t.state == TrialState.FAIL and t.number not in retried:
            counts.failed += 1
        elif t.state == TrialState.RUNNING:
            counts.running += 1
        elif t.state == TrialState.WAITING:
            counts.waiting += 1
    return counts


def fail_stale_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Fail running trials whose heartbeat stopped (their process died), each queued to run
    again; those this process failed (`StaleTrialRetry`), in one query when none is stale.
    A trial another process failed, as stale or as its own outcome, is not among them."""
    backend = _rdb(study._storage)
    noted = backend.get_heartbeat_stale_trial_callback() if backend is not None else None
    if not isinstance(noted, StaleTrialRetry):
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed, noted.failed[:] = list(noted.failed), []
    return failed


def fail_orphans(
    study: optuna.Study, reason: str, exclude: set[int] | None = None,
    older_than: float | None = None,
) -> list[int]:
    """Fail RUNNING trials that never had a heartbeat: a process asked them and died (or failed)
    before the first one, so heartbeat checks would never reclaim them and the study would jam.

    `exclude` (the trial ids before a failed `ask`): fail the one trial that ask created, if it
    is unambiguous. `older_than` (seconds, at start-up): fail every such trial that old, to be
    retried, since its process is long gone. Workers settling one study at once may both find
    an orphan: the storage lets one of them fail it (and queue its retry); the numbers returned
    are those this process failed.
    """
    storage, backend = study._storage, _rdb(study._storage)
    if backend is None:  # no heartbeats kept: nothing tells an orphan from a running trial
        return []
    beating = set(backend.heartbeat_times())
    now = datetime.datetime.now()
    orphans = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t._trial_id not in beating
        and (exclude is None or t._trial_id not in exclude)
        and (older_than is None or t.datetime_start is None
             or (now - t.datetime_start).total_seconds() > older_than)
    ]
    if exclude is not None and len(orphans) != 1:
        return []  # another worker's trial, about to get its first heartbeat: not ours
    failed = []
    for t in orphans:
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process settling the study failed it first, and retries it
        if older_than is not None:
            retry_later(study, storage.get_trial(t._trial_id))
        log.warning("trial %d failed: %s", t.number, reason)
        failed.append(t.number)
    return failed


def retry_later(study: optuna.Study, trial: FrozenTrial, max_retry: int | None = None) -> None:
    """Queue a failed trial's params to run again first, by Optuna's heartbeat retry
    (`failed_trial`, `retry_history`), without its user attrs (its failure, its MLflow run)."""
    trial = copy.deepcopy(trial)  # the callback appends to the trial's own retry_history
    trial.user_attrs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry)(study, trial)


def requeue_stopped(study: optuna.Study, max_retry: int | None = None) -> list[int]:
    """Queue the retry of every stopped trial (Ctrl-C, SIGTERM) that has none; their numbers.

    A stopped trial is recorded FAIL, then its retry is queued: a process that ends between the
    two (a second Ctrl-C exits at once) leaves the trial failed with the promise "runs again" and
    nothing queued. Run by every process joining the study, so the promise holds on resume.
    """
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    lost = [t for t in trials if t.state == TrialState.FAIL and t.number not in retried
            and t.user_attrs.get("fail_reason") in (INTERRUPTED, TERMINATED)]
    for t in lost:
        log.info("trial %d was stopped without its retry queued: queued now", t.number)
        retry_later(study, t, max_retry)
    return [t.number for t in lost]


def wait_for_stale(
    study: optuna.Study, on_failed: Callable[[FrozenTrial], None], interval: float = 1.0,
    on_progress: Callable[[str], None] | None = None,
) -> None:
    """Wait until every RUNNING trial has beaten again (a live process runs it) or gone stale
    (failed, here or by another process that looks, and queued again by the storage's
    stale-trial callback; those failed here are handed to `on_failed`). At most the grace
    period plus a beat; every ~10 s (a third of a shorter grace period) `on_progress` gets a
    line saying what it waits for.

    Why: right after a sweep was killed as a whole, its last trials are RUNNING with fresh
    heartbeats. They count against the budget, so a rerun that did not wait would find
    "nothing to run", and the study would stay jammed with trials nobody runs.
    """
    backend = _rdb(study._storage)
    if backend is None or not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return
    beat = backend.get_heartbeat_interval()
    grace = backend.grace_period or 2 * beat
    first = backend.heartbeat_times()
    every = min(PROGRESS_EVERY_S, max(1.0, grace / 3))
    started = time.monotonic()
    next_line = started + every

    def settled() -> bool:
        nonlocal next_line
        for trial in fail_stale_trials(study):
            on_failed(trial)
        fail_orphans(study, "its process ended before it started (no heartbeat)",
                     older_than=grace)
        beats = backend.heartbeat_times()
        silent = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                  if beats.get(t._trial_id) == first.get(t._trial_id)]
        if silent and on_progress is not None and time.monotonic() >= next_line:
            next_line = time.monotonic() + every
            on_progress(f"waited {time.monotonic() - started:.0f} of up to {grace:g} s for the "
                        f"heartbeat of trial(s) {', '.join(map(str, silent))}: none yet; without "
                        "one they are failed and run again here")
        return not silent

    poll(settled, timeout=grace + beat + 5 * interval, interval=interval)


def _rdb(storage: BaseStorage) -> ResilientRDBStorage | None:
    """The RDB storage under a study's cache, if it keeps heartbeats (else None)."""
    storage = getattr(storage, "_backend", storage)  # a study wraps an RDBStorage in a cache
    if not isinstance(storage, ResilientRDBStorage) or not storage.get_heartbeat_interval():
        return None
    return storage
