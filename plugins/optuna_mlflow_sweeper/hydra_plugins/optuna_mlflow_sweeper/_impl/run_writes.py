"""The writes of MLflow records, as the outbox thread carries them out.

Each is one (op, JSON-able args) item, so it can wait in a queue, or in a spool file for a later
sweep or run, and still do the same thing when it is finally sent. `mlflow_outbox` is the one
outbox of such writes, for the sweeper's runs and for an app's per-epoch metrics alike.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl.outbox import Outbox

RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_SEVERITY = {"FINISHED": 0, "KILLED": 1, "FAILED": 2}
_TERMINAL = set(_SEVERITY)
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /]")


@functools.lru_cache(maxsize=1)
def context_tags() -> dict[str, str]:
    """The tags `mlflow.start_run` sets from where it runs (user, source name and type, git
    commit), which `MlflowClient.create_run` leaves out: the UI's "Created by" and "Source"."""
    from mlflow.tracking.context.registry import resolve_tags

    return {key: str(value) for key, value in resolve_tags().items()}


def where_tags() -> dict[str, str]:
    """Where this process runs, for a trial's run: its host, and on a Ray cluster the node's id
    (`ray.node_id`), so a lost node's trials can be told apart. Ray is asked only when this
    process already runs inside it (a Ray worker imported it): never imported here."""
    tags = {"host": socket.gethostname()}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        tags["ray.node_id"] = ray.get_runtime_context().get_node_id()
    return tags


def mlflow_key(key: str) -> str:
    """A param/metric/tag key MLflow accepts (alphanumerics, _ - . space /; <= 250 chars)."""
    return _BAD_KEY_CHARS.sub("_", str(key))[:250]


def mlflow_outbox(client: Any, spool_dir: str | os.PathLike[str] | None) -> Outbox:
    """An outbox of MLflow writes through `client`, having queued first what earlier processes
    left undelivered in `spool_dir`."""
    box = Outbox(functools.partial(send, client), spool_dir, name="MLflow")
    box.replay()
    return box


def send(client: Any, op: str, args: list[Any]) -> None:
    """Carry out one queued write (called by the outbox thread, retried on outages)."""
    from mlflow.entities import Metric

    if op == "log_batch":  # run_id, metrics [[key, value, ms, step]], tags?, params?
        from mlflow.entities import Param

        run_id, metrics, tags, params = (*args, {}, {})[:4]
        client.log_batch(run_id, metrics=[Metric(*m) for m in metrics], tags=_tag_list(tags),
                         params=[Param(k, v) for k, v in params.items()], synchronous=True)
    elif op == "set_terminated":
        client.set_terminated(args[0], status=args[1])
    elif op == "log_artifact":
        client.log_artifact(*args)
    elif op == "finish_child":
        finish_child_now(client, *args)
    else:
        raise ValueError(f"unknown outbox op {op!r}")


def objective_metric_names(n: int) -> list[str]:
    """The MLflow metric names of a trial's `n` objective values."""
    return ["objective"] if n == 1 else [f"objective_{i}" for i in range(n)]


def finish_child_now(
    client: Any, run_id: str, state: str, values: Sequence[float] | None, reason: str | None,
    status: str | None = None,
) -> None:
    """Record the trial outcome; keep a richer terminal status the job may have set, unless
    `status` says what it is (KILLED: interrupted, whatever the job made of it). The values and
    tags go in one request; reading the status and ending the run are one each."""
    from mlflow.entities import Metric

    values = list(values or [])
    metrics = [Metric(name, float(value), _now_ms(), 0)
               for name, value in zip(objective_metric_names(len(values)), values, strict=True)
               if _finite(value)]
    tags = {"optuna.state": state, **({"fail_reason": _clip(reason, 8000)} if reason else {})}
    client.log_batch(run_id, metrics=metrics, tags=_tag_list(tags), synchronous=True)
    wanted = status or RUN_STATUS[state]
    current = client.get_run(run_id).info.status
    if status is not None and current != status:
        client.update_run(run_id, status=status)
    elif current not in _TERMINAL:
        client.set_terminated(run_id, status=wanted)
    elif state == "PRUNED" and current != wanted:
        # TrialPruned raised inside `with mlflow.start_run()` ends the run FAILED: it was pruned
        client.update_run(run_id, status=wanted)
    elif _SEVERITY[wanted] > _SEVERITY[current]:
        client.update_run(run_id, status=wanted)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _tag_list(tags: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in tags.items()]


def _clip(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: Any) -> bool:
    try:
        return abs(float(value)) != float("inf") and float(value) == float(value)
    except (TypeError, ValueError):
        return False
