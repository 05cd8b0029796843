"""The launcher that starts the workers, fitted to them: where their jobs run decides what each
worker is given.

- On this machine (Hydra's basic launcher: local processes; joblib; submitit_local): each worker
  its own GPUs, as `CUDA_VISIBLE_DEVICES` in its environment (gpus.assign).
- Anywhere else (submitit_slurm, ray...): the scheduler hands out GPUs, by its own settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl import gpus

BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
# launchers whose jobs run as processes of this machine
LOCAL = (BASIC, "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
         "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher")


def kind(launcher: Any) -> str:
    cls = type(launcher)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_basic(launcher: Any) -> bool:
    return kind(launcher) == BASIC


def worker_envs(launcher: Any, n_workers: int, named: Sequence[str] | None,
                environ: Mapping[str, str]) -> list[dict[str, str]]:
    """Each worker's own variables: its GPUs when its job runs on this machine, round-robin over
    `named` (`hydra.sweeper.gpus`), or when that is null the GPUs `environ` shows."""
    if kind(launcher) not in LOCAL:
        return [{} for _ in range(n_workers)]
    devices = list(named) if named is not None else gpus.visible(environ)
    return [{gpus.GPU_ENV: ",".join(mine)} if mine else {}
            for mine in gpus.assign(devices, n_workers)]
