"""The environment variables through which the sweeper tells the processes it starts what they
run: a trial's job (set per job through `hydra.job.env_set`) and a parallel worker."""

import os

ENV_STORAGE = "OPTUNA_MLFLOW_STORAGE"  # the study's storage URL (even one with a password)
ENV_STUDY = "OPTUNA_MLFLOW_STUDY"
ENV_TRIAL_ID = "OPTUNA_MLFLOW_TRIAL_ID"  # set in a trial's job only
ENV_TRIAL_NUMBER = "OPTUNA_MLFLOW_TRIAL_NUMBER"
ENV_HEARTBEAT = "OPTUNA_MLFLOW_HEARTBEAT_INTERVAL"
ENV_WORKER = "OPTUNA_MLFLOW_WORKER"  # "1" in a worker: run trials here, leave the summary
ENV_CPUS = "OPTUNA_MLFLOW_CPUS_PER_WORKER"  # the cores each worker may use (apps size threads)


def started_by_a_sweep() -> bool:
    """A worker or a trial job: the command that started it already checked every service, and
    it may start during an outage."""
    return bool(os.environ.get(ENV_TRIAL_ID)) or os.environ.get(ENV_WORKER) == "1"
