"""MLflow side of a sweep: one parent run per study, one child run per trial (MlflowClient only).

The parent run id lives in the study's user attrs, so resuming a study reopens the same parent.
A child run is created before its job launches; the job can log into it (MLFLOW_RUN_ID).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl.study import PARENT_RUN_ATTR
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    ensure_experiment,
    mask_url,
    resolve_tracking_uri,
)

log = logging.getLogger(__name__)

STUDY_KEY_TAG = "optuna_mlflow.study_key"
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_SEVERITY = {"FINISHED": 0, "KILLED": 1, "FAILED": 2}
_TERMINAL = set(_SEVERITY)
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /]")


def mlflow_key(key: str) -> str:
    """A param/metric/tag key MLflow accepts (alphanumerics, _ - . space /; <= 250 chars)."""
    return _BAD_KEY_CHARS.sub("_", str(key))[:250]


class MlflowTracker:
    def __init__(self, tracking_uri: str | None, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.experiment_id = ensure_experiment(self.client, experiment)
        self.parent_id: str | None = None

    # ---- parent run ----
    def open_parent(
        self, study: Any, study_key: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        """Reopen the study's parent run (resume) or create it; store its id in the study.

        Sweeps starting together on a new study may each create one; every process then keeps
        the earliest parent tagged with the study's key and deletes its own, so they converge.
        """
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        run = self._get_run(run_id) if run_id else None
        if run is None or run.info.lifecycle_stage == "deleted":
            key = hashlib.sha1(study_key.encode()).hexdigest()[:20]
            mine = self.client.create_run(
                self.experiment_id, run_name=study.study_name,
                tags={**tags, STUDY_KEY_TAG: key},
            )
            found = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{STUDY_KEY_TAG}` = '{key}'",
                max_results=100,
            )
            run = min(found or [mine], key=lambda r: (r.info.start_time, r.info.run_id))
            if run.info.run_id != mine.info.run_id:
                self.client.delete_run(mine.info.run_id)  # a concurrent sweep was first
            study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
            for key, value in tags.items():
                self.client.set_tag(run.info.run_id, key, value)
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, params, existing=dict(run.data.params))
        return self.parent_id

    def update_parent(
        self, metrics: Mapping[str, float], tags: Mapping[str, Any], step: int
    ) -> None:
        assert self.parent_id is not None
        for key, value in metrics.items():
            if value is not None and _finite(value):
                self.client.log_metric(self.parent_id, mlflow_key(key), float(value), step=step)
        for key, value in tags.items():
            self.client.set_tag(self.parent_id, mlflow_key(key), _clip(value, 8000))

    def finish_parent(self, status: str) -> None:
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status=status)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        assert self.parent_id is not None
        self.client.log_artifact(self.parent_id, path, artifact_path)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        assert self.parent_id is not None
        self.client.log_figure(self.parent_id, figure, artifact_file)

    # ---- child runs ----
    def start_child(
        self, number: int, study_name: str, params: Mapping[str, Any], overrides: Sequence[str],
        extra_tags: Mapping[str, Any] | None = None,
    ) -> str:
        assert self.parent_id is not None
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "optuna.trial_number": str(number),
            "optuna.study_name": study_name,
            "overrides": _clip(" ".join(overrides), 8000),
            **{k: str(v) for k, v in (extra_tags or {}).items()},
        }
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{number}", tags=tags)
        self._log_params(run.info.run_id, params, existing={})
        return run.info.run_id

    def finish_child(
        self, run_id: str, state: str, values: Sequence[float] | None, reason: str | None,
        status: str | None = None,
    ) -> None:
        """Record the trial outcome; keep a richer terminal status the job may have set, unless
        `status` says what it is (KILLED: interrupted, whatever the job made of it)."""
        if values:
            names = (["objective"] if len(values) == 1
                     else [f"objective_{i}" for i in range(len(values))])
            for name, value in zip(names, values, strict=True):
                if _finite(value):
                    self.client.log_metric(run_id, name, float(value))
        self.client.set_tag(run_id, "optuna.state", state)
        if reason:
            self.client.set_tag(run_id, "fail_reason", _clip(reason, 8000))
        wanted = status or RUN_STATUS[state]
        current = self.client.get_run(run_id).info.status
        if status is not None and current != status:
            self.client.update_run(run_id, status=status)
        elif current not in _TERMINAL:
            self.client.set_terminated(run_id, status=wanted)
        elif state == "PRUNED" and current != wanted:
            # TrialPruned raised inside `with mlflow.start_run()` ends the run FAILED: it was pruned
            self.client.update_run(run_id, status=wanted)
        elif _SEVERITY[wanted] > _SEVERITY[current]:
            self.client.update_run(run_id, status=wanted)

    def summary(self) -> dict[str, Any]:
        """Where the sweep is recorded (for optimization_results.yaml; password masked)."""
        return {"tracking_uri": mask_url(self.tracking_uri),
                "experiment_id": str(self.experiment_id), "parent_run_id": self.parent_id}

    def env(self, run_id: str) -> dict[str, str]:
        """What a job needs so that mlflow.start_run() logs into its child run."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_EXPERIMENT_ID": str(self.experiment_id),
            "MLFLOW_RUN_ID": run_id,
        }

    # ---- helpers ----
    def _get_run(self, run_id: str | None) -> Any:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def _log_params(self, run_id: str, params: Mapping[str, Any], existing: dict[str, str]) -> None:
        """Log params; a value that changed on resume becomes a `latest.<key>` tag instead."""
        from mlflow.entities import Param

        new, changed = [], {}
        for key, value in params.items():
            key, value = mlflow_key(key), _clip(value, 6000)
            if key not in existing:
                new.append(Param(key, value))
            elif existing[key] != value:
                changed[f"latest.{key}"] = value
        for start in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[start:start + 100])
        for key, value in changed.items():
            self.client.set_tag(run_id, mlflow_key(key), value)


def _clip(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: Any) -> bool:
    try:
        return abs(float(value)) != float("inf") and float(value) == float(value)
    except (TypeError, ValueError):
        return False
