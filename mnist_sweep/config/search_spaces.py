"""Conditional search spaces for the sweeper's `custom_search_space`.

Hydra's override grammar cannot address list elements (`model.hidden.0.units` is not a valid
key), and depth decides which per-layer parameters exist at all, so these functions suggest the
per-layer values and return whole `model.*` lists as overrides.
"""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig


def dense_layers(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    """`dense_search` (Task 4): 1-2 wide layers (128-1024, relu or gelu) with dropout, plus
    augmentation.

    Narrow or sigmoid nets top out near 97.5% on MNIST; 98% takes width, dropout against the
    overfitting width brings, and a few more epochs than the notebook's 5 (schedule: the sweep).
    """
    depth = trial.suggest_int("model.depth", 1, 2)
    hidden = [
        {
            "units": trial.suggest_int(f"model.hidden.{i}.units", 128, 1024, log=True),
            "activation": trial.suggest_categorical(f"model.hidden.{i}.activation",
                                                    ["relu", "gelu"]),
            "dropout": trial.suggest_float(f"model.hidden.{i}.dropout", 0.0, 0.5),
        }
        for i in range(depth)
    ]
    return {"model.hidden": hidden, **augmentation(trial)}


def dense_width(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    """One hidden layer, width and activation: the quickstart's small space."""
    units = trial.suggest_int("model.hidden.0.units", 8, 128, log=True)
    activation = trial.suggest_categorical("model.hidden.0.activation", ["sigmoid", "relu"])
    return {"model.hidden": [{"units": units, "activation": activation, "dropout": 0.0}]}


def cnn_blocks(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    """`cnn_search`: 2-3 conv blocks of 16-64 filters, each `same`-padded 3x3 conv -> [batch
    norm] -> relu -> 2x2 max pooling -> dropout, a dense head, and augmentation.

    A space where most trials are worth training: every candidate is a known-good shape
    (28 -> 14 -> 7 -> 3 after each block); what is searched is width, regularization and
    augmentation. Filters start at 16 or 32 and are kept or doubled block to block. Kernels 5
    and pooling 3 of the older space cost ~2.8x an epoch, or lost resolution, for no accuracy.
    """
    depth = trial.suggest_int("model.conv_depth", 2, 3)
    batch_norm = trial.suggest_categorical("model.batch_norm", [True, False])
    dropout = trial.suggest_float("model.conv_dropout", 0.0, 0.3)
    blocks, filters = [], trial.suggest_categorical("model.conv.0.filters", [16, 32])
    for i in range(depth):
        if i:  # kept or doubled (Optuna's choices cannot depend on earlier ones), at most 64
            filters = min(64, filters * trial.suggest_categorical(f"model.conv{i}.grow", [1, 2]))
        blocks.append({"filters": filters, "kernel": 3, "padding": "same", "activation": "relu",
                       "pool": 2, "batch_norm": batch_norm, "dropout": dropout})
    head = {
        "units": trial.suggest_categorical("model.hidden.0.units", [64, 128, 256]),
        "activation": "relu",
        "dropout": trial.suggest_float("model.hidden.0.dropout", 0.0, 0.5),
    }
    return {"model.conv": blocks, "model.hidden": [head], **augmentation(trial)}


def augmentation(trial: optuna.Trial) -> dict[str, Any]:
    """`train.augment` on or off, and one strength for all three transforms when on: at full
    strength turns of up to 12 degrees, shifts and zooms of up to 12% (3.4 pixels), within the
    range where digits stay what they are (a 6 turned far becomes a 9)."""
    strength = 0.0
    if trial.suggest_categorical("train.augment.on", [True, False]):
        strength = trial.suggest_float("train.augment.strength", 0.25, 1.0)
    return {"train.augment": {"rotation": round(12.0 * strength, 3),
                              "shift": round(0.12 * strength, 4),
                              "zoom": round(0.12 * strength, 4)}}
