"""Thin Hydra plugin entry point: `hydra/sweeper=optuna_mlflow`.

Hydra imports every non-underscore module under `hydra_plugins` in every Hydra process and
instantiates the plugin class with the sweeper config's keys as arguments (as it does Hydra's own
`OptunaSweeper`). So this module registers the config schema (light) and hands the settings to the
implementation in `_impl`, imported only when a sweep actually runs. Defaults live in config.py.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.optuna_mlflow_sweeper.config import (
    MlflowConfig,
    SweeperSettings,
    WarmStartConfig,
    register_configs,
)

register_configs()


class OptunaMlflowSweeper(Sweeper):
    """Optuna (ask/tell, shared-budget, resumable) sweeper that tracks every trial in MLflow."""

    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        direction: Any,
        metric_names: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int | None,
        n_jobs: int,
        gpus: Any,
        max_failure_rate: float,
        params: DictConfig | None,
        custom_search_space: str | None,
        validate: str | None,
        timeout: float | None,
        enqueue: Any,
        heartbeat_interval: int | None,
        grace_period: int | None,
        max_retry: int,
        allow_changed_overrides: Any,
        progress: bool,
        stop_grace_period: float,
        warm_start: DictConfig,
        mlflow: DictConfig,
    ) -> None:
        from hydra_plugins.optuna_mlflow_sweeper._impl.core import OptunaMlflowSweeperImpl

        settings = SweeperSettings(
            sampler=sampler, pruner=pruner, direction=direction, metric_names=metric_names,
            storage=storage, study_name=study_name, n_trials=n_trials, n_jobs=n_jobs,
            gpus=None if gpus is None else [str(g) for g in gpus],
            max_failure_rate=max_failure_rate, params=params,
            custom_search_space=custom_search_space, validate=validate, timeout=timeout,
            enqueue=enqueue,
            heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            max_retry=max_retry, allow_changed_overrides=allow_changed_overrides,
            progress=progress, stop_grace_period=stop_grace_period,
            warm_start=WarmStartConfig(**warm_start),
            mlflow=MlflowConfig(**mlflow),
        )
        self.sweeper = OptunaMlflowSweeperImpl(settings)

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
