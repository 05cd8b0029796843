"""The sweep's answer in the MLflow Model Registry: the best trial's model, alias `champion`.

Generic: whatever model a trial's child run logged (MLflow 3 logged models, found by their
source run) is registered, once per trial (a version is found again by its run id), with the
study, the trial and its objective values as version tags. A single-objective sweep moves the
alias to its best trial only when that trial beats the current champion; a multi-objective sweep
registers each Pareto trial and moves the alias only to the trial the user picked.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl import results
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.outbox import retry_call
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import model_version_link

log = logging.getLogger(__name__)

CHAMPION = "champion"
STUDY_TAG = "optuna.study_name"
TRIAL_TAG = "optuna.trial_number"
OBJECTIVE_TAG = "objective."  # + the objective's name (Optuna's metric name, or value_<i>)
METRIC_TAG = "metric."  # + a child-run metric named by hydra.sweeper.mlflow.version_metrics
MLFLOW_MODEL_VERSIONS = "mlflow.modelVersions"  # mlflow.utils.mlflow_tags: a model's versions


@dataclass
class Registered:
    """What the registry holds for a sweep after `register_best`."""

    name: str
    versions: dict[int, str]  # trial number -> version
    champion: str | None  # the version the alias points at (None: no alias set)
    moved: bool  # whether this call moved the alias


def chosen_trials(study: optuna.Study, pick: int | None) -> tuple[list[FrozenTrial], int | None]:
    """(the trials to register, the number of the one to be champion or None).

    Single objective: the best trial. Several: every Pareto trial, champion only if picked
    (`hydra.sweeper.mlflow.champion_trial`, which must be a complete trial of the study).
    """
    if pick is not None:
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == pick), None)
        if trial is None or trial.state != TrialState.COMPLETE:
            raise config_error("hydra.sweeper.mlflow.champion_trial", pick,
                               "the number of a complete trial of the study")
        return [trial], trial.number
    if len(study.directions) == 1:
        best = results.best_single(study)
        return ([best], best.number) if best is not None else ([], None)
    return results.pareto(study), None


def register_best(
    client: Any, experiment_id: str, study: optuna.Study, name: str,
    pick: int | None = None, metric_patterns: Sequence[str] = ("test_*",),
) -> Registered:
    """Register the chosen trials' logged models (once each) and move `champion` if better."""
    trials, champion_number = chosen_trials(study, pick)
    done = Registered(name, {}, None, False)
    if not trials:
        return done
    retry_call(lambda: _ensure_registered_model(client, name), "creating the registered model")
    existing = retry_call(lambda: client.search_model_versions(f"name = '{name}'"),
                          "reading registered versions")
    by_run = {v.run_id: v for v in existing if v.run_id}
    champion_version = None
    for trial in trials:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            log.info("trial %d has no MLflow run: not registered", trial.number)
            continue
        version = by_run.get(run_id) or _register(client, experiment_id, study, name, trial,
                                                  run_id, metric_patterns)
        if version is None:
            continue
        done.versions[trial.number] = version.version
        if trial.number == champion_number:
            champion_version = version
    if champion_version is not None:
        current = _by_alias(client, name)
        done.champion = current.version if current is not None else None
        if current is None or (current.version != champion_version.version
                               and _better(study, champion_version, current)):
            retry_call(lambda: client.set_registered_model_alias(
                name, CHAMPION, champion_version.version), "setting the champion alias")
            done.champion, done.moved = champion_version.version, True
    return done


def _register(
    client: Any, experiment_id: str, study: optuna.Study, name: str, trial: FrozenTrial,
    run_id: str, metric_patterns: Sequence[str],
) -> Any:
    found = retry_call(lambda: client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'"), "finding a logged model")
    if not found:
        log.info("trial %d logged no model: not registered", trial.number)
        return None
    model = max(found, key=lambda m: m.creation_timestamp or 0)
    run = retry_call(lambda: client.get_run(run_id), "reading a trial's run")
    tags = {STUDY_TAG: study.study_name, TRIAL_TAG: str(trial.number)}
    for objective, value in zip(results.objective_names(study), trial.values, strict=True):
        tags[OBJECTIVE_TAG + objective] = repr(float(value))
    for key, value in run.data.metrics.items():
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in metric_patterns):
            tags[METRIC_TAG + key] = repr(float(value))
    version = retry_call(lambda: client.create_model_version(
        name, source=f"models:/{model.model_id}", run_id=run_id, tags=tags,
        model_id=model.model_id), "registering a model version")
    # as mlflow.register_model does: the logged model's page links to its versions
    linked = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
    linked.append({"name": name, "version": int(version.version)})
    retry_call(lambda: client.set_logged_model_tags(
        model.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(linked)}), "linking a logged model")
    log.info("registered %s version %s: trial %d's model %s", name, version.version,
             trial.number, model.model_id)
    return version


def _better(study: optuna.Study, candidate: Any, current: Any) -> bool:
    """Whether `candidate` beats `current` on the study's (single) objective. A champion that
    does not carry that objective (another study's) is not comparable: replaced."""
    key = OBJECTIVE_TAG + results.objective_names(study)[0]
    try:
        new, old = float(candidate.tags[key]), float(current.tags[key])
    except (KeyError, ValueError):
        return True
    if study.directions[0] == StudyDirection.MAXIMIZE:
        return new > old
    return new < old


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException  # MLflow loads only when a sweep records

    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name)
        except MlflowException as again:  # created meanwhile by another sweep
            if again.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def _by_alias(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        return None


def parent_tags(done: Registered, ui_base: str) -> dict[str, str]:
    """Tags that link the sweep's parent run to what it registered: the name, the version (the
    champion's, else every registered one) and the version's page in the MLflow UI (the run
    page's own "Registered models" lists only versions made from that run, a trial's)."""
    version = (str(done.champion) if done.champion is not None
               else ",".join(str(done.versions[n]) for n in sorted(done.versions)))
    if not version:
        return {}
    tags = {"registered_model.name": done.name, "registered_model.version": version}
    if "," not in version:
        tags["registered_model.link"] = model_version_link(ui_base, done.name, version)
    return tags


def where_line(done: Registered) -> str | None:
    """The line the sweep's answer adds: how to load the champion, or what was registered."""
    if done.champion is not None:
        moved = "" if done.moved else ", unchanged"
        return (f"  best model      models:/{done.name}@{CHAMPION} "
                f"(version {done.champion}{moved})")
    if done.versions:
        listed = ", ".join(f"trial {n}: v{v}" for n, v in sorted(done.versions.items()))
        return f"  models          {done.name} ({listed})"
    return None
