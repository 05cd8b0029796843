"""A finished study's summary plots as files, for reports made outside a sweep.

    from hydra_plugins.optuna_mlflow_sweeper.results import write_study_plots

    write_study_plots(optuna.load_study(study_name=..., storage=...), "reports/my_study")

The same figures the sweeper logs on the parent run (optimization history, importances, parallel
coordinates, intermediate values; the Pareto front for multi-objective). Optuna, matplotlib and
the drawing code load on the first call, not on import (Hydra imports this module everywhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna


def write_study_plots(study: optuna.Study, out_dir: str | Path) -> list[Path]:
    """Write each summary plot as `<out_dir>/<name>.png`; return the files written."""
    from hydra_plugins.optuna_mlflow_sweeper._impl.results import write_study_plots as write

    return write(study, out_dir)
