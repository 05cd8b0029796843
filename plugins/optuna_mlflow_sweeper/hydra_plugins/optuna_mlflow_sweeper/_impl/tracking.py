"""Store URLs and the MLflow UI: one tracking-URI rule, links to runs, no passwords shown.

The public face is `hydra_plugins.optuna_mlflow_sweeper.tracking`.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import parsed_url, redact

SQLITE = "sqlite:///"


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///path` URL (None: another database, or in memory)."""
    if not url.startswith(SQLITE) or ":memory:" in url:
        return None
    return url[len(SQLITE):].split("?")[0]


def absolute_sqlite_url(url: str) -> str:
    """`sqlite:///rel.db` -> `sqlite:////abs/rel.db`, so jobs that chdir still find it."""
    path = sqlite_path(url)
    return SQLITE + os.path.abspath(path) + url[len(SQLITE) + len(path):] if path else url


def mask_url(url: str | None) -> str:
    """The URL with any password replaced by *** (for logs, tags and results files)."""
    if not url:
        return ""
    parsed = parsed_url(url)
    return parsed.render_as_string(hide_password=True) if parsed is not None else redact(url)


def without_credentials(url: str) -> str:
    """`http://user:pw@host:5000/x/` -> `http://host:5000/x` (a link to print and click)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


DEFAULT_URI = "sqlite:///mlflow.db"
# MLflow 3 opens an experiment in its GenAI (traces) view unless the URL asks for model training.
TRAINING_VIEW = "workflowType=machine_learning"


def resolve_tracking_uri(configured: str | None = None) -> str:
    """`MLFLOW_TRACKING_URI`, else `configured`, else `sqlite:///mlflow.db`.

    Relative sqlite paths (and bare paths) are made absolute, so trials that change directory
    still write to the store the sweep started with.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_URI
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        return os.path.abspath(uri)
    return absolute_sqlite_url(uri)


def tracking_key(config_key: str) -> str:
    """The key a tracking URI's errors name: `MLFLOW_TRACKING_URI` when it is set (it wins over
    the config: `resolve_tracking_uri`), else `config_key`."""
    return "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else config_key


def ui_links(
    uri: str, experiment_id: str, run_id: str, port: int = 5000,
    compared: Sequence[str] = (),
) -> dict[str, str | None]:
    """Links to a run and its experiment in the MLflow UI, landing on the runs table, and to
    MLflow's compare page (parallel coordinates, scatter, contour) for the `compared` runs (a
    sweep's trials; None when there are fewer than two).

    A tracking server (`http(s)://`) serves its own UI: the links point at it (credentials
    dropped) and `command` is None. A local store (sqlite, file, a database) needs
    `mlflow ui` started first: `command` says how, and the links are on 127.0.0.1:`port`.
    """
    command, base = ui_base(uri, port)
    experiment = f"{base}/#/experiments/{experiment_id}"
    return {
        "command": command,
        "run": f"{experiment}/runs/{run_id}?{TRAINING_VIEW}",
        "experiment": f"{experiment}?{TRAINING_VIEW}",
        "compare": compare_link(base, experiment_id, compared) if len(compared) > 1 else None,
    }


def ui_base(uri: str, port: int = 5000) -> tuple[str | None, str]:
    """(the command that starts the UI, or None for a tracking server; the UI's address)."""
    if uri.startswith(("http://", "https://")):
        return None, without_credentials(uri)
    command = f"{_mlflow_command()} ui --backend-store-uri {shlex.quote(uri)} --port {port}"
    return command, f"http://127.0.0.1:{port}"


def compare_link(base: str, experiment_id: str, run_ids: Sequence[str]) -> str:
    """MLflow's compare page for `run_ids`, as its UI builds it
    (`#/compare-runs?runs=<JSON list>&experiments=<JSON list>`); quotes escaped, so a
    terminal keeps the whole link clickable."""
    runs = quote(json.dumps(list(run_ids), separators=(",", ":")), safe="[],")
    experiments = quote(json.dumps([str(experiment_id)]), safe="[],")
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}"


def model_version_link(base: str, name: str, version: str) -> str:
    """A registered model version's page in the MLflow UI."""
    return f"{base}/#/models/{quote(name, safe='')}/versions/{version}"


def ensure_experiment(client: Any, name: str) -> str:
    """The id of experiment `name`, created (or restored from the bin) if needed.

    A new experiment on a local SQLite store keeps its artifacts in `mlruns/` beside the
    database, not in the folder the creating process happens to run in (`mlflow run` runs in the
    project's checkout, a chdir'ing job in its output folder). Two sweeps creating it at once:
    the second finds the first's.
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(
                client.tracking_uri))
        except MlflowException:  # created meanwhile by a concurrent sweep
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def artifact_location(tracking_uri: str) -> str | None:
    """`<db folder>/mlruns` for a SQLite store (None: the store's or server's own default)."""
    path = sqlite_path(tracking_uri)
    return None if path is None else (Path(path).resolve().parent / "mlruns").as_uri()


def _mlflow_command() -> str:
    """The `mlflow` beside this interpreter (a venv's bin/), so the hint works unactivated."""
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.exists() else "mlflow"


def view_link(experiment_link: str, view_id: str) -> str:
    """The experiment's runs page (`.../#/experiments/<id>?...`), chart view, opened on the saved
    view (the UI drops the key on its way from `#/experiments/<id>` to the runs page)."""
    page, _, query = experiment_link.partition("?")
    extra = f"&{query}" if query else ""
    return f"{page}/runs?viewStateShareKey={view_id}&compareRunsMode=CHART{extra}"
