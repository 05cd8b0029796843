"""Two nodes of the `train` group: data augmentation and the learning-rate schedule, their
typed schemas and their rules (`schema.check_train` calls these).

Kept apart from schema.py only for length; the same conventions hold: a dataclass per node, an
error naming the dotted key and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from mnist_sweep.errors import ConfigError, is_positive_int
from mnist_sweep.model.checkpoint_store import unwritable

# OmegaConf 2.3 types fields from annotations at runtime: `Optional[int]` rather than `int | None`.
# ruff: noqa: UP007, UP045

LR_SCHEDULES = ("constant", "cosine", "exponential", "reduce_on_plateau")


@dataclass
class AugmentConfig:
    """Random geometric changes of the training digits, drawn anew for every batch: Keras layers
    inside the model, active in training only (0 = off). `rotation` is the largest turn in
    degrees, `shift` and `zoom` fractions of the 28-pixel side."""

    rotation: float = 0.0
    shift: float = 0.0
    zoom: float = 0.0


@dataclass
class LRScheduleConfig:
    """How the learning rate moves from `train.learning_rate` while training."""

    name: str = "constant"  # constant | cosine | exponential | reduce_on_plateau
    final_fraction: float = 0.0  # cosine: the rate it ends at, as a fraction of learning_rate
    factor: float = 0.5  # exponential: multiplies the rate each epoch; reduce_on_plateau: a cut
    patience: int = 1  # reduce_on_plateau: epochs without val_accuracy gain before a cut


@dataclass
class CheckpointConfig:
    """Per-epoch training state a retried trial resumes from (mnist_sweep/model/checkpoints.py)."""

    enabled: Optional[bool] = None  # null: on in a sweep's trials, off in single runs
    every: int = 1  # epochs between checkpoints
    dir: Optional[str] = None
    """Where checkpoints go: a path or an fsspec URL (`s3://bucket/prefix`, `gs://...`,
    `file://...`; credentials from the environment). null: `<hydra.sweep.dir>/checkpoints`
    (single runs: `./checkpoints`). A retried trial resumes from where its first try recorded
    its checkpoint, wherever this points now."""


AUGMENT_RANGES = {"rotation": (180.0, "degrees"), "shift": (0.5, "of the side"),
                  "zoom": (0.5, "of the side")}


def check_augment(augment: Mapping[str, Any]) -> None:
    for key, (most, unit) in AUGMENT_RANGES.items():
        if not _number_in(augment.get(key, 0.0), 0.0, most):
            raise ConfigError(f"train.augment.{key}", augment.get(key),
                              f"a float in [0, {most:g}] ({unit}; 0 = off)")


def check_lr_schedule(schedule: Mapping[str, Any], early_stopping: int | None) -> None:
    name, patience = schedule.get("name", "constant"), schedule.get("patience", 1)
    if name not in LR_SCHEDULES:
        raise ConfigError("train.lr_schedule.name", name, LR_SCHEDULES)
    if not _number_in(schedule.get("final_fraction", 0.0), 0.0, 1.0):
        raise ConfigError("train.lr_schedule.final_fraction", schedule.get("final_fraction"),
                          "a float in [0, 1]")
    factor = schedule.get("factor", 0.5)
    if not _number_in(factor, 0.0, 1.0) or factor in (0, 1):
        raise ConfigError("train.lr_schedule.factor", factor, "a float in (0, 1)")
    if not is_positive_int(patience):
        raise ConfigError("train.lr_schedule.patience", patience, "a positive int")
    if name == "reduce_on_plateau" and early_stopping is not None and patience >= early_stopping:
        # training would stop before the rate was ever cut: the schedule would do nothing
        raise ConfigError("train.lr_schedule.patience", patience,
                          f"less than train.early_stopping_patience ({early_stopping}) with "
                          "reduce_on_plateau, or the rate is never cut before training stops")


def check_checkpoint(checkpoint: Mapping[str, Any]) -> None:
    every = checkpoint.get("every", 1)
    if not is_positive_int(every):
        raise ConfigError("train.checkpoint.every", every, "a positive int (epochs)")
    folder = checkpoint.get("dir")
    if folder and checkpoint.get("enabled") is not False:
        # a read-only or full disk: said before anything trains, not at the first epoch's end
        problem = unwritable(str(folder))
        if problem:
            raise ConfigError("train.checkpoint.dir", folder,
                              f"a folder on a writable disk with room ({problem})")


def _number_in(value: Any, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
