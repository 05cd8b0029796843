"""Generic Hydra task for the sweeper tests: returns a float (or two), optionally reports steps."""

from __future__ import annotations

import math
import os
import time

import hydra
from omegaconf import DictConfig

from hydra_plugins.optuna_mlflow_sweeper import current_trial, report, stop_now, stop_requested


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | tuple[float, float]:
    trial = current_trial()
    if trial is not None and cfg.record_pid:
        trial.set_user_attr("pid", os.getpid())
        if "CUDA_VISIBLE_DEVICES" in os.environ:  # the GPUs its worker was given
            trial.set_user_attr("gpus", os.environ["CUDA_VISIBLE_DEVICES"])
    f = (cfg.x - 2.0) ** 2 + (cfg.y + 1.0) ** 2
    f += sum(layer.units for layer in cfg.model.hidden) / 1000.0
    if cfg.sleep and cfg.epochs:
        for epoch in range(1, cfg.epochs + 1):
            time.sleep(cfg.sleep / cfg.epochs)
            if cfg.obey_stop and stop_requested():  # a real app checkpoints here
                if trial is not None:
                    trial.set_user_attr("stopped_after_epoch", epoch)
                stop_now()
    elif cfg.sleep:
        try:
            time.sleep(cfg.sleep)
        except KeyboardInterrupt as e:
            if not cfg.interrupt_becomes_error:
                raise
            raise RuntimeError("a library turned the interrupt into this") from e
    if cfg.fail:
        raise RuntimeError(f"boom at x={cfg.x}")
    for step in range(cfg.steps):
        report(f * (1.0 + (cfg.steps - step) / cfg.steps), step)
    if cfg.log_mlflow:
        import mlflow

        with mlflow.start_run():
            mlflow.log_metric("f_from_job", f)
    if cfg.nan:
        return math.nan
    if cfg.objectives == 2:
        return f, cfg.x**2
    return f


if __name__ == "__main__":
    main()
