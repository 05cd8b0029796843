"""Which GPUs each worker uses: plain functions of the devices there are and the workers.

Workers on one machine would otherwise all see every GPU and all train on the first, and each
TensorFlow would take the memory of every GPU it sees: so each local worker is given its own
devices through `CUDA_VISIBLE_DEVICES`, round-robin over the GPUs the command sees (or those
`hydra.sweeper.gpus` names). Under Ray the cluster places tasks, so each worker task asks Ray for
its share of the cluster's GPUs instead, and Ray sets the variable.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

GPU_ENV = "CUDA_VISIBLE_DEVICES"
NVIDIA_SMI_TIMEOUT_S = 30.0
_SMI_GPU = re.compile(r"^GPU (\d+):")


def visible(environ: Mapping[str, str]) -> list[str]:
    """The GPUs a process started from `environ` would see: `CUDA_VISIBLE_DEVICES` when set
    (empty or -1: none), else those `nvidia-smi -L` lists, else none (no NVIDIA driver)."""
    if GPU_ENV in environ:
        return parse(environ[GPU_ENV])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, check=True,
                             timeout=NVIDIA_SMI_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):  # a driver that does not answer: none
        return []
    return [m.group(1) for line in out.splitlines() if (m := _SMI_GPU.match(line.strip()))]


def parse(value: str) -> list[str]:
    """`CUDA_VISIBLE_DEVICES` as a list; CUDA ignores everything from the first -1 on."""
    devices = [d.strip() for d in value.split(",") if d.strip()]
    return devices[: devices.index("-1")] if "-1" in devices else devices


def assign(devices: Sequence[str], n_workers: int) -> list[list[str]]:
    """Each worker's devices, round-robin: with at least as many devices as workers, device k
    goes to worker k mod n (every worker its own); with fewer, worker i shares device i mod d.
    No devices: every worker gets [] (leave its environment as it is)."""
    if not devices:
        return [[] for _ in range(n_workers)]
    if len(devices) >= n_workers:
        return [list(devices[i::n_workers]) for i in range(n_workers)]
    return [[devices[i % len(devices)]] for i in range(n_workers)]


def ray_share(cluster_gpus: float, n_workers: int) -> float:
    """GPUs each of n Ray worker tasks asks for: the cluster's split evenly, in whole GPUs from
    one up (Ray takes fractions below one only), down to Ray's 1e-4 steps below; 0 when none."""
    share = cluster_gpus / max(1, n_workers)
    if share >= 1:
        return float(math.floor(share))
    return math.floor(share * 10_000) / 10_000
