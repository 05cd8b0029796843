"""The launcher that starts the workers, fitted to them: what each worker is given (its GPUs,
its cores) depends on where the launcher runs its jobs; a Ray launcher's settings made fit.
Launchers made as Hydra makes them, no job started (the workers themselves: test_pool, test_ray,
test_gpus)."""

from __future__ import annotations

import os

import pytest
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
from omegaconf import OmegaConf

from hydra_plugins.optuna_mlflow_sweeper._impl import launchers


def test_only_workers_on_this_machine_are_given_its_gpus() -> None:
    for local in (BasicLauncher(), JoblibLauncher(), LocalLauncher()):
        assert launchers.worker_envs(local, 2, ["0", "1"], {}) == [
            {"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    # SLURM's jobs run on other machines: its scheduler hands out their GPUs
    assert launchers.worker_envs(SlurmLauncher(), 2, ["0", "1"], {}) == [{}, {}]
    # none named: those the command sees; [] named: none assigned
    assert launchers.worker_envs(BasicLauncher(), 2, None, {"CUDA_VISIBLE_DEVICES": "3,4"}) == [
        {"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "4"}]
    assert launchers.worker_envs(BasicLauncher(), 2, [], {"CUDA_VISIBLE_DEVICES": "3,4"}) == [
        {}, {}]


def test_a_ray_worker_sizes_its_threads_to_the_cpus_its_task_holds() -> None:
    """A Ray task holds the CPUs it asks its node for (Ray's default: 1), whatever the machine
    that starts the sweep has: its TensorFlow runs that many threads, not this machine's share."""
    ray_launcher = pytest.importorskip("hydra_plugins.hydra_ray_launcher.ray_launcher")
    launcher = ray_launcher.RayLauncher(OmegaConf.create({"init": {}, "remote": {}}))
    assert launchers.cpus_per_worker(launcher, 2) == 1
    launcher.ray_cfg.remote.num_cpus = 4
    assert launchers.cpus_per_worker(launcher, 2) == 4
    assert launchers.cpus_per_worker(BasicLauncher(), 2) == max(1, (os.cpu_count() or 1) // 2)


@pytest.mark.parametrize(("address", "joins", "host"), [
    (None, False, None), ("local", False, None), ("auto", True, "auto"),
    ("127.0.0.1:6379", True, "127.0.0.1"), ("ray://head:10001", True, "head"),
])
def test_an_address_joins_a_running_cluster_and_names_its_host(address, joins, host) -> None:
    assert launchers.joins(address) is joins
    if host is not None:
        assert launchers.host(address) == host


def test_a_ray_launcher_is_fitted_to_its_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's log lines stay out of the sweep's output; joining a cluster drops the object store
    size Ray refuses there, and a loopback address lets the node be reached on it; a value the
    command set itself is kept."""
    ray_launcher = pytest.importorskip("hydra_plugins.hydra_ray_launcher.ray_launcher")
    monkeypatch.delenv(launchers.RAY_LOOPBACK_ENV, raising=False)
    cfg = {"init": {"address": "127.0.0.1:6379", "object_store_memory": 10**9},
           "remote": {"num_gpus": 0}}
    launcher = ray_launcher.RayLauncher(OmegaConf.create(cfg))
    launchers.fit_ray(launcher, 2)
    init = launcher.ray_cfg.init
    assert init.log_to_driver is False and init.object_store_memory is None
    assert os.environ[launchers.RAY_LOOPBACK_ENV] == "0"
    assert launcher.ray_cfg.remote.num_gpus == 0  # set by the command: kept
    other = BasicLauncher()
    launchers.fit_ray(other, 2)  # not Ray: nothing to fit
    assert launchers.is_basic(other) and not launchers.is_basic(launcher)
