"""Speed benchmark: the notebook's plain `model.fit` against mnist-sweep, as JSON lines on stdout.

    python -m benchmarks            # small: data slices, few epochs/trials, a few minutes
    python -m benchmarks --full     # the real figures (full MNIST, ~30 minutes on 2 cores)

(from the repository root; the benchmarks are not part of the installed package.)

Why a benchmark and not a claim: the speed-ups come from `steps_per_execution` (batches per Python
call), and the costs from what a trial records around training. Both depend on the machine, so
the figures are measured side by side, on the same models, data and seeds, and printed with the
machine and versions. Keras fixes its backend per process, so each backend's training runs in a
worker subprocess (`--worker fit`); the whole-trial overhead runs in one too (`--worker overhead`)
so it starts cold like a real trial (`workers.py`). Sweep measurements (parallel trials, pruning)
live in `sweeps.py`, scaling out to a two-node Ray cluster in `cluster.py`. Progress goes to
stderr; stdout carries only the JSON lines.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import cluster, fixed_costs, sweeps, transactions, workers
from benchmarks.common import (
    MEASUREMENTS,
    MODES,
    RESULT,
    Settings,
    emit,
    header,
    log,
    run_worker,
)


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
    args = ["overhead", "--epochs", str(settings.overhead_epochs),
            "--repeats", str(settings.overhead_repeats)]
    if settings.overhead_limit:
        args += ["--limit-train", str(settings.overhead_limit)]
    yield from run_worker(args)


# ---- CLI -------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full MNIST and more trials/epochs")
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    parser.add_argument("--backends", default="tensorflow,jax",
                        help="backends for the epoch speed-up (jax is skipped if not installed)")
    parser.add_argument("--limit-train", type=int, help="train-slice size for every measurement")
    parser.add_argument("--epochs", type=int, help="epochs for the epoch speed-up")
    parser.add_argument("--trials", type=int, help="trials per sweep (parallel and pruning)")
    parser.add_argument("--overhead-repeats", type=int,
                        help="warm trials of the overhead measurement (quick runs, tests)")
    parser.add_argument("--worker", choices=("fit", "overhead"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="tensorflow", help=argparse.SUPPRESS)
    parser.add_argument("--models", default="dense,cnn", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
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
        "parallel": lambda: sweeps.measure_parallel(settings),
        "pruning": lambda: sweeps.measure_pruning(settings),
        "throughput": lambda: sweeps.measure_throughput(settings),
        "sweeper_cost": lambda: fixed_costs.measure_sweeper_cost(settings),
        "transactions": lambda: transactions.measure_transactions(settings),
        "cluster": lambda: cluster.measure_scaling(settings),
    }
    failed = False
    lines: list[dict[str, Any]] = []
    for name in only:
        start = time.perf_counter()
        try:
            for line in steps[name]():
                emit(line)
                lines.append(line)
        except Exception as exc:  # one broken measurement must not lose the others
            failed = True
            emit({"measurement": name, "error": f"{type(exc).__name__}: {exc}"[-3000:]})
        log(f"{name} took {time.perf_counter() - start:.0f} s")
    emit(goals(lines))
    return 1 if failed else 0


def goals(lines: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run's figures that have a goal, side by side (None: not measured in this run)."""
    def find(measurement: str, **match: Any) -> dict[str, Any] | None:
        for line in lines:
            if line.get("measurement") == measurement and all(
                    line.get(k, line.get("settings", {}).get(k)) == v for k, v in match.items()):
                return line
        return None

    cost = find("sweeper_cost", mlflow=True)
    cold = find("trial_overhead", process="cold")
    throughput = find("sweep_throughput", n_jobs=1)
    txn = find("storage_transactions")
    scaling = find("cluster_scaling")
    figures = {
        "trial_cost_vs_hydra_basic": (cost and cost["ratio"], "<=", 1.2),
        "fixed_cost_minus_hydra_basic_s": (cost and cost["fixed_diff_s"], "<=", 2.0),
        "first_trial_over_training": (cold and round(cold["ratio"] - 1, 3), "<=", 0.25),
        "throughput_vs_plain_optuna_1_worker": (throughput and throughput["ratio"], ">=", 2.5),
        "before_first_trial_s": (throughput and throughput["ours"]["before_first_trial_s"],
                                 "<=", 3.0),
        "after_last_trial_s": (throughput and throughput["ours"]["after_last_trial_s"], "<=", 3.0),
        "storage_transactions_per_trial": (txn and txn.get("ours", {}).get("per_trial"), "<=",
                                           transactions.GOAL),
        "two_nodes_vs_one_trials_per_hour": (scaling and scaling.get("ratio"), ">=",
                                             cluster.GOAL),
    }
    return {"measurement": "goals", **{
        name: {"value": value, "goal": f"{op} {goal}",
               "met": None if value is None else (value <= goal if op == "<=" else value >= goal)}
        for name, (value, op, goal) in figures.items()}}


def _with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    if args.limit_train:
        settings = replace(settings, fit_limit=args.limit_train, overhead_limit=args.limit_train,
                           parallel_limit=args.limit_train, prune_limit=args.limit_train,
                           cluster_limit=args.limit_train)
    if args.epochs:
        settings = replace(settings, fit_epochs=args.epochs)
    if args.trials:
        settings = replace(settings, parallel_trials=args.trials, prune_trials=args.trials,
                           cluster_trials=args.trials)
    if args.overhead_repeats:
        settings = replace(settings, overhead_repeats=args.overhead_repeats)
    return settings


def _worker(args: argparse.Namespace) -> int:
    if args.worker == "fit":
        results = workers.fit_worker(args.backend, args.models.split(","), args.epochs,
                                           args.limit_train, args.batch_size, args.seed,
                                           args.rounds)
    else:
        with tempfile.TemporaryDirectory(prefix="mnist-sweep-bench-") as tmp:
            results = workers.overhead_worker(args.epochs, args.limit_train, Path(tmp),
                                              args.repeats)
    for result in results:
        print(RESULT + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
