"""The sweep's record at the end, written by the process that sums up: optimization_results.yaml
and search_space.json, the HTML report, the best model registered, the parent run's status and
tags, then the answer on the terminal (the best trial, and where to look in the MLflow UI).
Nothing here fails the sweep: a part that cannot be written is warned of, the rest stands.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from hydra_plugins.optuna_mlflow_sweeper._impl import html_report, images_view, registry, results
from hydra_plugins.optuna_mlflow_sweeper._impl.console import say
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import SweepPlan
from hydra_plugins.optuna_mlflow_sweeper._impl.report_process import InProcess
from hydra_plugins.optuna_mlflow_sweeper._impl.run_writes import objective_metric_names
from hydra_plugins.optuna_mlflow_sweeper._impl.session import Session
from hydra_plugins.optuna_mlflow_sweeper._impl.study import count_trials
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import ui_base

log = logging.getLogger(__name__)
T = TypeVar("T")


def finish(p: SweepPlan, s: Session, status: str, report: Any, drawer: InProcess,
           settings: Any) -> None:
    """The record (see the module doc): the files, the MLflow side (the HTML report from
    `drawer`, the model registered as the sweeper's `mlflow` `settings` say, the parent run's
    `status`), then the answer, printed even with progress off."""
    study, tracker = s.study, s.tracker
    warned(report, "updating the sweep's progress", quiet=True)
    counts = count_trials(study.get_trials(deepcopy=False))
    files = warned(_write_files, "writing the sweep's results", p, study, counts, tracker) or []
    registered = None
    if tracker is not None:
        registered = warned(_record_in_mlflow, "recording the sweep's end in MLflow", p, s,
                            status, counts, files, drawer, settings)
    print(f"{results.best_line(study, counts)}\n  all results     "
          f"{files[0] if files else '(not written: see the warning above)'}", flush=True)
    if tracker is not None:
        trials = results.ranked_runs(study, p.directions[0] == "maximize")
        view = warned(_images_view, "saving the MLflow view of the trials' images", p, s, trials)
        say(p.progress, results.where_to_look(tracker.summary(), trials, view))
        if registered is not None and registry.where_line(registered):
            print(registry.where_line(registered), flush=True)


def warned(fn: Callable[..., T], what: str, *args: Any, **kwargs: Any) -> T | None:
    """fn(*args, **kwargs); None, with one warning naming `what` failed, if it raises: a part of
    the record that cannot be written never takes the rest, or the sweep's outcome, with it."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        log.warning("%s failed: %s: %s", what, type(e).__name__, e)
        return None


def _write_files(p: SweepPlan, study: Any, counts: Any, tracker: Any) -> list[str]:
    data = results.results_dict(study, counts, p.storage_masked,
                                tracker.summary() if tracker else None)
    return [results.write_results(os.path.join(p.sweep_dir, "optimization_results.yaml"), data),
            results.write_search_space(os.path.join(p.sweep_dir, "search_space.json"), study)]


def _record_in_mlflow(p: SweepPlan, s: Session, status: str, counts: Any, files: list[str],
                      drawer: InProcess, settings: Any) -> registry.Registered | None:
    """The files and the report as the parent run's artifacts, the registered model (None:
    off, or failed) in its tags, and its status: RUNNING while other processes run trials."""
    tracker = s.tracker
    for path in files:
        tracker.log_artifact(path)
    drawn = warned(drawer.write, "drawing the sweep report", s.study,
                   os.path.join(p.sweep_dir, html_report.FILE))
    if drawn is not None:
        tracker.log_artifact(drawn)
    registered = None
    if p.registered_model is not None:
        registered = warned(registry.register_best, "registering the best model",
                            tracker.client, tracker.experiment_id, s.study, p.registered_model,
                            settings.champion_trial, list(settings.version_metrics or []))
    if registered is not None:
        tracker.update_parent({}, registry.parent_tags(
            registered, ui_base(tracker.tracking_uri)[1]), step=counts.finished)
    if status == "FINISHED" and counts.running:
        log.info("%d trials still run in other processes: parent run stays RUNNING",
                 counts.running)
    else:
        tracker.finish_parent(status)
    return registered


def _images_view(p: SweepPlan, s: Session, trials: list[str]) -> str | None:
    """The MLflow UI view of the trials' images side by side, saved on the experiment (its id;
    None when no trial logged an image)."""
    return images_view.save_images_view(
        s.tracker.client, str(s.tracker.experiment_id), s.tracker.parent_id, p.study_name,
        trials, maximize=p.directions[0] == "maximize",
        objective=objective_metric_names(len(p.directions))[0])
