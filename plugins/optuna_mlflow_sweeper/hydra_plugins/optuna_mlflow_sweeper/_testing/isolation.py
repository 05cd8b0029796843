"""Each test starts from what a fresh process has: no MLflow run, experiment or tracking URI left
active by an earlier test, the environment and the working folder as the session had them.

MLflow keeps process-wide state (the active run stack, the active experiment, the tracking URI)
and mirrors some of it into the environment (`set_tracking_uri` exports MLFLOW_TRACKING_URI,
`set_experiment` MLFLOW_EXPERIMENT_ID), so a test that starts a run in-process leaves it to the
next one: `mlflow.start_run()` then uses an experiment id from another test's store. Both test
trees load `isolated` (autouse) through `plugin.py`, so the tests pass in any order and any
process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import mlflow
import pytest
from mlflow.tracking import fluent


def reset_mlflow() -> None:
    """End every active run, forget the active experiment and the tracking URI set in-process."""
    while mlflow.active_run() is not None:
        with contextlib.suppress(Exception):  # its store may be gone: the run is popped anyway
            mlflow.end_run()
    # no public way to forget the active experiment: set_experiment() stores its id here
    fluent._active_experiment_id = None
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: back to the env / default


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's process state, os.environ and the working folder restored around every test."""
    reset_mlflow()
    for name in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(name)  # a user's own MLFLOW_TRACKING_URI is not the test's store
    monkeypatch.chdir(os.getcwd())  # undone after the test: a test's chdir stays its own
    before = dict(os.environ)
    yield
    reset_mlflow()
    for name in set(os.environ) - set(before):
        del os.environ[name]
    os.environ.update({k: v for k, v in before.items() if os.environ.get(k) != v})
