"""The benchmark's sweep measurements: parallel vs sequential trials, pruned TPE vs random.

Each sweep is a real `python -m mnist_sweep -m ...` subprocess (the command a user runs), in a
temp directory with its own Optuna and MLflow stores; results are read back from the study.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper.tracking import mask_url

from benchmarks.common import ROOT, Settings, clean_env, log, ratio


class Sweeps:
    """Runs sweeps under one temp directory; every sweep gets a copy of a ready MLflow store."""

    def __init__(self, root: Path) -> None:
        from mlflow.tracking import MlflowClient

        self.root = root
        self.template = root / "template.db"
        # Schema creation takes seconds; paying it once keeps it out of every sweep's wall time.
        MlflowClient(tracking_uri=f"sqlite:///{self.template}").search_experiments()

    def run(self, name: str, overrides: Sequence[str], n_jobs: int = 1) -> dict[str, Any]:
        """Run one sweep; its wall time, what its study recorded, and the seconds from the
        command's start to its first trial's and from its last trial's end to its exit (Optuna
        keeps naive local times: compared with this clock's)."""
        sweep_dir = self.root / name
        started = datetime.now()
        # The notebook's reference models are measured once per machine and data setting, by
        # whichever sweep comes first (~10-25 s after its last trial): not a sweep's own cost.
        wall = self.wall(name, [sys.executable, "-m", "mnist_sweep", "-m",
                                f"hydra.sweep.dir={sweep_dir}", "progress=false",
                                "hydra.callbacks.sweep_summary.reference=false", *overrides])
        ended = datetime.now()
        stats = study_stats(sweep_dir / "optuna.db", n_jobs)
        first, last = stats.pop("first_start"), stats.pop("last_end")
        return {"wall_s": round(wall, 2), **stats,
                "before_first_trial_s": round((first - started).total_seconds(), 2),
                "after_last_trial_s": last and round((ended - last).total_seconds(), 2)}

    def wall(self, name: str, command: Sequence[str]) -> float:
        """Seconds the whole command took, recording into a fresh copy of the ready store."""
        store = self.root / f"{name}.db"
        shutil.copy(self.template, store)
        log(f"sweep {name}: {' '.join(mask_url(a) if '://' in a else a for a in command[1:])}")
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                              env=clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{store}"),
                              timeout=3600)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"sweep {name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return wall


def study_stats(path: Path, n_jobs: int = 1) -> dict[str, Any]:
    """Counts, best value, trial times and each finished trial's (seconds in, value).

    `trial_s_after_first_batch`: mean duration of the trials after the first batch of `n_jobs`,
    i.e. once each worker process has started and paid its imports: the steady per-trial cost.
    """
    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{path}"
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    t0 = min(t.datetime_start for t in trials if t.datetime_start)
    done = sorted((t for t in trials if t.datetime_complete), key=lambda t: t.datetime_complete)
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    train = [t.user_attrs["train_time_s"] for t in complete if "train_time_s" in t.user_attrs]
    return {
        "n_complete": len(complete),
        "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "n_failed": sum(t.state == TrialState.FAIL for t in trials),
        "best_value": round(max(t.value for t in complete), 4) if complete else None,
        "trial_time_s_sum": round(sum((t.datetime_complete - t.datetime_start).total_seconds()
                                      for t in done), 2),
        "train_time_s_sum": round(sum(train), 2),
        "trial_s_after_first_batch": _mean([(t.datetime_complete - t.datetime_start)
                                            .total_seconds() for t in done if t.number >= n_jobs]),
        "finished": [((t.datetime_complete - t0).total_seconds(), t.value) for t in complete],
        "first_start": t0,
        "last_end": done[-1].datetime_complete if done else None,
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def time_to_reach(finished: list[tuple[float, float]], target: float) -> float | None:
    """Seconds from the first trial's start until a finished trial scored >= target."""
    for seconds, value in finished:
        if value >= target - 1e-9:
            return round(seconds, 2)
    return None


# ---- 3. parallel vs sequential trials --------------------------------------------------------
def measure_parallel(settings: Settings) -> Iterator[dict[str, Any]]:
    """The same grid of trials (seeds) by one worker and by 2 workers (`hydra.sweeper.n_jobs`).

    Both are the whole `mnist-sweep` command, worker start-up included. `ratio` = one worker's
    wall / two workers' wall (> 1: the workers finished sooner).
    """
    n = settings.parallel_trials
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-bench-") as tmp:
        sweeps = Sweeps(Path(tmp))
        for model in settings.parallel_models:
            common = [
                f"model={model}", f"train.epochs={settings.parallel_epochs}",
                f"data.limit_train={settings.parallel_limit or 'null'}",
                "hydra/sweeper=optuna_mlflow", "hydra/sweeper/sampler=grid",
                "hydra.sweeper.direction=maximize", f"hydra.sweeper.n_trials={n}",
                f"train.seed=choice({','.join(str(i) for i in range(n))})",
            ]
            base = {"backend": "tensorflow", "model": model, "epochs": settings.parallel_epochs,
                    "batch_size": 32, "limit_train": settings.parallel_limit, "n_trials": n}
            one = sweeps.run(f"{model}-1", [*common, "hydra.sweeper.n_jobs=1"])
            two = sweeps.run(f"{model}-2", [*common, "hydra.sweeper.n_jobs=2"], 2)
            yield _line("parallel_trials", {**base, "n_jobs": 2, "workers": "local processes",
                                            "threads": "cores / n_jobs each"}, one, two, 2)


# ---- 5. whole-sweep throughput against plain Optuna + MLflowCallback -------------------------
def measure_throughput(settings: Settings) -> Iterator[dict[str, Any]]:
    """Trials per hour of whole processes: the plain script a user would write
    (benchmarks/plain_optuna.py) against `mnist-sweep sweep=quickstart` with 1 and 2 workers,
    same space, trials, epochs and data. mnist-sweep records more per trial (config, per-epoch
    curves, four figures, the model, the dataset): the comparison is what each costs a user."""
    n, epochs, limit = settings.throughput_trials, settings.throughput_epochs, \
        settings.throughput_limit
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-bench-") as tmp:
        root = Path(tmp)
        sweeps = Sweeps(root)
        store = root / "plain.db"
        shutil.copy(sweeps.template, store)
        command = [sys.executable, "-m", "benchmarks.plain_optuna", "--trials", str(n),
                   "--epochs", str(epochs), "--tracking-uri", f"sqlite:///{store}"]
        if limit:
            command += ["--limit-train", str(limit)]
        log(f"throughput: plain Optuna + MLflowCallback, {n} trials")
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env=clean_env(), timeout=3600)
        plain_s = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"plain optuna failed: {proc.stderr[-2000:]}")
        common = ["sweep=quickstart", f"hydra.sweeper.n_trials={n}", f"train.epochs={epochs}",
                  f"data.limit_train={limit or 'null'}"]
        base = {"model": "dense (quickstart space)", "n_trials": n, "epochs": epochs,
                "limit_train": limit, "batch_size": 32}
        for workers in (1, 2):
            ours = sweeps.run(f"quickstart-{workers}", [*common, f"hydra.sweeper.n_jobs={workers}"],
                              workers)
            yield {
                "measurement": "sweep_throughput",
                "settings": {**base, "n_jobs": workers},
                "baseline": {"what": "plain Optuna + optuna-integration MLflowCallback",
                             "wall_s": round(plain_s, 2),
                             "trials_per_hour": round(3600 * n / plain_s)},
                "ours": {**_public(ours), "trials_per_hour": round(3600 * n / ours["wall_s"])},
                "ratio": ratio(plain_s, ours["wall_s"]),
                "ratio_is": "baseline wall / ours wall (whole processes, same trials)",
            }


def _line(name: str, settings: dict[str, Any], baseline: dict[str, Any],
          ours: dict[str, Any], n_jobs: int) -> dict[str, Any]:
    """`ratio`: wall times, worker start-up included. `steady_throughput_ratio`: trials per
    second once workers run (> 1: n_jobs side by side beat one at a time), start-up excluded.
    `train_time_ratio`: summed training time, < 1 when side-by-side trials slow each other."""
    steady_ours = ours["trial_s_after_first_batch"]
    return {
        "measurement": name,
        "settings": settings,
        "baseline": _public(baseline),
        "ours": _public(ours),
        "ratio": ratio(baseline["wall_s"], ours["wall_s"]),
        "ratio_is": "baseline wall / ours wall (whole sweep command)",
        "steady_throughput_ratio": ratio(baseline["trial_s_after_first_batch"],
                                         None if steady_ours is None else steady_ours / n_jobs),
        "train_time_ratio": ratio(baseline["train_time_s_sum"], ours["train_time_s_sum"]),
    }


def _public(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k != "finished"}


# ---- 4. pruned TPE vs unpruned random search -------------------------------------------------
def measure_pruning(settings: Settings) -> Iterator[dict[str, Any]]:
    """sweeps/cnn_search.yaml as shipped (TPE + Hyperband) vs random sampling without pruning.

    Per sampler seed: the same trial count, data slice and epochs on both sides; TPE's random
    start-up phase is shortened to a third of the trials so a short benchmark still sees TPE
    choose. Target: the random search's best. One search is a handful of draws, so one seed
    proves little either way: a line per seed, then the medians over seeds.
    """
    n = settings.prune_trials
    startup = max(2, n // 3)
    common = ["sweep=cnn_search", f"train.epochs={settings.prune_epochs}",
              f"data.limit_train={settings.prune_limit or 'null'}",
              f"data.val_size={settings.prune_val_size}",
              f"hydra.sweeper.n_trials={n}", "hydra.sweeper.n_jobs=1"]
    base = {"backend": "tensorflow", "model": "cnn (sweeps/cnn_search.yaml)",
            "epochs": settings.prune_epochs, "batch_size": 128, "limit_train": settings.prune_limit,
            "val_size": settings.prune_val_size, "n_trials": n, "n_jobs": 1,
            "tpe_n_startup_trials": startup, "objective": "val_accuracy"}
    lines = []
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-bench-") as tmp:
        sweeps = Sweeps(Path(tmp))
        for seed in settings.prune_seeds:
            seeded = [*common, f"hydra.sweeper.sampler.seed={seed}"]
            random = sweeps.run(f"random-{seed}", [*seeded, "hydra/sweeper/sampler=random",
                                                   "hydra/sweeper/pruner=none"])
            tpe = sweeps.run(f"tpe-{seed}", [*seeded,
                                             f"hydra.sweeper.sampler.n_startup_trials={startup}"])
            lines.append(_pruning_line({**base, "sampler_seed": seed}, random, tpe))
            yield lines[-1]
    yield _pruning_summary(base, lines)


def _pruning_line(settings: dict[str, Any], random: dict[str, Any],
                  tpe: dict[str, Any]) -> dict[str, Any]:
    """`ratio`: the issue's question, random's whole wall time over TPE's time to random's best
    (the random search has to run to the end to know its best). `time_to_target_ratio`: the
    stricter one, against the moment random itself first reached that best."""
    target = random["best_value"]
    reached = {label: None if target is None else time_to_reach(stats["finished"], target)
               for label, stats in (("random", random), ("tpe", tpe))}
    return {
        "measurement": "pruned_tpe_vs_random",
        "settings": settings,
        "baseline": {"sampler": "random", "pruner": "none", **_public(random),
                     "time_to_target_s": reached["random"]},
        "ours": {"sampler": "tpe", "pruner": "hyperband", **_public(tpe),
                 "time_to_target_s": reached["tpe"]},
        "target": target,
        "ratio": ratio(random["wall_s"], reached["tpe"]),
        "ratio_is": "random wall / tpe time to random's best (None: tpe never reached it)",
        "time_to_target_ratio": ratio(reached["random"], reached["tpe"]),
        "wall_ratio": ratio(random["wall_s"], tpe["wall_s"]),
        "best_value_diff": None if target is None or tpe["best_value"] is None
        else round(tpe["best_value"] - target, 4),
    }


def _pruning_summary(settings: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds; a seed where TPE never reached the target counts as ratio 0."""
    def median(key: str) -> float | None:
        values = [line[key] or 0.0 for line in lines]
        return round(float(statistics.median(values)), 3) if values else None

    return {
        "measurement": "pruned_tpe_vs_random_summary",
        "settings": {**settings, "sampler_seeds": [ln["settings"]["sampler_seed"] for ln in lines]},
        "seeds_reaching_target": sum(ln["ours"]["time_to_target_s"] is not None for ln in lines),
        "n_pruned": [ln["ours"]["n_pruned"] for ln in lines],
        "best_value_diff": [ln["best_value_diff"] for ln in lines],
        "ratio": median("ratio"),
        "ratio_is": "median over seeds of random wall / tpe time to random's best",
        "time_to_target_ratio": median("time_to_target_ratio"),
        "wall_ratio": median("wall_ratio"),
    }
