"""A sweep report you can click: Optuna's interactive (plotly) figures in one HTML file.

Logged on the parent run as `sweep_report.html` and kept in the sweep's folder: hover for a
trial's params, zoom, toggle series. Self-contained: plotly.js is inlined once (about 4.6 MB of
the file; each figure adds kilobytes). The MLflow UI shows an .html artifact in an iframe
sandboxed to `allow-scripts`, so inline scripts run there, and a downloaded copy opens offline,
where a CDN copy of plotly.js would not load. An app adds figures of its own, e.g. the sweep's
clean vs noisy accuracy: `extra` when it draws the report, or `append` to the report the sweeper
wrote (Optuna's figures are not drawn twice; plotly.js is already in the file). The sweeper draws
it in a helper process (report_process.py); `results.write_study_plots` makes static PNG copies.
"""

from __future__ import annotations

import html
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)

FILE = "sweep_report.html"
IMPORTANCE_MIN_TRIALS = 10
"""Finished trials below which parameter importances (fANOVA on a handful of points) are noise."""
IMPORTANCES = "Parameter importances"


Figure = tuple[str, str, Callable[[], Any] | None]  # (file name, title, draw)


def figures(study: optuna.Study, vis: Any = None) -> list[Figure]:
    """The report's figures, drawn with `vis` (`optuna.visualization`, the default, for this
    report; its `matplotlib` twin for PNG copies): history, importances, parallel coordinates,
    slices and the trials' intermediate values; for several objectives the Pareto front, each
    objective's history and importances. Importances from too few trials have no `draw`: the
    report says why (`importance_note`), a PNG copy is left out."""
    if vis is None:
        from optuna import visualization as vis
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    ranked = importance_note(study) is None
    if len(study.directions) > 1:
        plots: list[Figure] = [("pareto_front", "Pareto front",
                                lambda: vis.plot_pareto_front(study, target_names=names))]
        for i, name in enumerate(names):
            def target(t: Any, i: int = i) -> float:
                return t.values[i]

            plots.append((f"optimization_history_{i}", f"History of {name}",
                          lambda target=target, name=name: vis.plot_optimization_history(
                              study, target=target, target_name=name)))
            if ranked:
                plots.append((f"param_importances_{i}", f"{IMPORTANCES} for {name}",
                              lambda target=target, name=name: vis.plot_param_importances(
                                  study, target=target, target_name=name)))
        return plots if ranked else [*plots, ("param_importances", IMPORTANCES, None)]
    name = names[0] if study.metric_names else "value"
    plots = [
        ("optimization_history", "Optimization history",
         lambda: vis.plot_optimization_history(study, target_name=name)),
        ("param_importances", IMPORTANCES,
         (lambda: vis.plot_param_importances(study, target_name=name)) if ranked else None),
        ("parallel_coordinate", "Parallel coordinates",
         lambda: vis.plot_parallel_coordinate(study, target_name=name)),
        ("slice", "Slices", lambda: vis.plot_slice(study, target_name=name)),
    ]
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        plots.append(("intermediate_values", "Intermediate values",
                      lambda: vis.plot_intermediate_values(study)))
    return plots


def render(study: optuna.Study, extra: Sequence[tuple[str, Any]] = ()) -> str | None:
    """The report's HTML, or None when there is nothing to draw (no complete trial, or plotly
    missing). A figure that cannot be drawn is left out. `extra`: (title, plotly figure) pairs
    drawn after Optuna's."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    try:
        import plotly  # noqa: F401
    except ImportError:
        log.warning("plotly is not installed: no interactive report")
        return None
    parts, inlined = [], False
    drawn = [(title, draw) for _, title, draw in figures(study)]
    for title, draw in [*drawn, *((title, lambda f=f: f) for title, f in extra)]:
        if draw is None:  # importances from too few trials
            parts.append(f"<section><h3>{title}</h3><p class='caveat' style='color:#a15c00'>"
                         f"<b>Left out.</b> {html.escape(importance_note(study) or '')}</p>"
                         "</section>")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = draw()
        except Exception as e:
            log.info("report figure %r skipped: %s: %s", title, type(e).__name__, e)
            continue
        parts.append(_section(title, figure, with_plotlyjs=not inlined))
        inlined = True
    if not inlined:  # not one figure drawn
        return None
    name = html.escape(study.study_name)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{name}</title></head>"
            f"<body style='font-family:sans-serif'><h1>Study {name}</h1>"
            + "".join(parts) + "</body></html>")


def importance_note(study: optuna.Study) -> str | None:
    """Why the report has no importances: too few trials finished for them to mean more than
    noise (fANOVA's forest on a handful of points ranks at random; the sweeper warned of it
    before the trials). None: enough trials, they are drawn."""
    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n >= IMPORTANCE_MIN_TRIALS:
        return None
    return (f"Parameter importances from {n} finished trial(s) would be noise; they are drawn "
            f"from {IMPORTANCE_MIN_TRIALS} on.")


def _section(title: str, figure: Any, with_plotlyjs: bool) -> str:
    figure.update_layout(title=title)
    return (f"<section>{figure.to_html(full_html=False, include_plotlyjs=with_plotlyjs)}"
            "</section>")


def write(study: optuna.Study, path: str, extra: Sequence[tuple[str, Any]] = ()) -> str | None:
    """The report written to `path` (None: nothing to report)."""
    text = render(study, extra)
    if text is None:
        return None
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def append(path: str, extra: Sequence[tuple[str, Any]]) -> str | None:
    """`extra` (title, plotly figure) pairs added at the end of the report at `path`, which
    already carries plotly.js: each adds kilobytes. None: no report there to add to."""
    if not extra or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        head, body_end, tail = f.read().rpartition("</body>")
    if not body_end:
        return None
    sections = "".join(_section(title, figure, with_plotlyjs=False) for title, figure in extra)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + sections + body_end + tail)
    return path
