"""The benchmark's measurements that train in-process; each runs in its own worker subprocess.

Separate from `run.py`'s own code because they import Keras, which fixes the backend for the
process: the parent stays backend-free and starts one worker per backend.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ratio

TARGET_OVERHEAD = 0.10  # the target: framework overhead under 10% of a 5-epoch trial


# ---- 1. notebook fit vs mnist-sweep fit ------------------------------------------------------
def fit_worker(backend_name: str, families: Sequence[str], epochs: int, limit: int | None,
               batch_size: int, seed: int, rounds: int = 1) -> list[dict[str, Any]]:
    """Per family: the notebook's plain fit, then `training.fit`, same weights, data and seed.

    `rounds` pairs, alternating, so a slow spell of a shared machine hits both sides; each side
    reports its median round (by s/epoch) and every round's s/epoch.
    """
    from mnist_sweep.model import backend

    backend.select(backend_name)
    from omegaconf import OmegaConf

    from mnist_sweep.data import mnist

    splits = mnist.prepare({"limit_train": limit})
    _notebook_fit({"family": "dense", "hidden": [{"units": 8}]}, _head(splits, 320), 1, 32, seed)
    results = []
    for family in families:
        model_cfg = OmegaConf.to_container(_compose([f"model={family}"]).model)
        assert isinstance(model_cfg, dict)
        pairs = [(_notebook_fit(model_cfg, splits, epochs, batch_size, seed),
                  _our_fit(model_cfg, splits, epochs, batch_size, seed)) for _ in range(rounds)]
        baseline, ours = (_median_round([pair[side] for pair in pairs]) for side in (0, 1))
        results.append({
            "measurement": "epoch_speedup",
            "settings": {"backend": backend_name, "model": family, "epochs": epochs,
                         "batch_size": batch_size, "limit_train": limit,
                         "n_train": len(splits.x_train), "seed": seed, "rounds": rounds},
            "baseline": baseline,
            "ours": ours,
            "ratio": ratio(baseline["s_per_epoch"], ours["s_per_epoch"]),
            "ratio_is": "baseline s/epoch / ours s/epoch, epochs after the first (compiling)",
            "first_epoch_ratio": ratio(baseline["first_epoch_s"], ours["first_epoch_s"]),
            "val_accuracy_diff": round(ours["val_accuracy"] - baseline["val_accuracy"], 4),
            "test_accuracy_diff": round(ours["test_accuracy"] - baseline["test_accuracy"], 4),
        })
    return results


def _median_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median s/epoch, plus every run's s/epoch."""
    ranked = sorted(runs, key=lambda r: r["s_per_epoch"] or 0.0)
    return {**ranked[len(ranked) // 2], "s_per_epoch_rounds": [r["s_per_epoch"] for r in runs]}


def _head(splits: Any, n: int) -> Any:
    from dataclasses import replace

    return replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n],
                   x_val=splits.x_val[:n], y_val=splits.y_val[:n])


def _notebook_fit(model_cfg: Mapping[str, Any], splits: Any, epochs: int, batch_size: int,
                  seed: int) -> dict[str, Any]:
    """The notebook: compile with the defaults, `fit` one batch per step, validate each epoch."""
    import keras

    from mnist_sweep.model import models

    model = models.build_model(model_cfg, seed=seed)
    keras.utils.set_random_seed(seed)  # as training.fit does, so both paths shuffle alike
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: ends.append(_now()))
    start = _now()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    history = model.fit(splits.x_train, splits.y_train, epochs=epochs, batch_size=batch_size,
                        validation_data=(splits.x_val, splits.y_val), callbacks=[clock],
                        verbose=0)
    return _figures(model, splits, start, ends, history.history["val_accuracy"][-1])


def _our_fit(model_cfg: Mapping[str, Any], splits: Any, epochs: int, batch_size: int,
             seed: int) -> dict[str, Any]:
    from mnist_sweep.model import models, training

    model = models.build_model(model_cfg, seed=seed)
    train = {"epochs": epochs, "batch_size": batch_size, "optimizer": "adam",
             "learning_rate": 0.001, "seed": seed, "shuffle": True, "steps_per_execution": "auto"}
    ends: list[float] = []
    start = _now()
    result = training.fit(model, splits, train, on_epoch=lambda e, logs: ends.append(_now()))
    return _figures(model, splits, start, ends, result.history["val_accuracy"][-1])


def _figures(model: Any, splits: Any, start: float, ends: list[float],
             val_accuracy: float) -> dict[str, Any]:
    """Epoch times from one epoch end to the next (training + validation, as a user waits)."""
    from mnist_sweep.model import evaluation

    steady = float(np.mean(np.diff(ends))) if len(ends) > 1 else None
    probs = model.predict(splits.x_test, batch_size=2048, verbose=0)
    return {
        "s_per_epoch": None if steady is None else round(steady, 4),
        "first_epoch_s": round(ends[0] - start, 4),
        "total_s": round(ends[-1] - start, 3),
        "steps_per_execution": int(getattr(model, "steps_per_execution", 1) or 1),
        "val_accuracy": round(float(val_accuracy), 4),
        "test_accuracy": round(evaluation.accuracy(probs, splits.y_test), 4),
    }


def _now() -> float:
    return time.perf_counter()


def _compose(overrides: Sequence[str]) -> Any:
    """The app's config as `mnist-sweep` composes it."""
    from mnist_sweep.config import registry

    return registry.compose(overrides)


# ---- 2. framework overhead of one tracked trial ----------------------------------------------
class Phases:
    """Wall time per named step of `experiment.run`, by wrapping module attributes it calls.

    Instrumentation for the benchmark only: each wrapper calls the original and adds its time.
    A step that no longer exists (renamed) is simply not timed.
    """

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.returned: dict[str, Any] = {}

    def wrap(self, module: Any, attr: str, name: str) -> None:
        original = getattr(module, attr, None)
        if original is None:
            return

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = _now()
            try:
                self.returned[name] = original(*args, **kwargs)
                return self.returned[name]
            finally:
                self.times[name] = self.times.get(name, 0.0) + _now() - start

        setattr(module, attr, timed)

    def wrap_context(self, module: Any, attr: str, enter: str, exit_: str) -> None:
        """Times entering and leaving a context manager (opening and ending the MLflow run)."""
        original: Callable[..., Any] = getattr(module, attr)

        @contextlib.contextmanager
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            start = _now()
            with original(*args, **kwargs) as value:
                self.times[enter] = _now() - start
                yield value
                start = _now()
            self.times[exit_] = _now() - start

        setattr(module, attr, timed)


def overhead_worker(epochs: int, limit: int | None, tmp: Path,
                    repeats: int = 3) -> list[dict[str, Any]]:
    """`experiment.run` of a dense trial in one process, as a sweep worker runs them.

    cold: the process' first trial (imports, data, MLflow store). warm: the median of the later
    ones, what every further trial of a sweep costs.
    """
    from mnist_sweep.model import backend

    os.chdir(tmp)  # MLflow's artifact root for a sqlite store is ./mlruns
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    os.environ.pop("MLFLOW_RUN_ID", None)
    start = _now()
    backend.configure({"backend": "tensorflow"})  # imports TensorFlow, as a trial's start does
    from mlflow.tracking import MlflowClient

    from mnist_sweep import experiment
    from mnist_sweep.data import mnist
    from mnist_sweep.model import evaluation, models, training
    from mnist_sweep.tracking import render, runs

    imports_s = _now() - start
    # A sweep opens its MLflow store (the parent run, in prepare) before a worker's first trial,
    # and MLflow keeps one store per URI and process: creating it is the command's fixed cost
    # (sweeper_cost), reported here apart, not the first trial's.
    start = _now()
    MlflowClient().search_experiments(max_results=1)
    store_s = _now() - start
    cfg = _compose(["progress=false", "model=dense", f"train.epochs={epochs}",
                    f"data.limit_train={limit if limit else 'null'}", "tracking.experiment=bench"])
    phases = Phases()
    for module, attr, name in (
        (mnist, "prepare", "load_data"), (runs, "provenance_tags", "provenance_tags"),
        (runs, "log_params", "log_params"), (runs, "log_dataset", "log_dataset"),
        (models, "build_model", "build_model"), (training, "fit", "train"),
        (runs, "log_epoch", "log_epoch"), (evaluation, "evaluate_clean", "evaluate"),
        (evaluation, "evaluate_noise", "evaluate"),
        (runs, "log_keras_model", "log_model"),
        # this process' share of the figures: handing them to the helper, waiting, logging
        (render.Figures, "draw", "log_plots"), (render.Figures, "wait", "log_plots"),
        (runs, "log_plot_dir", "log_plots"),
    ):
        phases.wrap(module, attr, name)
    phases.wrap_context(runs, "start_run", "start_run", "end_run")

    def trials(n: int) -> dict[str, Any]:
        phases.times.clear()
        walls, trains = [], []
        for _ in range(n):
            start = _now()
            experiment.run(cfg)
            walls.append(_now() - start)
            trains.append(float(phases.returned["train"].train_time_s))
        return {"wall": walls, "train": trains, "times": dict(phases.times)}

    settings = {"backend": "tensorflow", "model": "dense", "epochs": epochs,
                "batch_size": int(cfg.train.batch_size), "limit_train": limit,
                "tracking": "temp sqlite store", "log_plots": True, "log_model": True}
    results = []
    for process, n in (("cold", 1), ("warm", repeats)):
        got = trials(n)
        median = int(np.argsort(got["wall"])[n // 2])  # the median trial
        wall, train_s = got["wall"][median], got["train"][median]
        times = {k: v / n for k, v in got["times"].items()}  # phases: mean per trial
        times["other"] = float(np.mean(got["wall"])) - sum(
            v for k, v in times.items() if k != "log_epoch")
        overhead = wall - train_s
        plots_s = times.get("log_plots", 0.0)
        results.append({
            "measurement": "trial_overhead",
            "process": process,
            "settings": {**settings, "trials": n},
            "baseline": {"train_time_s": round(train_s, 3)},
            "ours": {"trial_wall_s": round(wall, 3)},
            "ratio": round(wall / train_s, 3),
            "ratio_is": "trial wall time / its training time",
            "overhead_s": round(overhead, 3),
            "overhead_fraction": round(overhead / wall, 4),
            "target_fraction": TARGET_OVERHEAD,
            "under_target": overhead / wall < TARGET_OVERHEAD,
            # what the figures cost this process (the helper draws them): without log_plots
            "fraction_without_plots": round((overhead - plots_s) / (wall - plots_s), 4),
            "phases_s": {k: round(v, 3) for k, v in sorted(times.items(), key=lambda kv: -kv[1])},
            "imports_before_run_s": round(imports_s, 2) if process == "cold" else 0.0,
            "store_before_run_s": round(store_s, 2) if process == "cold" else 0.0,
        })
    return results
