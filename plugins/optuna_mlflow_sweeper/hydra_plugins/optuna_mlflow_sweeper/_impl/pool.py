"""N workers on one study, and the one process that shows what they do.

With `n_jobs: N` the sweeping process starts N workers and watches the study: each worker is a
whole sweeper of its own in a long-lived process (it joins the study, asks, runs and tells trials
until the budget is spent), so trials never wait for each other and a worker's imports, data and
compiled state serve all of its trials. The workers are started as local processes (Python's
`spawn`), or, when a launcher other than Hydra's basic one is configured (joblib, submitit for
SLURM, ray), as N jobs of that launcher: the launcher starts workers, not trials. Either way the
same mechanism as the same command run on N machines: processes joining one study. A launcher may
start its jobs in another folder with another environment (Ray's workers have the raylet's), so a
launched worker takes the sweep command's folder and store settings with it (`carried_env`).
Each worker may have variables of its own: its GPUs (launchers.worker_envs).

Each local worker writes its output to `<sweep dir>/workers/worker-<i>.log`; the watching process
prints one progress display read from the study. Ctrl-C reaches every worker (one process group):
each records its trial in flight as interrupted; a second Ctrl-C stops them at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig

from hydra_plugins.optuna_mlflow_sweeper._impl import interrupts, preemption, results
from hydra_plugins.optuna_mlflow_sweeper._impl.console import say, trial_line
from hydra_plugins.optuna_mlflow_sweeper._impl.env import ENV_WORKER
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import override
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import SweepPlan
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import SECRET_ENV
from hydra_plugins.optuna_mlflow_sweeper._impl.study import count_trials

log = logging.getLogger(__name__)

INTERRUPT_GRACE_S = 60.0  # for workers to record their trials after Ctrl-C
PR_SET_PDEATHSIG = 1  # prctl(2)
POLL_S = 1.0
# what configures the stores (URLs, credentials, timeouts): a launched worker uses the sweep's
CARRIED_PREFIXES = ("MLFLOW_", "OPTUNA_")


@dataclass
class Payload:
    """Everything a worker process needs to be the sweeper (pickled with cloudpickle)."""

    sweeper: Callable[[Any], Any]  # settings -> the Sweeper to set up and run (the class)
    settings: Any
    config: Any
    hydra_context: Any
    task_function: Callable[..., Any]
    plan: SweepPlan  # the sweep's plan: checked once, by the command that starts workers
    singletons: dict[Any, Any]


def carried_env(environ: dict[str, str]) -> dict[str, str]:
    """The variables of `environ` that say where and how the sweep records: MLflow's and Optuna's
    settings and the secrets the stores read."""
    return {k: v for k, v in environ.items()
            if k.startswith(CARRIED_PREFIXES) or k in SECRET_ENV}


def run_local(payload: Payload, envs: list[dict[str, str]], watch: Callable[[], bool]
              ) -> list[str]:
    """Start a worker process per entry of `envs` (its own variables: its GPUs), watch until all
    end; the problems to report (empty: none)."""
    import cloudpickle

    blob = cloudpickle.dumps(payload)
    logs = Path(payload.plan.sweep_dir) / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    procs = []
    for i, own in enumerate(envs):
        log_path = logs / f"worker-{os.getpid()}-{i}.log"
        proc = context.Process(target=_local_worker,
                               args=(blob, str(log_path), own, os.getpid()),
                               name=f"optuna-mlflow-worker-{i}")
        proc.start()
        procs.append((proc, log_path))
    try:
        while any(proc.is_alive() for proc, _ in procs):
            watch()
            for proc, _ in procs:
                proc.join(timeout=POLL_S / len(procs))
    except KeyboardInterrupt as e:
        interrupts.acknowledge()
        if isinstance(e, interrupts.Terminated):  # a scheduler signals this process alone
            for proc, _ in procs:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGTERM)
        _stop_after_interrupt([proc for proc, _ in procs])
        raise
    finally:
        watch()
    stopped = (0, interrupts.EXIT_INTERRUPTED, interrupts.EXIT_TERMINATED)
    return [_problem(i, proc.exitcode, path) for i, (proc, path) in enumerate(procs)
            if proc.exitcode not in stopped]


def run_launcher(payload: Payload, launcher_factory: Callable[[Callable[..., Any]], Any],
                 envs: list[dict[str, str]], watch: Callable[[], bool]) -> list[str]:
    """A worker job per entry of `envs` (its own variables) through the configured Hydra
    launcher; the watcher runs meanwhile."""
    import cloudpickle

    n = len(envs)
    common = carried_env(dict(os.environ))
    task = functools.partial(_launched_worker, cloudpickle.dumps(payload),
                             [{**common, **own} for own in envs], os.getcwd())
    launcher = launcher_factory(task)
    stop = threading.Event()

    def keep_watching() -> None:
        while not stop.wait(POLL_S):
            watch()

    watcher = threading.Thread(target=keep_watching, name="optuna-mlflow-watch", daemon=True)
    watcher.start()
    try:
        returns = launcher.launch(worker_jobs(payload.plan, n), initial_job_idx=0)
    finally:
        stop.set()
        watcher.join()
        watch()
    problems = []
    for i, ret in enumerate(returns):
        value = ret._return_value
        if isinstance(value, BaseException):
            problems.append(f"worker {i} stopped: {type(value).__name__}: {value}")
    return problems


def worker_jobs(plan: SweepPlan, n: int) -> list[list[str]]:
    """The overrides of n worker jobs: the command's own fixed overrides, then the job's folder.

    A launcher composes each job's config from the command's `hydra.*` overrides and the job's:
    without the command's others, a config group that selects the sweeper (a ready-made sweep's
    `sweep=NAME`) is missing there, and `hydra.sweeper.n_jobs=2` meets Hydra's basic sweeper
    ("Could not override"). Sweep expressions stay out: a job composes one config. The folders
    are `<sweep dir>/workers/<i>`, named absolutely: a launcher's job may start anywhere."""
    folder = override("hydra.sweep.dir", os.path.abspath(plan.sweep_dir))
    return [[*plan.space.fixed.values(), folder, f"hydra.sweep.subdir=workers/{i}"]
            for i in range(n)]


class Watcher:
    """The progress display of a sweep whose trials run in other processes, read from the study:
    a line when a trial starts (its params) and one when trials finish (counts, best so far).

    A trial that starts and ends between two looks (a quick one, a loaded machine) still gets
    its line; the trials of an earlier command (a resumed study) do not."""

    def __init__(self, study: Any, n_trials: float, progress: bool) -> None:
        self.study, self.n_trials, self.progress = study, n_trials, progress
        self.started: set[int] = {t.number for t in study.get_trials(deepcopy=False)}
        self.finished = -1

    def __call__(self) -> bool:
        try:
            trials = self.study.get_trials(deepcopy=False)
        except Exception as e:  # the storage away for a moment: the workers cope, so do we
            log.debug("watching the study failed: %s", e)
            return False
        for t in trials:
            if t.number not in self.started and "overrides" in t.user_attrs:
                self.started.add(t.number)
                say(self.progress, trial_line(t.number, t.params,
                                              t.system_attrs.get("failed_trial")))
        counts = count_trials(trials)
        if counts.finished != self.finished:
            if self.finished >= 0:
                say(self.progress, results.progress_line(self.study, counts, self.n_trials))
            self.finished = counts.finished
        return True


def _local_worker(blob: bytes, log_path: str, env: dict[str, str], parent: int) -> None:
    """A spawned worker: output to its log file, then the sweeper's loop in this process."""
    _stop_with(parent)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    try:
        _worker(blob, env)  # a sweep: its heap is left to the exit (heap_left_to_exit)
    except KeyboardInterrupt as e:
        sys.exit(interrupts.exit_code(e))


def _launched_worker(blob: bytes, envs: list[dict[str, str]], cwd: str, job_config: Any) -> None:
    """A worker started as a launcher's job (its job number picks its variables from `envs`),
    working from the folder the sweep's command ran in where this machine has it (a shared disk),
    so relative paths (the sweep folder, a SQLite store) mean what they mean to that command; a
    submitit job is requeued when preempted."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    with preemption.requeued_when_preempted():
        _worker(blob, envs[HydraConfig.get().job.num])


def _worker(blob: bytes, env: dict[str, str]) -> None:
    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    os.environ.update(env)  # first: a library the payload imports may read its devices then
    os.environ[ENV_WORKER] = "1"
    payload: Payload = cloudpickle.loads(blob)
    Singleton.set_state(payload.singletons)
    setup_globals()
    sweeper = payload.sweeper(payload.settings)
    sweeper.setup(hydra_context=payload.hydra_context, task_function=payload.task_function,
                  config=payload.config, basic_launcher=True)
    sweeper.sweep([], planned=payload.plan)


def _stop_with(parent: int) -> None:
    """SIGTERM to this worker when the process that started it dies, however it dies (Linux):
    a worker never outlives its sweep to run the budget on unseen."""
    with contextlib.suppress(Exception):  # not Linux: the main process forwards SIGTERM
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def _stop_after_interrupt(procs: list[Any]) -> None:
    """Ctrl-C (or our SIGTERM) already reached the workers; wait for them to record their
    trials. A second Ctrl-C (or the grace period running out) kills them: their trials go
    stale, and are failed and retried by the next process that looks."""
    deadline = time.monotonic() + INTERRUPT_GRACE_S + interrupts.grace_period()
    try:
        for proc in procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass
    for proc in procs:
        if proc.is_alive():
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=5)


def _problem(i: int, exitcode: int | None, log_path: Path) -> str:
    last = ""
    with contextlib.suppress(OSError):
        lines = [line for line in log_path.read_text(errors="replace").splitlines()
                 if line.strip()]
        last = lines[-1].strip() if lines else ""
    how = f"was killed (signal {-exitcode})" if exitcode and exitcode < 0 else \
        f"stopped (exit {exitcode})"
    return f"worker {i} {how}: {last[:300]} (log: {log_path})"
