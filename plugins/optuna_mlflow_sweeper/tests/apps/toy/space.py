"""Custom search space for the tests: n_layers decides which per-layer params exist."""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig


def layers(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    n_layers = trial.suggest_int("n_layers", 1, 3)
    hidden = [
        {
            "units": trial.suggest_int(f"units_{i}", 8, 64, log=True),
            "activation": trial.suggest_categorical(f"activation_{i}", ["relu", "tanh"]),
        }
        for i in range(n_layers)
    ]
    return {"model.hidden": hidden}
