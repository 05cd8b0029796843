"""The `optuna_mlflow` sweeper: ask a batch, launch it with Hydra's launcher, tell the results.

Everything is checked before the first trial (prepare.py); then per batch: fail stale trials,
count what the shared budget has left, ask up to n_jobs trials, create their MLflow child runs,
launch, tell each outcome, update the parent run and print one progress line.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig
from optuna.trial import TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl import results
from hydra_plugins.optuna_mlflow_sweeper._impl.console import PREFIX, say, sweep_console, trial_line
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweepAborted
from hydra_plugins.optuna_mlflow_sweeper._impl.jobs import env_overrides, outcome, trial_overrides
from hydra_plugins.optuna_mlflow_sweeper._impl.prepare import Prepared, prepare
from hydra_plugins.optuna_mlflow_sweeper._impl.study import (
    BatchHeartbeat,
    count_trials,
    fail_stale_trials,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import ui_links
from hydra_plugins.optuna_mlflow_sweeper._impl.trial import PRUNER_ATTR
from hydra_plugins.optuna_mlflow_sweeper.config import SweeperSettings

log = logging.getLogger(__name__)


@dataclass
class Plan:
    trial: optuna.Trial
    overrides: list[str]
    run_id: str | None = None
    retry_of: int | None = None
    error: str | None = None
    state: TrialState | None = None


class OptunaMlflowSweeperImpl(Sweeper):
    def __init__(self, settings: SweeperSettings) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.hydra_context is not None
        with sweep_console(bool(self.settings.progress), self.launcher):
            p = prepare(self.settings, self.config, self.hydra_context.config_loader, arguments)
            self._run(p)

    def _run(self, p: Prepared) -> None:
        # mlflow.start_run() deletes MLFLOW_RUN_ID from the job's environment; Hydra's env_set
        # restore then raises KeyError unless the variable existed before the job.
        exported = {"MLFLOW_RUN_ID": os.environ.get("MLFLOW_RUN_ID", ""), **p.secret_env}
        saved = {name: os.environ.get(name) for name in exported}
        os.environ.update(exported)
        status, in_flight = "FINISHED", []
        try:
            self._loop(p, in_flight)
        except BaseException as e:
            status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
            for plan in in_flight:
                try:
                    self._tell(p, plan, TrialState.FAIL, None,
                               f"sweep interrupted: {type(e).__name__}: {e}")
                except Exception as tell_error:  # keep the original error
                    log.warning("could not record trial %d: %s", plan.trial.number, tell_error)
            raise
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._finish(p, status)

    # ---- the loop ----
    def _loop(self, p: Prepared, in_flight: list[Plan]) -> None:
        deadline = time.monotonic() + p.timeout if p.timeout else None
        done = failed = 0
        while True:
            self._fail_stale(p)
            counts = count_trials(p.study.get_trials(deepcopy=False))
            remaining = p.n_trials - counts.used
            if remaining <= 0:
                if not done:
                    say(p.progress, f"{PREFIX} study {p.study_name} already has {counts.used}/"
                        f"{int(p.n_trials)} trials: nothing to run. Raise "
                        "hydra.sweeper.n_trials, or start over with another "
                        "hydra.sweeper.study_name (or delete the sweep's optuna.db)")
                break
            if deadline is not None and time.monotonic() >= deadline:
                log.info("timeout of %ss reached: no new trials", p.timeout)
                break
            in_flight.clear()
            for _ in range(int(min(p.n_jobs, remaining))):
                self._plan(p, in_flight)  # appends at once: an error later still tells it
            plans = list(in_flight)
            for plan in plans:
                if plan.error:
                    self._tell(p, plan, TrialState.FAIL, None, plan.error)
            self._launch(p, [plan for plan in plans if not plan.error])
            in_flight.clear()
            done += len(plans)
            failed += sum(plan.state == TrialState.FAIL for plan in plans)
            self._report(p)
            if failed / done > p.max_failure_rate:
                raise SweepAborted(
                    f"{failed} of {done} trials failed, more than "
                    f"hydra.sweeper.max_failure_rate={p.max_failure_rate}; last failure: "
                    f"{p.last_failure}"
                )

    def _plan(self, p: Prepared, in_flight: list[Plan]) -> None:
        with warnings.catch_warnings():  # "Heartbeat ... supposed to be used with optimize"
            warnings.simplefilter("ignore", UserWarning)
            trial = p.study.ask(p.space.distributions)
        plan = Plan(trial, [])
        in_flight.append(plan)
        storage = p.study._storage
        if p.heartbeat_interval:  # from now on a dead sweeper leaves a stale, retryable trial
            storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
        if p.pruner_config:
            storage.set_trial_system_attr(trial._trial_id, PRUNER_ATTR, p.pruner_config)
        try:
            plan.overrides = trial_overrides(trial, p.space, p.custom, self.config)
            self.hydra_context.config_loader.load_sweep_config(self.config, plan.overrides)
        except Exception as e:
            plan.error = f"invalid overrides: {type(e).__name__}: {e}"
        trial.set_user_attr("overrides", plan.overrides)
        plan.retry_of = storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        if p.tracker is not None:
            plan.run_id = p.tracker.start_child(
                trial.number, p.study_name, trial.params, plan.overrides,
                {"optuna.retry_of": plan.retry_of} if plan.retry_of is not None else None,
            )
            trial.set_user_attr("mlflow_run_id", plan.run_id)

    def _launch(self, p: Prepared, plans: list[Plan]) -> None:
        if not plans:
            return
        # job index = trial number, so the job's subdir names its trial; launch contiguous runs
        groups: list[list[Plan]] = []
        for plan in sorted(plans, key=lambda x: x.trial.number):
            if groups and groups[-1][-1].trial.number + 1 == plan.trial.number:
                groups[-1].append(plan)
            else:
                groups.append([plan])
        with BatchHeartbeat(p.study, [plan.trial._trial_id for plan in plans]):
            for group in groups:
                for plan in group:
                    say(p.progress, trial_line(plan.trial.number, plan.trial.params,
                                               plan.retry_of))
                batch = [
                    plan.overrides + env_overrides(
                        p.storage_url, p.study_name, plan.trial, p.heartbeat_interval,
                        p.tracker.env(plan.run_id) if p.tracker and plan.run_id else None,
                        exclude=p.secret_env,
                    )
                    for plan in group
                ]
                returns = self.launcher.launch(batch, initial_job_idx=group[0].trial.number)
                for plan, ret in zip(group, returns, strict=True):
                    self._tell(p, plan, *outcome(ret, len(p.directions)))

    def _tell(
        self, p: Prepared, plan: Plan, state: TrialState, values: list[float] | None,
        reason: str | None,
    ) -> None:
        if plan.state is not None:
            return
        plan.state = state
        if reason:
            p.last_failure = f"trial {plan.trial.number}: {reason}"
            log.warning("trial %d failed: %s", plan.trial.number, reason)
            try:
                plan.trial.set_user_attr("fail_reason", reason)
            except Exception:  # finished meanwhile (e.g. failed as stale by another process)
                pass
        try:
            p.study.tell(plan.trial, values=values, state=state, skip_if_finished=True)
        except RuntimeError as e:  # GridSampler calls study.stop() once the grid is exhausted
            if "Study.stop" not in str(e):
                raise
        if p.tracker is not None and plan.run_id:
            p.tracker.finish_child(plan.run_id, state.name, values, reason)

    def _fail_stale(self, p: Prepared) -> None:
        for trial in fail_stale_trials(p.study):
            log.warning("trial %d lost its heartbeat (process died): failed, to be retried",
                        trial.number)
            run_id = trial.user_attrs.get("mlflow_run_id")
            if p.tracker is not None and run_id:
                p.tracker.finish_child(run_id, "FAIL", None, "heartbeat lost (process died)")

    def _report(self, p: Prepared) -> None:
        counts = count_trials(p.study.get_trials(deepcopy=False))
        say(p.progress, results.progress_line(p.study, counts, p.n_trials))
        if p.tracker is None:
            return
        metrics: dict[str, Any] = {"n_complete": counts.complete, "n_pruned": counts.pruned,
                                   "n_failed": counts.failed}
        tags: dict[str, Any] = {}
        if len(p.directions) == 1:
            best = results.best_single(p.study)
            if best is not None:
                metrics["best_value"] = best.value
                metrics["best_trial"] = best.number
                tags = {"best_trial_number": best.number, "best_value": best.value,
                        "best_params": best.params}
        else:
            front = results.pareto(p.study)
            metrics["pareto_size"] = len(front)
            tags = {"pareto_trials": [t.number for t in front]}
        p.tracker.update_parent(metrics, tags, step=counts.finished)

    def _finish(self, p: Prepared, status: str) -> None:
        """optimization_results.yaml, summary plots, parent run status (best effort)."""
        try:
            self._report_quietly(p)
            counts = count_trials(p.study.get_trials(deepcopy=False))
            data = results.results_dict(p.study, counts, p.storage_masked,
                                        p.tracker.summary() if p.tracker else None)
            path = results.write_results(os.path.join(p.sweep_dir, "optimization_results.yaml"),
                                         data)
            if p.tracker is not None:
                p.tracker.log_artifact(path)
                results.log_plots(p.study, p.tracker.log_figure)
                if status == "FINISHED" and counts.running:
                    log.info("%d trials still run in other processes: parent run stays RUNNING",
                             counts.running)
                else:
                    p.tracker.finish_parent(status)
            # the answer, even with progress off
            print(f"{results.best_line(p.study, counts)}\n  all results     {path}", flush=True)
            if p.tracker is not None:
                say(p.progress, _where(p.tracker.summary()))
        except Exception as e:  # never mask the sweep's own outcome
            log.warning("finishing the sweep record failed: %s: %s", type(e).__name__, e)

    def _report_quietly(self, p: Prepared) -> None:
        try:
            progress, p.progress = p.progress, False
            self._report(p)
        finally:
            p.progress = progress


def _where(summary: dict[str, Any]) -> str:
    """Where to look next: the parent run, and its trials side by side, in the MLflow UI."""
    links = ui_links(summary["tracking_uri"], summary["experiment_id"],
                     summary["parent_run_id"])
    lines = [f"sweep recorded in MLflow as parent run {summary['parent_run_id']}"]
    if links["command"]:  # a local store: the UI has to be started first
        lines.append(f"  open the UI     {links['command']}")
    lines += [f"  compare trials  {links['experiment']}", f"  sweep summary   {links['run']}"]
    return "\n".join(lines)

