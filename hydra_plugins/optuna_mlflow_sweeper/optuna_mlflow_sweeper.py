"""Thin Hydra plugin entry point: `hydra/sweeper=optuna_mlflow`.

Hydra imports every module under `hydra_plugins` in every Hydra process, and only instantiates
plugin classes defined here, so this module registers the config schema (light) and delegates to
`mnist_sweep.sweeper.core`, imported only when the sweeper is actually used.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mnist_sweep.sweeper.config import register_configs

register_configs()


class OptunaMlflowSweeper(Sweeper):
    """Optuna (ask/tell, shared-budget, resumable) sweeper that tracks every trial in MLflow."""

    def __init__(self, **kwargs: Any) -> None:
        from mnist_sweep.sweeper.core import OptunaMlflowSweeperImpl

        self.sweeper = OptunaMlflowSweeperImpl(**kwargs)

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
