"""The `mnist-sweep` command: a thin Hydra entry point.

The config is checked, then the backend and its thread pools are set from it, before anything
imports Keras: which is why the experiment module is imported inside the task function.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_sweep.config import registry
from mnist_sweep.errors import ConfigError, DataUnavailableError
from mnist_sweep.model import backend

registry.register()


@hydra.main(version_base="1.3", config_path=registry.CONFIG_PATH, config_name=registry.CONFIG_NAME)
def main(cfg: DictConfig) -> float | list[float]:
    try:
        registry.validate(cfg)
        backend.configure(cfg.train)  # backend and thread pools, before Keras starts
        from mnist_sweep.experiment import run

        return run(cfg)
    except (ConfigError, DataUnavailableError) as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial as failed and goes on
        # stderr, not the logger: Hydra routes log records to stdout and the run's log file
        print(f"mnist-sweep: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
