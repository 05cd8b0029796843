"""A finished study's figures as files, for reports made outside a sweep.

    from hydra_plugins.optuna_mlflow_sweeper.results import write_html_report, write_study_plots

    study = optuna.load_study(study_name=..., storage=...)
    write_study_plots(study, "reports/my_study")
    write_html_report(study, "reports/my_study", extra=[("Clean vs noisy", plotly_figure)])
    add_to_html_report("multirun/my_study", [("Clean vs noisy", plotly_figure)])

The interactive `sweep_report.html` the sweeper logs on the parent run (Optuna's figures, then
an app's own plotly figures, drawn with it or added to the one a sweep wrote), and static PNG
copies of the same figures (optimization history, importances, parallel coordinates, slices,
intermediate values; the Pareto front for multi-objective) for documents that cannot hold HTML.
Optuna, matplotlib and the drawing code load on the first call, not on import (Hydra imports
this module everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna


def write_study_plots(study: optuna.Study, out_dir: str | Path) -> list[Path]:
    """Write each summary plot as `<out_dir>/<name>.png`; return the files written."""
    from hydra_plugins.optuna_mlflow_sweeper._impl.results import write_study_plots as write

    return write(study, out_dir)


def write_html_report(study: optuna.Study, out_dir: str | Path,
                      extra: Sequence[tuple[str, Any]] = ()) -> Path | None:
    """Write the interactive report, `<out_dir>/sweep_report.html` as the sweeper names it (an
    app rewriting a sweep's report passes the sweep's folder), with `extra` (title, plotly
    figure) pairs after Optuna's figures. None: nothing to draw, nothing written."""
    from hydra_plugins.optuna_mlflow_sweeper._impl import html_report

    written = html_report.write(study, str(Path(out_dir) / html_report.FILE), extra)
    return None if written is None else Path(written)


def add_to_html_report(out_dir: str | Path, extra: Sequence[tuple[str, Any]]) -> Path | None:
    """Add `extra` (title, plotly figure) pairs at the end of `<out_dir>/sweep_report.html`, the
    report a sweep wrote (an app's callback passes the sweep's folder), without drawing Optuna's
    figures again. None: no report there (the sweep wrote none), nothing written."""
    from hydra_plugins.optuna_mlflow_sweeper._impl import html_report

    written = html_report.append(str(Path(out_dir) / html_report.FILE), extra)
    return None if written is None else Path(written)
