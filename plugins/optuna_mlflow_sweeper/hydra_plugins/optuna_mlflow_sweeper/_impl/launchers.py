"""The launcher that starts the workers, fitted to them: where their jobs run decides what each
worker is given.

- On this machine (Hydra's basic launcher: local processes; joblib; submitit_local): each worker
  its own GPUs, as `CUDA_VISIBLE_DEVICES` in its environment (gpus.assign).
- On a Ray cluster (hydra-ray-launcher's `ray`): each worker task asks Ray for its share of the
  cluster's GPUs (Ray sets the variable), and `hydra.launcher.ray.init.address` alone joins a
  running cluster. hydra-ray-launcher 1.2.2 asks `ray.init` for a 75 MB object store, which Ray
  refuses when joining (facebookresearch/hydra#2893): nulled there. Ray swaps an address on
  127.0.0.1 for the machine's outward one, where a cluster started on the loopback does not
  answer (the driver waits for ever), unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`: set for such
  an address (with it, a cluster started on the outward address is still joined: measured with
  Ray 2.60). The workers' output stays in Ray's logs unless `log_to_driver` says otherwise: the
  terminal shows the sweep's one display.
- Anywhere else (submitit_slurm, ...): the scheduler hands out GPUs, by its own settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.optuna_mlflow_sweeper._impl import gpus

BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
# launchers whose jobs run as processes of this machine
LOCAL = (BASIC, "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
         "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher")
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


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


def cpus_per_worker(launcher: Any, n_workers: int) -> int:
    """The cores each worker's trials may use (its TensorFlow sizes its thread pools to them).

    A Ray task holds the CPUs it asks for on its node (`hydra.launcher.ray.remote.num_cpus`,
    Ray's default 1), whatever the machine that starts the sweep has; workers elsewhere share
    this machine's cores."""
    if kind(launcher) == RAY:
        return max(1, int(launcher.ray_cfg.remote.get("num_cpus") or 1))
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


def fit_ray(launcher: Any, n_workers: int) -> None:
    """A Ray launcher's settings made fit for n workers (see the module); a value the command
    set itself is kept, but for the object store when joining, which Ray refuses."""
    if kind(launcher) != RAY:
        return
    cfg: DictConfig = launcher.ray_cfg
    with open_dict(cfg):
        address = cfg.init.get("address")
        cfg.init.setdefault("log_to_driver", False)
        if joins(address):
            cfg.init.object_store_memory = None  # kept by the launcher's setdefault
            if host(str(address)) in LOOPBACK_HOSTS:
                os.environ.setdefault(RAY_LOOPBACK_ENV, "0")  # read when Ray is imported
        if cfg.remote.get("num_gpus") is None:
            cfg.remote.num_gpus = gpus.ray_share(_cluster_gpus(cfg.init), n_workers)


def joins(address: Any) -> bool:
    """Whether `ray.init(address=...)` joins a running cluster (None and "local" start one)."""
    return bool(address) and str(address) != "local"


def host(address: str) -> str:
    """`127.0.0.1:6379`, `ray://head:10001` -> the host."""
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


def _cluster_gpus(init: DictConfig) -> float:
    """The GPUs of the cluster the workers will run on. Joining one: Ray is started here as the
    launcher would start it (the launcher then finds it running) and asked. Else the launcher
    starts Ray on this machine, which has the GPUs `ray.init` is told or those it sees."""
    if not joins(init.get("address")):
        told = init.get("num_gpus")
        return float(told) if told is not None else float(len(gpus.visible(os.environ)))
    import ray  # the `ray` launcher's own dependency: there whenever it is configured

    if not ray.is_initialized():
        ray.init(**OmegaConf.to_container(init, resolve=True))  # type: ignore[arg-type]
    return float(ray.cluster_resources().get("GPU", 0))
