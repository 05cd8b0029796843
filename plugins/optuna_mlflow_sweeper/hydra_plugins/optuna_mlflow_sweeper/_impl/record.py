"""The sweep's record at the end, written by the process that sums up: optimization_results.yaml
and search_space.json, the HTML report, the best model registered, the parent run's status and
tags, then the answer on the terminal (the best trial, and where to look in the MLflow UI).
Nothing here fails the sweep: a part that cannot be written is warned of, the rest stands.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl import html_report, images_view, registry, results
from hydra_plugins.optuna_mlflow_sweeper._impl.console import say
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import SweepPlan
from hydra_plugins.optuna_mlflow_sweeper._impl.report_process import InProcess
from hydra_plugins.optuna_mlflow_sweeper._impl.run_writes import objective_names
from hydra_plugins.optuna_mlflow_sweeper._impl.session import Session
from hydra_plugins.optuna_mlflow_sweeper._impl.study import count_trials
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import ui_base

log = logging.getLogger(__name__)


def finish(p: SweepPlan, s: Session, status: str, report: Any, drawer: InProcess,
           settings: Any) -> None:
    """optimization_results.yaml, the HTML report (`drawer`'s), the registered model (as the
    sweeper's `mlflow` `settings` say), parent run status, the answer."""
    study, tracker = s.study, s.tracker
    try:
        report(quiet=True)
        counts = count_trials(study.get_trials(deepcopy=False))
        data = results.results_dict(study, counts, p.storage_masked,
                                    tracker.summary() if tracker else None)
        path = results.write_results(os.path.join(p.sweep_dir, "optimization_results.yaml"),
                                     data)
        space = results.write_search_space(os.path.join(p.sweep_dir, "search_space.json"),
                                           study)
        if tracker is not None:
            tracker.log_artifact(path)
            tracker.log_artifact(space)
            report_path = drawer.write(study, os.path.join(p.sweep_dir, html_report.FILE))
            if report_path is not None:
                tracker.log_artifact(report_path)
            registered = _register(p, s, settings)
            if registered is not None:
                tracker.update_parent({}, registry.parent_tags(
                    registered, ui_base(tracker.tracking_uri)[1]), step=counts.finished)
            if status == "FINISHED" and counts.running:
                log.info("%d trials still run in other processes: parent run stays RUNNING",
                         counts.running)
            else:
                tracker.finish_parent(status)
        # the answer, even with progress off
        print(f"{results.best_line(study, counts)}\n  all results     {path}", flush=True)
        if tracker is not None:
            trials = results.ranked_runs(study, p.directions[0] == "maximize")
            say(p.progress, results.where_to_look(tracker.summary(), trials,
                                                  _images_view(p, s, trials)))
            if registered is not None and registry.where_line(registered):
                print(registry.where_line(registered), flush=True)
    except Exception as e:  # never mask the sweep's own outcome
        log.warning("finishing the sweep record failed: %s: %s", type(e).__name__, e)

def _images_view(p: SweepPlan, s: Session, trials: list[str]) -> str | None:
    """The MLflow UI view of the trials' images side by side, saved on the experiment (its
    id; None when no trial logged an image, or saving failed: warned, the sweep goes on)."""
    try:
        return images_view.save_images_view(
            s.tracker.client, str(s.tracker.experiment_id), s.tracker.parent_id,
            p.study_name, trials, maximize=p.directions[0] == "maximize",
            objective=objective_names(len(p.directions))[0])
    except Exception as e:  # a convenience: never fails the sweep
        log.warning("saving the MLflow view of the trials' images failed: %s: %s",
                    type(e).__name__, e)
        return None

def _register(p: SweepPlan, s: Session, settings: Any) -> registry.Registered | None:
    """The best trial's model in the Model Registry (None: registration is off or failed)."""
    if p.registered_model is None:
        return None
    try:
        return registry.register_best(
            s.tracker.client, s.tracker.experiment_id, s.study, p.registered_model,
            settings.champion_trial, list(settings.version_metrics or []))
    except Exception as e:  # the sweep's record stands without it
        log.warning("registering the best model failed: %s: %s", type(e).__name__, e)
        return None
