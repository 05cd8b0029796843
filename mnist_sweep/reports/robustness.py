"""Robustness in sight at the end of every sweep: the best trial's clean and noisy test accuracy
beside its objective, against the notebook's own models.

A search for clean accuracy can pick a model that collapses on noisy digits (the 0.991 CNN of the
first `cnn_search` kept 0.594 at f=0.5, where the notebook's tiny CNN keeps 0.846), and nothing in
its objective shows it. Every trial already records its noisy accuracies (`test_accuracy_noise_<f>`
user attrs, experiment.py), so the summary reads them back from the study: printed at the end of
the sweep, logged on the parent run (the comparison as a table and the figure under
`robustness/`, the figure again, interactive, in the sweep's `sweep_report.html`), kept on the
study (`robustness` user attr) for `mnist-sweep-report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
import plotly.graph_objects as go
from hydra.experimental.callback import Callback
from hydra_plugins.optuna_mlflow_sweeper.results import add_to_html_report
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from mnist_sweep.data.noise import noise_metric_name
from mnist_sweep.reports import finished, references

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NOISE_PREFIX = "test_accuracy_noise_"
STUDY_ATTR = "robustness"  # the study's user attr holding the notebook's reference figures
CHANCE = 0.2  # clean accuracy below this is a model that learned nothing (chance is 0.1)


def headline(trials: list[FrozenTrial]) -> list[str]:
    """The columns a summary shows: clean test accuracy, then each noise level, then the mean."""
    keys = {k for t in trials for k in t.user_attrs if k.startswith(NOISE_PREFIX)}
    levels = sorted(float(k[len(NOISE_PREFIX):]) for k in keys if k != NOISE_PREFIX + "mean")
    mean = [NOISE_PREFIX + "mean"] if NOISE_PREFIX + "mean" in keys else []
    return ["test_accuracy", *(noise_metric_name(f) for f in levels), *mean]


def _label(key: str) -> str:
    if key == "test_accuracy":
        return "clean"
    level = key[len(NOISE_PREFIX):]
    return "f mean" if level == "mean" else f"f={level}"


def shown_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial, or a multi-objective study's Pareto set (by trial number)."""
    try:
        if len(study.directions) == 1:
            return [study.best_trial]
        return sorted(study.best_trials, key=lambda t: t.number)
    except ValueError:  # no complete trial
        return []


def summary_text(study: optuna.Study, reference: Mapping[str, Mapping[str, float]] | None,
                 focus: float = 0.5) -> str:
    """A table: the best trial(s) and the notebook's models, clean and at each noise level; then
    one sentence on how the best does at `focus` noise against the notebook's models."""
    trials = shown_trials(study)
    if not trials:
        return "robustness: no complete trial"
    keys = headline(trials)
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    rows = []
    for t in trials:
        values = ", ".join(f"{n}={v:.4f}" for n, v in zip(names, t.values or [], strict=False))
        rows.append((f"trial {t.number} ({values})", [t.user_attrs.get(k) for k in keys]))
    for family, metrics in (reference or {}).items():
        rows.append((f"notebook {family} (5 epochs)", [metrics.get(k) for k in keys]))
    width = max(len(name) for name, _ in rows)
    header = f"{'test accuracy':<{width}}  " + "  ".join(f"{_label(k):>8}" for k in keys)
    lines = ["robustness (test set, clean and x + f·U[0,1)):", header]
    for name, values in rows:
        cells = "  ".join(f"{v:>8.4f}" if v is not None else f"{'-':>8}" for v in values)
        lines.append(f"{name:<{width}}  {cells}")
    sentence = _comparison(trials[0] if len(trials) == 1 else None, reference, focus)
    return "\n".join([*lines, *([sentence] if sentence else [])])


def _comparison(best: FrozenTrial | None, reference: Mapping[str, Mapping[str, float]] | None,
                focus: float) -> str | None:
    key = noise_metric_name(focus)
    if best is None or key not in best.user_attrs or not reference:
        return None
    mine = best.user_attrs[key]
    others = ", ".join(f"notebook {family} {m[key]:.4f} ({mine - m[key]:+.4f})"
                       for family, m in reference.items() if key in m)
    return f"at f={focus:g} the best trial keeps {mine:.4f}: {others}"


def parent_metrics(study: optuna.Study, reference: Mapping[str, Mapping[str, float]] | None
                   ) -> dict[str, float]:
    """`best.<metric>` of a single-objective sweep's best trial, `reference.<family>.<metric>`."""
    metrics: dict[str, float] = {}
    trials = shown_trials(study)
    if len(trials) == 1:
        for key in ("val_accuracy", *headline(trials)):
            if key in trials[0].user_attrs:
                metrics[f"best.{key}"] = float(trials[0].user_attrs[key])
    for family, values in (reference or {}).items():
        metrics.update({f"reference.{family}.{k}": float(v) for k, v in values.items()})
    return metrics


def comparison_table(study: optuna.Study, reference: Mapping[str, Mapping[str, float]] | None
                     ) -> dict[str, list[Any]]:
    """The summary as a table for `log_table`: a row per best (or Pareto) trial and per notebook
    model, a column per metric (clean, each noise level, the mean)."""
    trials = shown_trials(study)
    rows: list[tuple[str, Mapping[str, Any]]] = [(f"trial {t.number}", t.user_attrs)
                                                 for t in trials]
    rows += [(f"notebook {family}", values) for family, values in (reference or {}).items()]
    table: dict[str, list[Any]] = {"model": [name for name, _ in rows]}
    for key in ("val_accuracy", *headline(trials)):
        table[key] = [float(values[key]) if key in values else None for _, values in rows]
    return table


@dataclass(frozen=True)
class CleanVsNoisy:
    """What the clean vs noisy figure shows, one computation for its PNG and its HTML copy."""

    focus: float
    points: list[tuple[int, float, float]]  # (trial number, clean, noisy), trials above chance
    hidden: int  # trials at chance: counted, not drawn
    front: list[tuple[float, float]]  # the points no other beats on both, by clean accuracy
    shown: list[tuple[int, float, float]]  # the best trial or the Pareto set, ringed
    stars: dict[str, tuple[float, float]]  # the notebook's models by family


def clean_vs_noisy_data(study: optuna.Study,
                        reference: Mapping[str, Mapping[str, float]] | None,
                        focus: float = 0.5) -> CleanVsNoisy | None:
    """Every complete trial's clean vs noisy (f=`focus`) test accuracy, or None without any.

    Trials stuck at chance are counted, not drawn: one at 0.11 (a learning rate too high)
    squeezed every model worth comparing into a corner of the plot."""
    key = noise_metric_name(focus)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if key in t.user_attrs and "test_accuracy" in t.user_attrs]
    done = [t for t in complete if t.user_attrs["test_accuracy"] >= CHANCE] or complete
    if not done:
        return None
    points = [(t.number, t.user_attrs["test_accuracy"], t.user_attrs[key]) for t in done]
    front = sorted((c, n) for _, c, n in points
                   if not any(c2 >= c and n2 >= n and (c2, n2) != (c, n) for _, c2, n2 in points))
    shown = {t.number for t in shown_trials(study)}
    return CleanVsNoisy(
        focus, points, len(complete) - len(done), front,
        [p for p in points if p[0] in shown],
        {family: (m["test_accuracy"], m[key]) for family, m in (reference or {}).items()
         if key in m and "test_accuracy" in m})


def clean_vs_noisy(study: optuna.Study, reference: Mapping[str, Mapping[str, float]] | None,
                   focus: float = 0.5) -> Figure | None:
    """The PNG: every complete trial's clean vs noisy (f=`focus`) test accuracy; the trials no
    other beats on both joined as the front, the shown trial(s) ringed, the notebook's models as
    stars."""
    from matplotlib.figure import Figure  # 0.25 s: drawn once at the sweep's end, not at its start

    data = clean_vs_noisy_data(study, reference, focus)
    if data is None:
        return None
    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    ax.scatter([c for _, c, _ in data.points], [n for _, _, n in data.points], s=18, alpha=0.6,
               label=_trials_label(data))
    ax.plot(*zip(*data.front, strict=True), "k--", lw=1, label="front (clean vs noisy)")
    if data.shown:
        ax.scatter([c for _, c, _ in data.shown], [n for _, _, n in data.shown], s=90,
                   facecolors="none", edgecolors="red", label="best (objective)")
    for family, (clean, noisy) in data.stars.items():
        ax.scatter([clean], [noisy], marker="*", s=160, label=f"notebook {family}")
    ax.set_xlabel("clean test accuracy")
    ax.set_ylabel(f"test accuracy at f={focus:g}")
    ax.set_title(f"{study.study_name}: clean vs noisy accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.11, top=0.93)
    return fig


def clean_vs_noisy_plotly(study: optuna.Study,
                          reference: Mapping[str, Mapping[str, float]] | None,
                          focus: float = 0.5) -> go.Figure | None:
    """The same figure for the sweep's HTML report: hover a point for its trial number."""
    data = clean_vs_noisy_data(study, reference, focus)
    if data is None:
        return None
    fig = go.Figure()
    fig.add_scatter(x=[c for _, c, _ in data.points], y=[n for _, _, n in data.points],
                    mode="markers", name=_trials_label(data), opacity=0.7,
                    text=[f"trial {number}" for number, _, _ in data.points])
    fig.add_scatter(x=[c for c, _ in data.front], y=[n for _, n in data.front], mode="lines",
                    name="front (clean vs noisy)", line={"dash": "dash", "color": "black"})
    if data.shown:
        fig.add_scatter(x=[c for _, c, _ in data.shown], y=[n for _, _, n in data.shown],
                        mode="markers", name="best (objective)",
                        text=[f"trial {number}" for number, _, _ in data.shown],
                        marker={"size": 14, "color": "rgba(0,0,0,0)",
                                "line": {"color": "red", "width": 2}})
    for family, (clean, noisy) in data.stars.items():
        fig.add_scatter(x=[clean], y=[noisy], mode="markers", name=f"notebook {family}",
                        marker={"symbol": "star", "size": 16})
    fig.update_layout(xaxis_title="clean test accuracy",
                      yaxis_title=f"test accuracy at f={focus:g}")
    return fig


def _trials_label(data: CleanVsNoisy) -> str:
    return f"trials ({data.hidden} at chance, not shown)" if data.hidden else "trials"


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml): the robustness summary at the end of every
    optuna_mlflow sweep. `reference: false` skips measuring the notebook's models; `focus` is
    the noise level the sentence and the plot are about."""

    def __init__(self, reference: bool = True, focus: float = 0.5) -> None:
        self.reference, self.focus = bool(reference), float(focus)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = finished.read(config)
        if sweep is None:
            return
        study, reference = sweep.study, None
        if self.reference and shown_trials(study):
            reference = references.notebook_reference(
                OmegaConf.to_container(config.data, resolve=True),
                OmegaConf.to_container(config.eval, resolve=True))
            if reference:
                study.set_user_attr(STUDY_ATTR, {"reference": reference})
        print("\n" + summary_text(study, reference, self.focus), flush=True)
        if sweep.parent:
            _log_to_parent(sweep.parent, study, reference, self.focus, config.hydra.sweep.dir)


def _log_to_parent(where: Mapping[str, Any], study: optuna.Study,
                   reference: Mapping[str, Mapping[str, float]] | None, focus: float,
                   sweep_dir: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=where["tracking_uri"])
    run_id = where["parent_run_id"]
    # a table, not metrics: each parent metric is one more single-bar chart in the chart view,
    # drawn before the trials' own (the parent is the only run shown until it is expanded)
    client.log_table(run_id, comparison_table(study, reference), "robustness/comparison.json")
    every = {k: v for k, v in parent_metrics(study, reference).items() if math.isfinite(v)}
    client.log_dict(run_id, {"metrics": every, "text": summary_text(study, reference, focus)},
                    "robustness/summary.json")
    fig = clean_vs_noisy(study, reference, focus)
    if fig is not None:
        client.log_figure(run_id, fig, "robustness/clean_vs_noisy.png")
    # added to the sweeper's report (same file, same artifact: replaced)
    interactive = clean_vs_noisy_plotly(study, reference, focus)
    if interactive is not None:
        report = add_to_html_report(
            sweep_dir, [(f"Clean vs noisy (f={focus:g}) test accuracy", interactive)])
        if report is not None:
            client.log_artifact(run_id, str(report))
