"""What a sweep leaves behind: optimization_results.yaml, the search space, the progress line;
static PNG copies of the report's figures for reports made outside a sweep."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl.console import PREFIX, short
from hydra_plugins.optuna_mlflow_sweeper._impl.html_report import figures
from hydra_plugins.optuna_mlflow_sweeper._impl.study import Counts
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import ui_links, view_link

log = logging.getLogger(__name__)
COMPARED = 20  # runs on MLflow's compare page: more make a link of kilobytes and a slow page


def best_single(study: optuna.Study) -> FrozenTrial | None:
    """`study.best_trial` (the first, if several tie), from the study's trials: Optuna's
    `best_trial` asks the database again, `best_trials` reads what `one_read` already has."""
    try:
        best = study.best_trials
    except ValueError:  # no complete trial yet
        return None
    return min(best, key=lambda t: t.number) if best else None


def pareto(study: optuna.Study) -> list[FrozenTrial]:
    try:
        return list(study.best_trials)
    except ValueError:
        return []


def progress_line(study: optuna.Study, counts: Counts, n_trials: float,
                  objective: str | None = None) -> str:
    """The sweep's progress in one line; `objective`: its name, if known (else read)."""
    budget = "inf" if n_trials == float("inf") else int(n_trials)
    line = (f"{PREFIX} trials {counts.finished}/{budget} "
            f"(pruned {counts.pruned}, failed {counts.failed}")
    if counts.running:
        line += f", running {counts.running}"
    line += ")"
    if len(study.directions) > 1:
        return line + f" pareto set {len(pareto(study))}"
    best = best_single(study)
    if best is not None:
        line += (f" best {objective or objective_names(study)[0]}={best.value:.6g} "
                 f"(trial {best.number})")
    return line


def objective_names(study: optuna.Study) -> list[str]:
    """The study's `metric_names` (e.g. val_accuracy), else "value" (one objective) or
    "value_<i>" (several). Read from the storage: once per call."""
    names = study.metric_names
    if names:
        return list(names)
    return ["value"] if len(study.directions) == 1 else [
        f"value_{i}" for i in range(len(study.directions))]


def best_line(study: optuna.Study, counts: Counts) -> str:
    """The answer of the sweep in one line: the best trial, its value and its params."""
    if len(study.directions) > 1:
        return (f"Pareto front: {len(pareto(study))} of {counts.complete} complete trials "
                "(optimization_results.yaml lists them)")
    best = best_single(study)
    if best is None:
        return f"no complete trial yet ({counts.finished} finished)"
    params = ", ".join(f"{k}={short(v)}" for k, v in best.params.items())
    return f"best trial {best.number}: {objective_names(study)[0]}={best.value:.6g}  {params}"


def results_dict(
    study: optuna.Study, counts: Counts, storage: str, mlflow: dict[str, Any] | None
) -> dict[str, Any]:
    """Hydra's optuna sweeper layout (name, best_params, best_value | solutions) plus extras:
    counts, storage (password masked), mlflow {tracking_uri, experiment_id, parent_run_id}."""
    data: dict[str, Any] = {"name": "optuna_mlflow", "study_name": study.study_name}
    if len(study.directions) == 1:
        best = best_single(study)
        data.update(
            best_params=dict(best.params) if best else None,
            best_value=best.value if best else None,
            best_trial=best.number if best else None,
            best_overrides=list(best.user_attrs.get("overrides", [])) if best else None,
        )
    else:
        data["solutions"] = [
            {"number": t.number, "params": dict(t.params), "values": list(t.values),
             "overrides": list(t.user_attrs.get("overrides", []))}
            for t in pareto(study)
        ]
    data["counts"] = {
        "complete": counts.complete, "pruned": counts.pruned, "failed": counts.failed,
        "running": counts.running, "total": len(study.get_trials(deepcopy=False)),
    }
    data["storage"] = storage
    data["mlflow"] = mlflow
    return data


def search_space(study: optuna.Study) -> dict[str, Any]:
    """Every param the study's trials were sampled from (a custom search space's too), as
    Optuna's JSON of its distribution: {name: {"name": "IntDistribution", "attributes": ...}};
    the latest trial's where a resumed study's range changed."""
    space: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            space[name] = json.loads(distribution_to_json(distribution))
    return dict(sorted(space.items()))


def write_search_space(path: str, study: optuna.Study) -> str:
    with open(path, "w") as f:
        json.dump(search_space(study), f, indent=2)
    return path


def write_results(path: str, data: dict[str, Any]) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    OmegaConf.save(OmegaConf.create(data), path)
    return path


def write_study_plots(study: optuna.Study, out_dir: str | Path) -> list[Path]:
    """The report's figures as PNG files in `out_dir` (for documents that cannot hold HTML);
    the files written.

    A plot that cannot be drawn is a warning only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        log.warning("no complete trial: summary plots skipped")
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    from optuna.visualization import matplotlib as vis

    for name, _, draw in figures(study, vis):
        if draw is None:  # importances from too few trials: noise
            continue
        figure = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = _figure_of(draw())
            figure.savefig(out / f"{name}.png", bbox_inches="tight")  # labels unclipped
            written.append(out / f"{name}.png")
        except Exception as e:
            log.warning("plot %s skipped: %s: %s", name, type(e).__name__, e)
        finally:
            if figure is not None:
                plt.close(figure)
    return written


def _figure_of(axes: Any) -> Any:
    if hasattr(axes, "figure"):
        return axes.figure
    import numpy as np

    return np.asarray(axes).flat[0].figure


def where_to_look(summary: dict[str, Any], trials: list[str], images: str | None = None) -> str:
    """Where to look next: the parent run, its trials (`trials`, best first) side by side in
    the runs table and on MLflow's compare page (parallel coordinates, scatter, contour), their
    images side by side (the saved view `images`), in the MLflow UI."""
    links = ui_links(summary["tracking_uri"], summary["experiment_id"],
                     summary["parent_run_id"], compared=trials[:COMPARED])
    lines = [f"sweep recorded in MLflow as parent run {summary['parent_run_id']}"]
    if links["command"]:  # a local store: the UI has to be started first
        lines.append(f"  open the UI     {links['command']}")
    lines.append(f"  compare trials  {links['experiment']}")
    if links["compare"]:
        best = f" (the best {COMPARED} of {len(trials)})" if len(trials) > COMPARED else ""
        lines.append(f"  compare page    {links['compare']}{best}")
    if images:
        lines.append(f"  trials' images  {view_link(links['experiment'], images)}")
    lines.append(f"  sweep summary   {links['run']}")
    return "\n".join(lines)


def ranked_runs(study: Any, maximize: bool) -> list[str]:
    """The MLflow runs of the study's finished trials, best first by the (first) objective, as
    the UI's view orders them: complete trials, then pruned ones (no objective) by number."""
    sign = -1 if maximize else 1
    ranked = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)),
        key=lambda t: (t.state != TrialState.COMPLETE,
                       sign * t.values[0] if t.state == TrialState.COMPLETE else 0, t.number))
    return [t.user_attrs["mlflow_run_id"] for t in ranked if t.user_attrs.get("mlflow_run_id")]
