"""What every benchmark measurement shares: its settings, the JSON lines it prints, its workers."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # `python -m benchmarks` runs from here
RESULT = "BENCH_RESULT "  # marks a worker's result line among whatever libraries print
PACKAGES = ("mnist-sweep", "tensorflow", "keras", "jax", "jaxlib", "numpy", "mlflow", "optuna",
            "hydra-core", "hydra-joblib-launcher", "matplotlib")
MEASUREMENTS = ("fit", "overhead", "parallel", "pruning", "throughput", "sweeper_cost",
                "transactions", "cluster")


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark mode; every JSON line repeats the ones it used."""

    fit_epochs: int = 3
    fit_rounds: int = 1  # notebook-then-ours pairs per model; the medians are reported
    fit_limit: int | None = 3000
    batch_size: int = 32
    overhead_epochs: int = 5
    overhead_limit: int | None = 3000
    overhead_repeats: int = 3  # warm trials after the cold one; the median is reported
    parallel_trials: int = 4
    parallel_epochs: int = 2
    parallel_limit: int | None = 3000
    parallel_models: tuple[str, ...] = ("dense",)
    prune_trials: int = 6
    prune_epochs: int = 3
    prune_limit: int | None = 1000
    prune_val_size: int = 1000  # validation images per epoch (the pruned objective)
    prune_seeds: tuple[int, ...] = (0,)  # sampler seeds: one pair of searches each
    throughput_trials: int = 4
    throughput_epochs: int = 1
    throughput_limit: int | None = 3000
    sweeper_trials: tuple[int, int] = (10, 30)  # trivial-objective trials: cost per trial, fixed
    sweeper_rounds: int = 2
    cluster_trials: int = 6  # CNN trials on a one-node, then a two-node Ray cluster
    cluster_epochs: int = 2
    cluster_limit: int | None = 5000
    seed: int = 0


MODES = {
    "small": Settings(),
    "full": Settings(fit_epochs=4, fit_rounds=3, fit_limit=None, overhead_limit=None,
                     parallel_trials=16, parallel_epochs=2, parallel_limit=None,
                     parallel_models=("dense", "cnn"),
                     prune_trials=16, prune_epochs=5, prune_limit=10000, prune_val_size=5000,
                     prune_seeds=(0, 1, 2),
                     throughput_trials=8, throughput_epochs=2, throughput_limit=None,
                     sweeper_trials=(20, 60), sweeper_rounds=3,
                     cluster_trials=8, cluster_epochs=3, cluster_limit=None),
}


def emit(line: dict[str, Any]) -> None:
    """One JSON line; the load average says how busy the (possibly shared) CPU was meanwhile."""
    if line.get("measurement") != "header":
        line = {**line, "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(line), flush=True)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def header(mode: str, settings: Settings) -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "measurement": "header",
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": mode,
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu": _cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # The CPU may be shared: a high load average means noisy timings.
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "versions": versions,
        "settings": asdict(settings),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ratio(baseline: float | None, ours: float | None) -> float | None:
    if baseline is None or ours is None or ours <= 0:
        return None
    return round(baseline / ours, 3)


# ---- running workers -------------------------------------------------------------------------
def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that would redirect tracking or join another sweep."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "OPTUNA_MLFLOW_", "HYDRA_", "KERAS_BACKEND"))}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {**env, **extra}


def run_worker(args: Sequence[str], timeout: float = 1500) -> list[dict[str, Any]]:
    """`python -m benchmarks --worker ...` in a fresh process; its result lines."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--worker", *args], cwd=ROOT,
                          capture_output=True, text=True, env=clean_env(), timeout=timeout)
    results = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines()
               if line.startswith(RESULT)]
    if proc.returncode != 0 or not results:
        raise RuntimeError(f"worker {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return results
