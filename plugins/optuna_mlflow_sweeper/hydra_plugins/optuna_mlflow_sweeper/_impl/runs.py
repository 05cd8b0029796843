"""MLflow side of a sweep: one parent run per study, one child run per trial (MlflowClient only).

The parent run id lives in the study's user attrs, so resuming a study reopens the same parent.
A child run is created before its job launches; the job can log into it (MLFLOW_RUN_ID).

Writes that need no answer (metrics, tags, outcomes, artifacts, the parent's end) go through an
`Outbox`: a tracking-server outage delays them, never kills the sweep or loses them. Creating a
run needs its id, so it waits for the server (retried with backoff, up to the patience).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl.blank_stores import create_store
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import retry_call
from hydra_plugins.optuna_mlflow_sweeper._impl.run_writes import (
    RUN_STATUS,
    _clip,
    _finite,
    _now_ms,
    context_tags,
    mlflow_key,
    mlflow_outbox,
    where_tags,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.study import PARENT_RUN_ATTR, STUDY_UID_ATTR
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import ensure_experiment, mask_url

log = logging.getLogger(__name__)

STUDY_KEY_TAG = "optuna_mlflow.study_key"
# the parent's series (best_value, n_complete...) in a chart-view section of their own, apart
# from the trials' curves (MLflow's chart view groups metrics by the prefix before `/`)
PARENT_METRIC_PREFIX = "sweep/"

class MlflowTracker:
    def __init__(self, tracking_uri: str, experiment: str, spool_dir: str | None = None) -> None:
        """`tracking_uri`: resolved, its driver pinned (plan.py)."""
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        create_store(self.tracking_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.experiment_id = retry_call(lambda: ensure_experiment(self.client, experiment),
                                        "MLflow experiment")
        self.parent_id: str | None = None
        self.outbox = mlflow_outbox(self.client, spool_dir)  # replays an earlier sweep's rest
        self._study: Any = None
        self._ended = False
        atexit.register(self._at_exit)  # runs before the outbox's own close (LIFO)

    # ---- parent run ----
    def open_parent(
        self, study: Any, study_key: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        """Reopen the study's parent run (resume) or create it; store its id in the study.

        Sweeps starting together on a new study may each create one; every process then keeps
        the earliest parent tagged with the study's key and deletes its own, so they converge.
        The key includes the study's uid: a study started over under the same name and storage
        URL gets a parent of its own.
        """
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        run = self._get_run(run_id) if run_id else None
        if run is None or run.info.lifecycle_stage == "deleted":
            uid = study.user_attrs.get(STUDY_UID_ATTR, "")
            key = hashlib.sha1(f"{study_key}|{uid}".encode()).hexdigest()[:20]
            mine = self.client.create_run(
                self.experiment_id, run_name=study.study_name,
                tags={**context_tags(), **tags, STUDY_KEY_TAG: key},
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
        self.parent_id, self._study = run.info.run_id, study
        self._log_params(self.parent_id, params, existing=dict(run.data.params))
        ended = self.reconcile_children(study)
        if ended:
            log.info("%d child run(s) of finished trials were still RUNNING: ended", ended)
        return self.parent_id

    def update_parent(
        self, metrics: Mapping[str, float], tags: Mapping[str, Any], step: int
    ) -> None:
        assert self.parent_id is not None
        now = _now_ms()
        self.outbox.put("log_batch", self.parent_id, [
            [mlflow_key(PARENT_METRIC_PREFIX + k), float(v), now, int(step)]
            for k, v in metrics.items()
            if v is not None and _finite(v)
        ], {mlflow_key(k): _clip(v, 8000) for k, v in tags.items()})

    def finish_parent(self, status: str) -> None:
        """End the parent run; waits (up to the patience) until every queued write is sent."""
        if self.parent_id is not None:
            self.outbox.put("set_terminated", self.parent_id, status)
            self._ended = True
        self.outbox.close()

    def _at_exit(self) -> None:
        """A sweep that left the parent RUNNING for trials of other processes: when they have
        all ended meanwhile (the last two sweeps can finish together), end it here."""
        if self.parent_id is None or self._ended or self._study is None:
            return
        try:
            from optuna.trial import TrialState

            if not self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                self.outbox.put("set_terminated", self.parent_id, "FINISHED")
        except Exception as e:  # the study is unreachable: a rerun ends it
            log.warning("could not check for running trials at exit: %s", e)
        self.outbox.close()

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        assert self.parent_id is not None
        self.outbox.put("log_artifact", self.parent_id, os.path.abspath(path), artifact_path)

    # ---- child runs ----
    def start_child(
        self, number: int, study_name: str, params: Mapping[str, Any], overrides: Sequence[str],
        extra_tags: Mapping[str, Any] | None = None,
    ) -> str:
        assert self.parent_id is not None
        tags = {
            **context_tags(),
            **where_tags(),  # this worker's: the trial runs in this process
            "mlflow.parentRunId": self.parent_id,
            "optuna.trial_number": str(number),
            "optuna.study_name": study_name,
            "overrides": _clip(" ".join(overrides), 8000),
            **{k: str(v) for k, v in (extra_tags or {}).items()},
        }
        run = retry_call(lambda: self.client.create_run(
            self.experiment_id, run_name=f"trial-{number}", tags=tags), "creating a child run")
        self.outbox.put("log_batch", run.info.run_id, [], {}, {
            mlflow_key(k): _clip(v, 6000) for k, v in params.items()})
        return run.info.run_id

    def finish_child(
        self, run_id: str, state: str, values: Sequence[float] | None, reason: str | None,
        status: str | None = None,
    ) -> None:
        """Record the trial outcome (queued: sent when the server answers); `status` says what
        the run is whatever the job made of it (KILLED: interrupted)."""
        self.outbox.put("finish_child", run_id, state,
                        [float(v) for v in values] if values else None, reason, status)

    def reconcile_children(self, study: Any) -> int:
        """Children left RUNNING by a sweep that died while their trial finished: end them.

        A trial still RUNNING in the study keeps its run RUNNING (another process may run it;
        if its process died, the stale-trial check fails it and ends the run).
        """
        assert self.parent_id is not None
        runs = self.client.search_runs(
            [self.experiment_id], max_results=1000,
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}' "
                          "and attributes.status = 'RUNNING'")
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        count = 0
        for run in runs:
            trial = trials.get(int(run.data.tags.get("optuna.trial_number", -1)))
            if trial is None or trial.state.name not in RUN_STATUS:
                continue
            self.finish_child(run.info.run_id, trial.state.name, trial.values,
                              trial.user_attrs.get("fail_reason"))
            count += 1
        return count

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
