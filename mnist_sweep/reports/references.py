"""The notebook's two models, measured once per machine and setting: the yardstick every sweep's
robustness summary compares its best model with.

The notebook's dense net and CNN (`model=dense`, `model=cnn`: its layers, 5 epochs at batch 32,
Adam 1e-3, seed 0) are trained on the sweep's own data setting and scored on the same clean and
noisy test sets (`eval.noise_levels`, `eval.noise_seed`) as every trial, so the comparison is
like for like: a quick sweep on `data.limit_train=5000` is compared with notebook models trained
on those 5,000 digits. Measured rather than copied from the README, because the figures depend on
the data setting, the noise levels and the TensorFlow/Keras version, all part of the cache key.
One seed: the notebook's figures move by about a point at f=0.5 from seed to seed.

Trained in a helper process (the plugin's `_impl/helper.py`), so the sweep process keeps its
backend, thread settings and MLflow state; about 25 s on 2 cores with the full data. The results
go to `notebook_reference.json` in the MNIST cache folder.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl.helper import Helper, serve

log = logging.getLogger(__name__)

FAMILIES = ("dense", "cnn")
CACHE_FILE = "notebook_reference.json"
VERSION = 1  # of how the references are made: a change here invalidates the cache
TIMEOUT_S = 900


def settings(data: Mapping[str, Any], ev: Mapping[str, Any]) -> dict[str, Any]:
    """What a reference depends on: the data setting, the noise, the framework versions."""
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "data": {k: data.get(k) for k in ("source", "dir", "val_size", "limit_train")},
        "noise_levels": [float(f) for f in ev["noise_levels"]],
        "noise_seed": ev.get("noise_seed"),
        "versions": {p: version(p) for p in ("tensorflow", "keras")},
        "reference_version": VERSION,
    }


def cache_file(data: Mapping[str, Any]) -> Path:
    from mnist_sweep.data.mnist import cache_path

    return cache_path(data.get("cache_dir")).parent / CACHE_FILE


def notebook_reference(
    data: Mapping[str, Any], ev: Mapping[str, Any]
) -> dict[str, dict[str, float]] | None:
    """{"dense"|"cnn": {"test_accuracy": ..., "test_accuracy_noise_<f>": ...}} for this setting:
    from the cache, else measured now and cached; None (with a warning) if that fails."""
    key = json.dumps(settings(data, ev), sort_keys=True)
    path = cache_file(data)
    cached = _read(path)
    if key in cached:
        return {f: cached[key][f] for f in FAMILIES if f in cached[key]}  # dense, then cnn
    print("measuring the notebook's dense and CNN models for the robustness summary (once for "
          "this data setting, cached in " f"{path})", flush=True)
    helper = Helper(__name__, {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")},
                    drop_env=("MLFLOW_RUN_ID",), quiet=True)
    try:
        outcome = helper.reply(TIMEOUT_S) if helper.start() and helper.send(
            (dict(data), dict(ev))) else None
    finally:
        helper.kill()
    if outcome is None or not outcome[0]:
        log.warning("could not measure the notebook's models: %s",
                    "no answer" if outcome is None else outcome[1])
        return None
    measured = outcome[1]
    cached = _read(path)  # again: another sweep may have written meanwhile
    cached[key] = measured
    _write(path, cached)
    return measured


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:  # a cache: the summary is shown anyway
        log.warning("could not cache the notebook's reference in %s: %s", path, exc)


def measure(data: Mapping[str, Any], ev: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Train and score the notebook's models in this process (the subprocess' work)."""
    from omegaconf import OmegaConf

    from mnist_sweep.config import registry
    from mnist_sweep.model import backend

    results = {}
    for family in FAMILIES:
        cfg = registry.compose([f"model={family}", "progress=false"])
        cfg = OmegaConf.merge(cfg, {"data": dict(data), "eval": dict(ev)})
        registry.validate(cfg)
        backend.configure(cfg.train)
        results[family] = _train_and_score(cfg)
    return results


def _train_and_score(cfg: Any) -> dict[str, float]:
    from mnist_sweep.data import mnist
    from mnist_sweep.model import evaluation, models, training

    splits = mnist.prepare(cfg.data)
    model = models.build_model(cfg.model, seed=cfg.train.seed, augment=cfg.train.augment,
                               noise=cfg.train.noise_augment)
    training.fit(model, splits, cfg.train)
    clean = evaluation.evaluate_clean(model, splits.x_test, splits.y_test, cfg.eval.batch_size)
    noisy = evaluation.evaluate_noise(model, splits.x_test, splits.y_test, cfg.eval.noise_levels,
                                      cfg.eval.noise_seed, cfg.eval.batch_size)
    return {"test_accuracy": clean.metrics["test_accuracy"], **evaluation.noise_metrics(noisy)}


if __name__ == "__main__":
    sys.exit(serve(lambda request: measure(*request)))
