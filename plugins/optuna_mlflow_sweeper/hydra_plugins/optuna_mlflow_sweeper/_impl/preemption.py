"""A worker job preempted on a cluster is requeued as submitit documents it.

submitit sends a job its preemption signal (USR2, or what SUBMITIT_PREEMPT_SIGNAL names) ahead
of a preemption or its time limit (SLURM's `--signal`; `submitit_local` sends it before
`timeout_min`). Its own handler calls the job's `checkpoint` (hydra-submitit-launcher's returns
the same job again, a `DelayedSubmission`), requeues the job and exits at once: mid-epoch, with
the trial in flight left RUNNING until its heartbeat goes stale. So a worker job takes the signal
as it takes SIGTERM (the trial finishes its epoch, checkpoints, and is recorded to run again
first), and only then hands it to submitit's handler. The requeued worker joins the study like
any worker, and the first trial it asks is that retry, which resumes from the checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

from hydra_plugins.optuna_mlflow_sweeper._impl import interrupts

log = logging.getLogger(__name__)


def preemption_signal() -> int | None:
    """submitit's preemption signal when this process is a submitit job (None: it is not)."""
    submitit = sys.modules.get("submitit")  # imported by the job's runner before the task
    if submitit is None or "SUBMITIT_FOLDER" not in os.environ:
        return None
    return int(submitit.JobEnvironment._usr_sig())


@contextlib.contextmanager
def requeued_when_preempted() -> Iterator[None]:
    """Around a worker job: its preemption signal stops it as SIGTERM does, then submitit's
    handler checkpoints and requeues the job (and exits). Elsewhere: nothing."""
    signum = preemption_signal()
    submitits = signal.getsignal(signum) if signum is not None else None
    if signum is None or not callable(submitits):
        yield
        return
    interrupts.also_stop_on(signum)
    try:
        yield
    except interrupts.Terminated:
        if interrupts.stopped_by() != signum:
            raise  # a SIGTERM: stopped, not preempted
        log.warning("preempted: the trial in flight runs again first; requeueing this worker")
        submitits(signum, None)  # checkpoints the job, requeues it, exits
        raise
    finally:
        signal.signal(signum, submitits)
