"""Whole-config checks and the flat view of a config that MLflow params need."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
SECTIONS = ("model", "data", "train", "eval", "tracking")

RUN_METRICS = (
    "val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_time_s", "epoch_time_s_mean",
    "n_params",
)


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return container


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"model": {"hidden": [{"units": 16}]}}` -> `{"model.hidden.0.units": 16}`."""
    if isinstance(tree, Mapping):
        items = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    if not flat and prefix:
        flat[prefix] = "[]" if isinstance(tree, list) else "{}"
    return flat


def allowed_objectives(cfg: Mapping[str, Any]) -> list[str]:
    from mnist_sweep.evaluation import noise_metric_name

    levels = cfg["eval"]["noise_levels"]
    noise = [noise_metric_name(float(f)) for f in levels]
    return [*RUN_METRICS, *noise, *(["test_accuracy_noise_mean"] if levels else [])]


def validate(cfg: Mapping[str, Any]) -> None:
    """Every check, before data is loaded or a run is opened: a typo costs nothing."""
    from mnist_sweep.data import validate_data_config
    from mnist_sweep.evaluation import validate_eval_config
    from mnist_sweep.models import validate_model_config
    from mnist_sweep.training import validate_train_config

    for section in SECTIONS:
        unknown = sorted(set(cfg[section]) - known_keys(section))
        if unknown:  # e.g. `+train.epoch=3`: Hydra adds it, nothing would ever read it
            raise ConfigError(f"{section}.{unknown[0]}", cfg[section][unknown[0]],
                              f"keys {', '.join(sorted(known_keys(section)))}")
    validate_model_config(cfg["model"])
    validate_data_config(cfg["data"])
    validate_train_config(cfg["train"])
    validate_eval_config(cfg["eval"])
    objectives = cfg.get("objectives")
    allowed = allowed_objectives(cfg)
    if not objectives or any(o not in allowed for o in objectives):
        raise ConfigError("objectives", objectives, allowed)


@functools.cache
def known_keys(section: str) -> frozenset[str]:
    """The keys a section may have: those its config group's files define."""
    keys: set[str] = set()
    for path in (CONF_DIR / section).glob("*.yaml"):
        keys |= set(yaml.safe_load(path.read_text()) or {})
    return frozenset(keys)
