"""Per-epoch MLflow metrics sent beside training, not inside it, and never lost to an outage.

Logging an epoch's metrics inside the Keras callback made a tracking-server outage count as
training time (one trial's `epoch_time_s` became 19 s) and, once MLflow's own retries gave up,
failed a fully trained trial. Here the callback only queues the batch; the sweeper plugin's MLflow
outbox (the one its runs use: same writes, same retry policy) sends it in order from a background
thread. A run waits for its queue before it ends (up to $OPTUNA_MLFLOW_PATIENCE s); what is still
undelivered then is spooled in ~/.cache/mnist-sweep/outbox/ and sent by the next run on this
machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from hydra_plugins.optuna_mlflow_sweeper._impl.outbox import Outbox
from hydra_plugins.optuna_mlflow_sweeper._impl.run_writes import mlflow_outbox

SPOOL_ENV = "MNIST_SWEEP_OUTBOX"
_boxes: dict[str, Outbox] = {}


def spool_dir() -> Path:
    default = Path.home() / ".cache" / "mnist-sweep" / "outbox"
    return Path(os.environ.get(SPOOL_ENV) or default)


def outbox(uri: str) -> Outbox:
    """One outbox per tracking URI and process (a sweep worker runs many trials)."""
    box = _boxes.get(uri)
    if box is None:
        from mlflow.tracking import MlflowClient

        box = _boxes[uri] = mlflow_outbox(MlflowClient(tracking_uri=uri), spool_dir() / _safe(uri))
    return box


def log_epoch(uri: str, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
    """Queue one epoch's metrics (one request); returns at once."""
    now = int(time.time() * 1000)
    outbox(uri).put("log_batch", run_id, [[k, float(v), now, int(step)]
                                          for k, v in metrics.items()])


def wait_delivered(wait: float) -> bool:
    """Before a run ends: its epochs are in MLflow (True), or still queued after `wait` s."""
    deadline = time.monotonic() + wait
    return all(box.drain(max(0.0, deadline - time.monotonic())) for box in _boxes.values())


def _safe(uri: str) -> str:
    """A folder name for a tracking URI (its password never reaches the file system)."""
    import hashlib

    return hashlib.sha1(uri.encode()).hexdigest()[:16]
