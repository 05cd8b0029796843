"""The trial API for task code (any Hydra app run by the `optuna_mlflow` sweeper).

    from hydra_plugins.optuna_mlflow_sweeper import report

    for epoch in range(epochs):
        ...
        report(val_accuracy, epoch + 1)  # raises optuna.TrialPruned when the pruner says so

- report(value, step)   an intermediate value; prunes the trial when the pruner says so
- current_trial()       the running `optuna.Trial` (set user attrs, read params), or None
- in_sweep()            whether this process runs a trial of the sweeper
- trial_heartbeat()     a context manager that keeps a long trial alive before its first report
- stop_requested()      whether a scheduler asked this process to stop (SIGTERM): checkpoint
                        at the end of the epoch, then call stop_now()
- stop_now()            stop the trial: it is recorded to run again first (raises)
- record_checkpoint(location)
                        record where the trial keeps its checkpoint (before writing the first)
- recorded_checkpoint() where the trial this one retries kept it (None: not a retry, none): a
                        retry finds its checkpoint from any folder or machine
- sigterm_stops_after_epoch(grace_period)
                        the same SIGTERM behaviour for a task run alone (no sweep): a context
                        manager; `Terminated` (a KeyboardInterrupt) leaves it, exit code
                        EXIT_TERMINATED (143) is the caller's to use

A trial's job gets the sweep's storage URL and study name in the environment variables named
ENV_STORAGE and ENV_STUDY; a parallel worker its share of the cores in ENV_CPUS.

Outside a sweep each is a cheap no-op, so the same task code runs alone and in a sweep. Defined
in `_impl/trial.py` and re-exported here: Hydra's plugin scanner executes this module a second
time in every Hydra process, and functions defined here would change identity (a task that
imported them first could then not be pickled to joblib workers).
"""

from hydra_plugins.optuna_mlflow_sweeper._impl.env import ENV_CPUS, ENV_STORAGE, ENV_STUDY
from hydra_plugins.optuna_mlflow_sweeper._impl.interrupts import (
    EXIT_TERMINATED,
    Terminated,
    sigterm_stops_after_epoch,
    stop_now,
    stop_requested,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.trial import (
    current_trial,
    in_sweep,
    record_checkpoint,
    recorded_checkpoint,
    report,
    trial_heartbeat,
)

__all__ = ["ENV_CPUS", "ENV_STORAGE", "ENV_STUDY", "EXIT_TERMINATED", "Terminated",
           "current_trial", "in_sweep", "record_checkpoint", "recorded_checkpoint", "report",
           "sigterm_stops_after_epoch", "stop_now", "stop_requested", "trial_heartbeat"]
