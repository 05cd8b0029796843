"""The `optuna_mlflow` sweeper: check everything, join the study, run its workers, sum it up.

`n_jobs: 1` runs the trials here, one after another, in this warm process (worker.py). With more,
this process starts the workers (pool.py) and shows their progress; every worker is this same
sweeper in a process of its own. Either way the sweep ends with its record: the results file,
the HTML report and status on the parent run, the best trial and where to look. Ctrl-C records the
trials in flight as interrupted, says how to resume, and exits with 130 (no traceback).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.optuna_mlflow_sweeper._impl import (
    interrupts,
    launchers,
    pool,
    record,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.console import PREFIX, say, sweep_console
from hydra_plugins.optuna_mlflow_sweeper._impl.env import ENV_CPUS, ENV_WORKER
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweepAborted, SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import (
    LocalFault,
    Unreachable,
    one_line_faults,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.jobs import ComposedOnce
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import SweepPlan, plan
from hydra_plugins.optuna_mlflow_sweeper._impl.report_process import (
    InProcess,
    report_drawer,
    worth_a_helper,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import known_secrets, redact_logs, urls_in
from hydra_plugins.optuna_mlflow_sweeper._impl.session import Session, open_session
from hydra_plugins.optuna_mlflow_sweeper._impl.study import count_trials
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    mask_url,
    resolve_tracking_uri,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.worker import (
    Worker,
    budget_left_after_settling,
    budget_spent,
)
from hydra_plugins.optuna_mlflow_sweeper.config import SweeperSettings

log = logging.getLogger(__name__)


class OptunaMlflowSweeperImpl(Sweeper):
    def __init__(self, settings: SweeperSettings) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.launcher: Any = None
        self._drawer: InProcess = InProcess()  # the report's; a helper process while sweeping

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig,
        basic_launcher: bool = False,
    ) -> None:
        # the launcher takes the config each trial's job was composed with (jobs.ComposedOnce)
        hydra_context = HydraContext(config_loader=ComposedOnce.around(hydra_context.config_loader),
                                     callbacks=hydra_context.callbacks)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        if basic_launcher:  # a worker runs its trials in its own process
            from hydra._internal.core_plugins.basic_launcher import BasicLauncher

            self.launcher = BasicLauncher()
            self.launcher.setup(hydra_context=hydra_context, task_function=task_function,
                                config=config)
        else:  # with n_jobs: 1 it launches each trial: fitted as the workers' one is
            self.launcher = Plugins.instance().instantiate_launcher(
                config=config, hydra_context=hydra_context, task_function=task_function)
            if self.settings.n_jobs == 1:
                launchers.fit_ray(self.launcher, 1)

    def sweep(self, arguments: list[str], planned: SweepPlan | None = None) -> None:
        """Plan (a worker gets the plan of the command that started it), open the session, run
        the trials here or in workers."""
        assert self.config is not None and self.hydra_context is not None
        is_worker = os.environ.get(ENV_WORKER) == "1"
        interrupts.install(float(self.settings.stop_grace_period))
        interrupts.heap_left_to_exit()
        with _in_one_line(is_worker), sweep_console(bool(self.settings.progress), self.launcher), \
                one_line_faults(self._stores()):
            if planned is not None:  # its config arrives masked; its own log lines are masked
                redact_logs(known_secrets(urls_in(self.settings)))
            p = planned or plan(self.settings, self.config,
                                self.hydra_context.config_loader, arguments)
            # the process that sums up draws the report: its helper starts once the plan is
            # accepted (a rejected sweep starts nothing), its imports overlap the session's
            with report_drawer(not is_worker and bool(self.settings.mlflow.enabled)
                               and worth_a_helper()) as self._drawer:
                s = open_session(p)
                self._drawer.open(p.storage_url, p.study_name, p.n_trials)
                if is_worker or p.n_jobs == 1:
                    self._run_here(p, s, is_worker)
                else:
                    self._run_workers(p, s)

    def _stores(self) -> list[tuple[str, str]]:
        """What this sweep writes on this machine: named when a disk there is full."""
        assert self.config is not None
        sweep_dir = os.path.abspath(str(self.config.hydra.sweep.dir))
        return [("Optuna storage", self.settings.storage or os.path.join(sweep_dir, "optuna.db")),
                ("MLflow store", resolve_tracking_uri(self.settings.mlflow.tracking_uri)),
                ("sweep folder", sweep_dir)]

    # ---- trials in this process ----
    def _run_here(self, p: SweepPlan, s: Session, is_worker: bool) -> None:
        worker = Worker(p, s, self.config, self.hydra_context.config_loader, self.launcher)

        def finish(status: str) -> None:
            if is_worker:  # the process that started the workers sums up
                record.warned(worker.report, "updating the sweep's progress", quiet=True)
            else:
                record.finish(p, s, status, worker.report, self._drawer,
                              self.settings.mlflow)

        with _ending(finish) as status, _exported(p):
            worker.run()
        if status[0] == "KILLED":
            if is_worker:
                raise status[1]
            _interrupted(s, status[1])

    # ---- trials in worker processes ----
    def _run_workers(self, p: SweepPlan, s: Session) -> None:
        report = Worker(p, s, self.config, None, None).report
        if budget_spent(p, s, say_so=True) and not budget_left_after_settling(p, s):
            record.finish(p, s, "FINISHED", report, self._drawer, self.settings.mlflow)
            return
        payload = pool.Payload(
            sweeper=type(self), settings=self.settings, config=self.config,
            hydra_context=self.hydra_context, task_function=self.task_function, plan=p,
            singletons=Singleton.get_state())
        watch = pool.Watcher(s.study, p.n_trials, p.progress)
        cpus = launchers.cpus_per_worker(self.launcher, p.n_jobs)
        envs = [{ENV_CPUS: str(cpus), **own} for own in launchers.worker_envs(
            self.launcher, p.n_jobs, self.settings.gpus, os.environ)]
        where = ("local processes" if launchers.is_basic(self.launcher)
                 else f"jobs of {type(self.launcher).__name__}")
        say(p.progress, f"{PREFIX} {p.n_jobs} workers ({where}), {cpus} core(s) each")
        problems: list[str] = []

        def finish(status: str) -> None:
            record.finish(p, s, "FAILED" if problems else status, report, self._drawer,
                          self.settings.mlflow)

        with _ending(finish) as status:
            if launchers.is_basic(self.launcher):
                problems += pool.run_local(payload, envs, watch)
            else:
                problems += pool.run_launcher(payload, self._launcher_for, envs, watch)
        if status[0] == "KILLED":
            _interrupted(s, status[1])
        if problems:
            raise SweepAborted("; ".join(problems))

    def _launcher_for(self, task_function: TaskFunction) -> Any:
        """The configured launcher for the worker jobs, fitted to them (launchers.fit_ray)."""
        launcher = Plugins.instance().instantiate_launcher(
            config=self.config, hydra_context=self.hydra_context, task_function=task_function)
        launchers.fit_ray(launcher, self.settings.n_jobs)
        return launcher


@contextlib.contextmanager
def _in_one_line(is_worker: bool) -> Iterator[None]:
    """An error a user acts on (a bad value, a wrong address, a full disk, too many failures):
    its message on stderr and exit 2 for a bad value, 1 otherwise, without Hydra's
    HYDRA_FULL_ERROR hint; the traceback is in the log. A worker re-raises: the command that
    started it says what happened; so does a process with HYDRA_FULL_ERROR=1 (asked for the whole
    error, or an app's entry point that prints its errors itself, as mnist-sweep's does)."""
    try:
        yield
    except (SweeperConfigError, SweepAborted, Unreachable, LocalFault) as e:
        if is_worker or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.debug("the sweep stopped", exc_info=e)
        print(str(e), file=sys.stderr, flush=True)
        raise SystemExit(2 if isinstance(e, SweeperConfigError) else 1) from None


@contextlib.contextmanager
def _ending(finish: Callable[[str], None]) -> Iterator[list[Any]]:
    """How the sweep ended, in `status[0]`: FINISHED, KILLED (Ctrl-C or SIGTERM, in `status[1]`:
    acknowledged, and not re-raised: the caller reports it) or FAILED (re-raised);
    `finish(status)` runs in every case."""
    status: list[Any] = ["FINISHED", None]
    try:
        yield status
    except KeyboardInterrupt as e:
        status[0], status[1] = "KILLED", type(e)()
        interrupts.acknowledge(e)
    except BaseException:
        status[0] = "FAILED"
        raise
    finally:
        finish(status[0])


@contextlib.contextmanager
def _exported(p: SweepPlan) -> Iterator[None]:
    """The environment every job of this process needs, put back afterwards.

    mlflow.start_run() deletes MLFLOW_RUN_ID from the job's environment; Hydra's env_set restore
    then raises KeyError unless the variable existed before the job. Values holding a password
    travel this way rather than in the job's overrides (Hydra saves those to disk).
    """
    exported = {"MLFLOW_RUN_ID": os.environ.get("MLFLOW_RUN_ID", ""), **p.secret_env}
    saved = {name: os.environ.get(name) for name in exported}
    os.environ.update(exported)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _interrupted(s: Session, error: KeyboardInterrupt) -> None:
    """After Ctrl-C (exit 130) or SIGTERM (exit 143): what happened and the command that
    resumes (no traceback)."""
    counts = count_trials(s.study.get_trials(deepcopy=False))
    if isinstance(error, interrupts.Terminated):
        print(f"{PREFIX} stopped (SIGTERM): trials in flight recorded to run again first, from "
              f"their checkpoints; {counts.finished} finished; resume with: {resume_command()}",
              file=sys.stderr, flush=True)
    else:
        print(f"{PREFIX} interrupted: trials in flight recorded as failed (they run again first "
              f"when the sweep resumes); {counts.finished} finished.\n"
              f"  resume with     {resume_command()}", file=sys.stderr, flush=True)
    raise SystemExit(interrupts.exit_code(error))


def resume_command() -> str:
    """The command line this process was started with (passwords masked)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        program = ["python", "-m", spec.name.removesuffix(".__main__")]
    elif sys.argv[0].endswith(".py"):
        program = ["python", sys.argv[0]]
    else:  # a console script on PATH
        program = [Path(sys.argv[0]).name]
    args = [mask_url(a) if "://" in a else a for a in sys.argv[1:]]
    return shlex.join(program + args)
