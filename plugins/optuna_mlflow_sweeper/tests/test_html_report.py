"""The sweep report (sweep_report.html) through the public `results` API, from real in-memory
Optuna studies: plotly.js inlined once, every figure drawn, an app's figures added after."""

from __future__ import annotations

from pathlib import Path

import optuna
import plotly.graph_objects as go
import pytest
from toyapp import finished_study

from hydra_plugins.optuna_mlflow_sweeper._impl.html_report import IMPORTANCE_MIN_TRIALS
from hydra_plugins.optuna_mlflow_sweeper.results import add_to_html_report, write_html_report


@pytest.mark.parametrize(("directions", "titles"), [
    (["minimize"], ["Optimization history", "Parameter importances", "Parallel coordinates",
                    "Slices", "Intermediate values", "Figure of the app"]),
    (["minimize", "maximize"], ["Pareto front", "History of objective 0",
                                "Parameter importances for objective 0",
                                "History of objective 1",
                                "Parameter importances for objective 1", "Figure of the app"]),
])
def test_the_html_report_inlines_plotly_once_and_draws_every_figure(
        tmp_path: Path, directions: list[str], titles: list[str]) -> None:
    extra = go.Figure(go.Scatter(x=[0.9, 0.95], y=[0.5, 0.7], name="app trace"))
    path = write_html_report(finished_study(directions, IMPORTANCE_MIN_TRIALS), tmp_path,
                             [("Figure of the app", extra)])
    text = path.read_text()
    # plotly.js in the file, once: the MLflow UI's sandboxed iframe (and an offline copy) loads
    # nothing from a CDN
    assert text.count("plotly.js v") == 1 and "<script src=" not in text
    sections = text.split("<section>")[1:]
    assert [s.count('class="plotly-graph-div"') for s in sections] == [1] * len(titles)
    for section, title in zip(sections, titles, strict=True):
        assert f'"title":{{"text":"{title}"' in section
    assert '"name":"app trace"' in sections[-1]
    assert write_html_report(optuna.create_study(), tmp_path / "empty") is None  # nothing drawn


def test_an_app_adds_figures_to_the_report_a_sweep_wrote(tmp_path: Path) -> None:
    written = write_html_report(finished_study(["minimize"]), tmp_path)
    before = written.read_text()
    first = go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name="first trace"))
    second = go.Figure(go.Bar(x=[1, 2], y=[3, 4], name="second trace"))
    assert add_to_html_report(tmp_path, [("First", first), ("Second", second)]) == written
    text = written.read_text()
    # Optuna's figures kept as drawn, the app's after them, plotly.js still once
    assert text.startswith(before.removesuffix("</body></html>"))
    assert text.count("plotly.js v") == 1 and text.endswith("</body></html>")
    sections = text.split("<section>")[1:]
    assert len(sections) == 7
    assert '"name":"first trace"' in sections[5] and '"name":"second trace"' in sections[6]
    assert add_to_html_report(tmp_path / "no_sweep", [("First", first)]) is None
