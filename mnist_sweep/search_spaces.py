"""Conditional search spaces for the sweeper's `custom_search_space`.

Hydra's override grammar cannot address list elements (`model.hidden.0.units` is not a valid
key), and depth decides which per-layer parameters exist at all, so these functions suggest the
per-layer values and return whole `model.*` lists as overrides.
"""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig

ACTIVATIONS = ["relu", "sigmoid", "tanh", "gelu"]


def dense_layers(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    """Task 4: depth 1-3, widths 16-512, activation and dropout per layer."""
    depth = trial.suggest_int("model.depth", 1, 3)
    return {"model.hidden": [_dense_layer(trial, f"model.layer{i}") for i in range(depth)]}


def dense_width(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    """One hidden layer, width and activation: the quickstart's small space."""
    units = trial.suggest_int("model.units", 8, 128, log=True)
    activation = trial.suggest_categorical("model.activation", ["sigmoid", "relu"])
    return {"model.hidden": [{"units": units, "activation": activation, "dropout": 0.0}]}


def cnn_blocks(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    """Task 5: 1-3 conv blocks (filters, kernel, pooling, batch norm, dropout) + a dense head."""
    depth = trial.suggest_int("model.conv_depth", 1, 3)
    blocks = []
    for i in range(depth):
        prefix = f"model.conv{i}"
        blocks.append(
            {
                "filters": trial.suggest_categorical(f"{prefix}.filters", [4, 8, 16, 32]),
                "kernel": trial.suggest_categorical(f"{prefix}.kernel", [3, 5]),
                # "same" padding and a pooling after every block keep any stack of 3 valid
                # (28 -> 14|9 -> 7|4|3 -> 3|2|1) and affordable on 2 cores: a second 32-filter
                # 5x5 conv at the full 28x28 took 70 s an epoch here.
                "padding": "same",
                "activation": "relu",
                "pool": trial.suggest_categorical(f"{prefix}.pool", [2, 3]),
                "batch_norm": trial.suggest_categorical(f"{prefix}.batch_norm", [True, False]),
                "dropout": trial.suggest_float(f"{prefix}.dropout", 0.0, 0.4),
            }
        )
    head = [_dense_layer(trial, "model.head")]
    return {"model.conv": blocks, "model.hidden": head}


def _dense_layer(trial: optuna.Trial, prefix: str) -> dict[str, Any]:
    return {
        "units": trial.suggest_int(f"{prefix}.units", 16, 512, log=True),
        "activation": trial.suggest_categorical(f"{prefix}.activation", ACTIVATIONS),
        "dropout": trial.suggest_float(f"{prefix}.dropout", 0.0, 0.5),
    }
