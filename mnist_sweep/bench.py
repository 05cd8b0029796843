"""Speed benchmark: the notebook's plain `model.fit` against mnist-sweep, as JSON lines on stdout.

    python -m mnist_sweep.bench            # small: data slices, few epochs/trials, a few minutes
    python -m mnist_sweep.bench --full     # the real figures (full MNIST, ~30 minutes on 2 cores)

Why a benchmark and not a claim: the speed-ups come from `steps_per_execution` (batches per Python
call), and the costs from what a trial records around training. Both depend on the machine, so
the figures are measured side by side, on the same models, data and seeds, and printed with the
machine and versions. Keras fixes its backend per process, so each backend's training runs in a
worker subprocess (`--worker fit`); the whole-trial overhead runs in one too (`--worker overhead`)
so it starts cold like a real trial. Sweep measurements (parallel trials, pruning) live in
`mnist_sweep.bench_sweeps`. Progress goes to stderr; stdout carries only the JSON lines.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULT = "BENCH_RESULT "  # marks a worker's result line among whatever libraries print
PACKAGES = ("mnist-sweep", "tensorflow", "keras", "jax", "jaxlib", "numpy", "mlflow", "optuna",
            "hydra-core", "hydra-joblib-launcher", "matplotlib")
MEASUREMENTS = ("fit", "overhead", "parallel", "pruning")


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark mode; every JSON line repeats the ones it used."""

    fit_epochs: int = 3
    fit_rounds: int = 1  # notebook-then-ours pairs per model; the medians are reported
    fit_limit: int | None = 3000
    batch_size: int = 32
    overhead_epochs: int = 5
    overhead_limit: int | None = 3000
    parallel_trials: int = 4
    parallel_epochs: int = 2
    parallel_limit: int | None = 3000
    parallel_models: tuple[str, ...] = ("dense",)
    prune_trials: int = 6
    prune_epochs: int = 3
    prune_limit: int | None = 1000
    prune_val_size: int = 1000  # validation images per epoch (the pruned objective)
    prune_seeds: tuple[int, ...] = (0,)  # sampler seeds: one pair of searches each
    seed: int = 0


MODES = {
    "small": Settings(),
    "full": Settings(fit_epochs=4, fit_rounds=3, fit_limit=None, overhead_limit=None,
                     parallel_trials=16, parallel_epochs=2, parallel_limit=None,
                     parallel_models=("dense", "cnn"),
                     prune_trials=16, prune_epochs=5, prune_limit=10000, prune_val_size=5000,
                     prune_seeds=(0, 1, 2)),
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
    """`python -m mnist_sweep.bench --worker ...` in a fresh process; its result lines."""
    proc = subprocess.run([sys.executable, "-m", "mnist_sweep.bench", "--worker", *args],
                          capture_output=True, text=True, env=clean_env(), timeout=timeout)
    results = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines()
               if line.startswith(RESULT)]
    if proc.returncode != 0 or not results:
        raise RuntimeError(f"worker {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return results


def jax_available() -> bool:
    return importlib.util.find_spec("jax") is not None


# ---- measurements run from the parent --------------------------------------------------------
def measure_fit(settings: Settings, backends: Sequence[str]) -> Iterator[dict[str, Any]]:
    """1. Per-epoch speed-up of mnist-sweep's `training.fit` over the notebook's plain fit."""
    for backend_name in backends:
        if backend_name == "jax" and not jax_available():
            yield {"measurement": "epoch_speedup", "settings": {"backend": "jax"},
                   "skipped": "jax is not installed (pip install -e '.[jax]')"}
            continue
        log(f"fit: notebook vs mnist-sweep on {backend_name}")
        args = ["fit", "--backend", backend_name, "--epochs", str(settings.fit_epochs),
                "--rounds", str(settings.fit_rounds),
                "--batch-size", str(settings.batch_size), "--seed", str(settings.seed)]
        if settings.fit_limit:
            args += ["--limit-train", str(settings.fit_limit)]
        yield from run_worker(args)


def measure_overhead(settings: Settings) -> Iterator[dict[str, Any]]:
    """2. Whole `experiment.run` minus its training time, cold (a fresh process) and warm."""
    log("overhead: experiment.run of a dense trial, cold then warm")
    args = ["overhead", "--epochs", str(settings.overhead_epochs)]
    if settings.overhead_limit:
        args += ["--limit-train", str(settings.overhead_limit)]
    yield from run_worker(args)


# ---- CLI -------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnist_sweep.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full MNIST and more trials/epochs")
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    parser.add_argument("--backends", default="tensorflow,jax",
                        help="backends for the epoch speed-up (jax is skipped if not installed)")
    parser.add_argument("--limit-train", type=int, help="train-slice size for every measurement")
    parser.add_argument("--epochs", type=int, help="epochs for the epoch speed-up")
    parser.add_argument("--trials", type=int, help="trials per sweep (parallel and pruning)")
    parser.add_argument("--worker", choices=("fit", "overhead"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="tensorflow", help=argparse.SUPPRESS)
    parser.add_argument("--models", default="dense,cnn", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    mode = "full" if args.full else "small"
    settings = _with_overrides(MODES[mode], args)
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(only) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s) {sorted(unknown)}; choose from {MEASUREMENTS}")
    emit(header(mode, settings))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    steps: dict[str, Callable[[], Iterator[dict[str, Any]]]] = {
        "fit": lambda: measure_fit(settings, backends),
        "overhead": lambda: measure_overhead(settings),
        "parallel": lambda: _sweeps().measure_parallel(settings),
        "pruning": lambda: _sweeps().measure_pruning(settings),
    }
    failed = False
    for name in only:
        start = time.perf_counter()
        try:
            for line in steps[name]():
                emit(line)
        except Exception as exc:  # one broken measurement must not lose the others
            failed = True
            emit({"measurement": name, "error": f"{type(exc).__name__}: {exc}"[-3000:]})
        log(f"{name} took {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


def _with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    if args.limit_train:
        settings = replace(settings, fit_limit=args.limit_train, overhead_limit=args.limit_train,
                           parallel_limit=args.limit_train, prune_limit=args.limit_train)
    if args.epochs:
        settings = replace(settings, fit_epochs=args.epochs)
    if args.trials:
        settings = replace(settings, parallel_trials=args.trials, prune_trials=args.trials)
    return settings


def _sweeps() -> Any:
    from mnist_sweep import bench_sweeps

    return bench_sweeps


def _worker(args: argparse.Namespace) -> int:
    from mnist_sweep import bench_workers

    if args.worker == "fit":
        results = bench_workers.fit_worker(args.backend, args.models.split(","), args.epochs,
                                           args.limit_train, args.batch_size, args.seed,
                                           args.rounds)
    else:
        with tempfile.TemporaryDirectory(prefix="mnist-sweep-bench-") as tmp:
            results = bench_workers.overhead_worker(args.epochs, args.limit_train, Path(tmp))
    for result in results:
        print(RESULT + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
