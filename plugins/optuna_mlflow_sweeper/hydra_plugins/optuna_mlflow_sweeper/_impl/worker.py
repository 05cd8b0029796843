"""One worker: ask a trial, run it as a Hydra job in this process, tell its outcome, repeat.

A worker keeps its process warm (the framework, the data, compiled state stay loaded between
trials) and never waits for another worker: parallel sweeps are several workers on one study,
started as local processes (pool.py), by a Hydra launcher, or as the same command on other
machines. Each trial is recorded as it goes: FAIL with its reason when it cannot even start, a
heartbeat while it runs (so a killed worker's trial is failed and retried by whoever looks next),
and on Ctrl-C FAIL in Optuna (queued to run again first) and KILLED in MLflow.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from hydra.utils import get_method
from omegaconf import DictConfig
from optuna.study._tell import _tell_with_warning
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl import interrupts, launchers, results
from hydra_plugins.optuna_mlflow_sweeper._impl.console import PREFIX, say, trial_line
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweepAborted
from hydra_plugins.optuna_mlflow_sweeper._impl.heartbeat import beating
from hydra_plugins.optuna_mlflow_sweeper._impl.jobs import env_overrides, outcome, trial_overrides
from hydra_plugins.optuna_mlflow_sweeper._impl.locks import budget_lock
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import override
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import SweepPlan
from hydra_plugins.optuna_mlflow_sweeper._impl.session import Session
from hydra_plugins.optuna_mlflow_sweeper._impl.study import (
    INTERRUPTED,
    TERMINATED,
    Counts,
    asked_system_attrs,
    count_trials,
    fail_orphans,
    fail_stale_trials,
    one_read,
    retry_later,
    wait_for_stale,
    write_trial,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.trial import PRUNER_ATTR, lent

log = logging.getLogger(__name__)


@dataclass
class Job:
    """An asked trial, on its way to run as a Hydra job."""

    trial: optuna.Trial
    overrides: list[str]
    lines: list[str] = field(default_factory=list)  # overrides + the trial's environment
    run_id: str | None = None
    retry_of: int | None = None
    error: str | None = None
    state: TrialState | None = None


def budget_spent(p: SweepPlan, s: Session, say_so: bool = False,
                 counts: Counts | None = None) -> bool:
    """Whether the study's trials (finished, or running anywhere; `counts` if read already)
    use up its budget."""
    counts = counts or count_trials(s.study.get_trials(deepcopy=False))
    if p.n_trials - counts.used > 0:
        return False
    if say_so and not counts.running:
        say(p.progress, f"{PREFIX} study {p.study_name} already has {counts.used}/"
            f"{int(p.n_trials)} trials: nothing to run. Raise hydra.sweeper.n_trials, or start "
            "over with another hydra.sweeper.study_name (or delete the sweep's optuna.db)")
    return True


def budget_left_after_settling(p: SweepPlan, s: Session) -> bool:
    """Whether trials are left to run once the RUNNING ones that hold the rest of the budget
    are known to be alive or failed as stale (then queued again: to be run here).

    The budget counts RUNNING trials. When they belong to a sweep that was killed as a whole
    (SIGKILL, two quick Ctrl-Cs), nobody runs them: wait until their heartbeats show it, fail
    them and run their retries, instead of leaving the study jammed. Workers that settle at
    once each go by the budget afterwards, whichever of them failed the stale trials.
    """
    counts = count_trials(s.study.get_trials(deepcopy=False))
    if not counts.running or not p.heartbeat_interval:
        return False
    say(p.progress, f"{PREFIX} {counts.running} trial(s) of the budget are RUNNING: waiting "
        "(up to the grace period) to see whether their processes still beat")
    wait_for_stale(s.study, lambda t: end_stale_run(s, t),
                   on_progress=lambda line: say(p.progress, f"{PREFIX} {line}"))
    counts = count_trials(s.study.get_trials(deepcopy=False))
    if not budget_spent(p, s, counts=counts):
        return True
    if counts.running:
        say(p.progress, f"{PREFIX} {counts.running} trial(s) still run in other processes")
    return False


def end_stale_run(s: Session, trial: FrozenTrial) -> None:
    """A trial failed as stale (its process died): say so, and end its MLflow child run."""
    log.warning("trial %d lost its heartbeat (process died): failed, to be retried",
                trial.number)
    run_id = trial.user_attrs.get("mlflow_run_id")
    if s.tracker is not None and run_id:
        s.tracker.finish_child(run_id, "FAIL", None, "heartbeat lost (process died)")


JUDGED_OVER = 5  # trials (or the whole budget, if smaller) a failure rate is judged over


def too_many_failures(failed: int, done: int, rate: float, n_trials: float) -> bool:
    """Whether `failed` of `done` trials exceed `rate`, counted over at least
    min(n_trials, JUDGED_OVER) trials: 1 of 1 is not a rate. Stops as soon as the rate is
    exceeded whatever the rest of those trials do (so a rate of 0 stops at the first failure)."""
    return failed > rate * max(done, min(n_trials, JUDGED_OVER))


class Worker:
    """The trial loop of one process. `launcher` runs a job here (Hydra's basic launcher)."""

    def __init__(self, p: SweepPlan, s: Session, config: DictConfig, loader: Any,
                 launcher: Any) -> None:
        self.p, self.s, self.config, self.loader, self.launcher = p, s, config, loader, launcher
        self.custom = get_method(p.custom_search_space) if p.custom_search_space else None
        self.done = self.failed = 0
        self.last_failure: str | None = None  # named when too many trials failed
        self.current: Job | None = None  # the trial asked and not yet told
        self.reported = 0  # trials done whose progress was reported
        self.others_running = True  # trials of other processes may be running (stale ones?)
        self._objective: str | None = None  # the objective's name, read once
        # another launcher's job may start in another folder (a Ray node's): the trial's job
        # folder is named absolutely, as the workers' are (pool.worker_jobs)
        self._where = ([] if launcher is None or launchers.is_basic(launcher) else
                       [override("hydra.sweep.dir", os.path.abspath(p.sweep_dir))])

    def run(self) -> None:
        """Trials until the study's budget (or the timeout) is used up; Ctrl-C records and
        re-raises KeyboardInterrupt, too many failures raise SweepAborted.

        Each trial: ask, one heartbeat, run, tell. Its storage round trips are Optuna's own
        (ask: waiting trials, create, read, params; tell: read, state) plus the lock, one read
        of the trials per decision, and one write of the trial's attrs with its first beat.
        """
        p, s = self.p, self.s
        deadline = time.monotonic() + p.timeout if p.timeout else None
        while True:
            if self.others_running:  # their trials may be stale (a process died): fail them
                for trial in fail_stale_trials(s.study):
                    end_stale_run(s, trial)
            self.current = None
            try:
                trial, counts = self._ask(deadline)
                if trial is None:
                    if counts is None or not budget_left_after_settling(p, s):
                        return
                    continue
                job = self.current = Job(trial, [])
                # from the first beat on (with its attrs), a dead worker leaves a stale,
                # retryable trial; the beats go on while its MLflow run is created (which
                # waits out a server outage)
                with beating(s.study._storage, [trial._trial_id], first=False), \
                        lent(p.storage_url, p.study_name, trial):
                    self._make_job(job)
                    result = ((TrialState.FAIL, None, job.error) if job.error
                              else outcome(self._launch(job), len(p.directions)))
                stop = interrupts.pending()
                if stop is not None and result[0] == TrialState.FAIL:
                    # the stop's doing: it landed in code that turned it into another error
                    # (composing the job, a library's cleanup): recorded as stopped, to rerun
                    raise stop
                self._tell(job, *result)
            except KeyboardInterrupt as e:
                interrupts.acknowledge(e)
                if self.current is not None:  # asked: interrupted wherever it was
                    reason = (TERMINATED if isinstance(e, interrupts.Terminated)
                              else INTERRUPTED)
                    self._tell(self.current, TrialState.FAIL, None, reason,
                               mlflow_status="KILLED")
                raise
            lost = interrupts.pending()
            if lost is not None:  # a stop lost in the trial: the trial finished; stop now
                raise lost
            self.done += 1
            self.failed += job.state == TrialState.FAIL
            if too_many_failures(self.failed, self.done, p.max_failure_rate, p.n_trials):
                self.report()
                raise SweepAborted(
                    f"{self.failed} of {self.done} trials failed, more than "
                    f"hydra.sweeper.max_failure_rate={p.max_failure_rate}; last failure: "
                    f"{self.last_failure}"
                )

    def _make_job(self, job: Job) -> None:
        """Make an asked trial runnable; whatever goes wrong is its FAIL reason (`job.error`).
        Its attrs (overrides, MLflow run, pruner) are written together, with its first beat."""
        p, s, trial = self.p, self.s, job.trial
        try:
            job.overrides = trial_overrides(trial, p.space, self.custom, self.config)
        except Exception as e:
            job.error = f"invalid overrides: {type(e).__name__}: {e}"
        user_attrs: dict[str, Any] = {"overrides": job.overrides}
        job.retry_of = asked_system_attrs(trial).get("failed_trial")
        if s.tracker is not None:
            job.run_id = user_attrs["mlflow_run_id"] = s.tracker.start_child(
                trial.number, p.study_name, trial.params, job.overrides,
                {"optuna.retry_of": job.retry_of} if job.retry_of is not None else None,
            )
        system_attrs = {PRUNER_ATTR: p.pruner} if p.pruner else {}
        write_trial(s.study, trial._trial_id, user_attrs, system_attrs)
        job.lines = job.overrides + self._where + env_overrides(
            p.storage_url, p.study_name, trial, p.heartbeat_interval,
            s.tracker.env(job.run_id) if s.tracker and job.run_id else None,
            exclude=p.secret_env,
        )
        if job.error is None:
            try:  # composed once: the launcher takes this config
                self.loader.compose(self.config, job.lines)
            except Exception as e:
                job.error = f"invalid overrides: {type(e).__name__}: {e}"

    def _ask(self, deadline: float | None) -> tuple[optuna.Trial | None, Counts | None]:
        """One decision on one read of the study's trials: the progress of the trial just told,
        then `study.ask` if the budget and the timeout leave room. (trial, counts); (None,
        counts): the budget is spent; (None, None): the timeout is reached. A trial whose
        sampling raises is failed (not orphaned). The check and the ask hold a lock on the
        study: two workers that saw the last free trial at once both ran it (n_trials + 1)."""
        p, s = self.p, self.s
        with budget_lock(p.storage_url):
            with one_read(s.study):
                trials = s.study.get_trials(deepcopy=False)
                counts = count_trials(trials)
                self.others_running = bool(counts.running)
                if self.done > self.reported:
                    self.report(counts=counts)
                    self.reported = self.done
                if budget_spent(p, s, say_so=not self.done, counts=counts):
                    return None, counts
                if deadline is not None and time.monotonic() >= deadline:
                    log.info("timeout of %ss reached: no new trials", p.timeout)
                    return None, None
                before = {t._trial_id for t in trials}
                with warnings.catch_warnings():  # "Heartbeat ... to be used with optimize"
                    warnings.simplefilter("ignore", UserWarning)
                    try:
                        return s.study.ask(p.space.distributions), counts
                    except Exception as e:
                        error = e
            reason = f"could not be sampled: {type(error).__name__}: {error}"
            fail_orphans(s.study, exclude=before, reason=reason)
            raise error

    def _launch(self, job: Job) -> Any:
        """The trial as a Hydra job here; its JobReturn."""
        say(self.p.progress, trial_line(job.trial.number, job.trial.params, job.retry_of))
        with interrupts.trial_in_progress():
            [ret] = self.launcher.launch([job.lines], initial_job_idx=job.trial.number)
        return ret

    def _tell(
        self, job: Job, state: TrialState, values: list[float] | None, reason: str | None,
        mlflow_status: str | None = None,
    ) -> None:
        p, s = self.p, self.s
        if job.state is not None:
            return
        job.state = state
        if reason:
            self.last_failure = f"trial {job.trial.number}: {reason}"
            log.warning("trial %d failed: %s", job.trial.number, reason)
            try:
                job.trial.set_user_attr("fail_reason", reason)
            except Exception:  # finished meanwhile (e.g. failed as stale by another process)
                pass
        try:
            # as `study.optimize` tells: `study.tell` reads the trial back once more to return it
            _tell_with_warning(s.study, job.trial, values, state, skip_if_finished=True)
        except RuntimeError as e:  # GridSampler calls study.stop() once the grid is exhausted
            if "Study.stop" not in str(e):
                raise
        if mlflow_status == "KILLED":  # interrupted, not broken: queue the same params again
            retry_later(s.study, s.study._storage.get_trial(job.trial._trial_id), p.max_retry)
        if s.tracker is not None and job.run_id:
            s.tracker.finish_child(job.run_id, state.name, values, reason, mlflow_status)

    def report(self, quiet: bool = False, counts: Counts | None = None) -> None:
        """The progress line, and the study's state on the parent run (from `counts` and the
        trials `one_read` holds, if read already)."""
        p, s = self.p, self.s
        counts = counts or count_trials(s.study.get_trials(deepcopy=False))
        if p.progress and not quiet:
            if self._objective is None and len(p.directions) == 1:
                self._objective = results.objective_names(s.study)[0]  # read once, at the start
            say(True, results.progress_line(s.study, counts, p.n_trials, self._objective))
        if s.tracker is None:
            return
        metrics: dict[str, Any] = {"n_complete": counts.complete, "n_pruned": counts.pruned,
                                   "n_failed": counts.failed}
        tags: dict[str, Any] = {}
        if len(p.directions) == 1:
            best = results.best_single(s.study)
            if best is not None:
                metrics["best_value"] = best.value
                metrics["best_trial"] = best.number
                tags = {"best_trial_number": best.number, "best_value": best.value,
                        "best_params": best.params}
        else:
            front = results.pareto(s.study)
            metrics["pareto_size"] = len(front)
            tags = {"pareto_trials": [t.number for t in front]}
        s.tracker.update_parent(metrics, tags, step=counts.finished)
