"""The `mnist-sweep` command: a thin Hydra entry point.

The config is checked, then the backend and its thread pools are set from it, before anything
imports Keras: which is why the experiment module is imported inside the task function.
"""

from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra_plugins.optuna_mlflow_sweeper import SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper import tracking as sweep_tracking
from omegaconf import DictConfig

from mnist_sweep import backend, config
from mnist_sweep.errors import DataUnavailableError

config.register()


@hydra.main(version_base="1.3", config_path=config.CONFIG_PATH, config_name=config.CONFIG_NAME)
def main(cfg: DictConfig) -> float | list[float]:
    try:
        config.validate(cfg)
        # a wrong address or password: one line now, not minutes of retries (a sweep's trial
        # skips it: the sweep checked)
        uri = sweep_tracking.resolve_tracking_uri(cfg.tracking.uri)
        sweep_tracking.check_tracking(uri, "MLFLOW_TRACKING_URI" if os.environ.get(
            "MLFLOW_TRACKING_URI") else "tracking.uri")
        backend.configure(cfg.train)  # backend and thread pools, before Keras starts
        from mnist_sweep.experiment import run

        with sweep_tracking.one_line_faults([("MLflow store", uri)]):  # a full disk: one line
            return run(cfg)
    except (SweeperConfigError, DataUnavailableError, sweep_tracking.Unreachable,
            sweep_tracking.LocalFault) as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial as failed and goes on
        # stderr, not the logger: Hydra routes log records to stdout and the run's log file
        print(f"mnist-sweep: error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, SweeperConfigError) else 1)


if __name__ == "__main__":
    main()
