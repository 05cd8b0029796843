"""A finished sweep, read back: the one reader the end-of-sweep callbacks share.

The `optuna_mlflow` sweeper ends by writing `optimization_results.yaml` into the sweep folder:
the study's name, its storage (a password masked) and the MLflow parent run. The study itself is
in that storage, opened with the sweeper's own setting when the file's copy is masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import DictConfig

RESULTS_FILE = "optimization_results.yaml"


@dataclass(frozen=True)
class FinishedSweep:
    study: optuna.Study
    # {"tracking_uri": ..., "parent_run_id": ...}; None when the sweep recorded nothing in MLflow
    parent: Mapping[str, Any] | None


def is_optuna_mlflow(config: DictConfig) -> bool:
    """Whether this run's sweeper is ours (the callbacks are in every run's config)."""
    return str(config.hydra.sweeper.get("_target_", "")).endswith("OptunaMlflowSweeper")


def read_results(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweeper's results file: study name, storage, parent run."""
    return yaml.safe_load((Path(sweep_dir) / RESULTS_FILE).read_text())


def read(config: DictConfig) -> FinishedSweep | None:
    """The sweep `config` ran, or None: another sweeper, or a sweep that ended before writing its
    results (it said why)."""
    if not is_optuna_mlflow(config):
        return None
    try:
        results = read_results(config.hydra.sweep.dir)
        study = optuna.load_study(study_name=results["study_name"],
                                  storage=_unmasked(config, results["storage"]))
    except (OSError, KeyError, TypeError):
        return None
    return FinishedSweep(study, results.get("mlflow") or None)


def _unmasked(config: DictConfig, storage: str) -> str:
    """The results file masks a password; the sweeper's own setting has the real URL."""
    given = config.hydra.sweeper.get("storage")
    return str(given) if given and "***" in storage else storage
