"""Where each sweep's Optuna study lives, so `mnist-sweep-report NAME` finds it from any folder.

A sweep's study sits in its sweep folder (`multirun/NAME/optuna.db` under the folder the sweep
ran from) or in the storage the sweep was given. A Hydra callback records it in a small per-user
index (`$XDG_STATE_HOME/mnist-sweep/studies.json`, by default `~/.local/state/...`) when a trial's
job starts: by then the sweep has passed its checks and its study exists, so a sweep rejected at
start-up records nothing. Entries are kept per storage, newest first: two studies of one name in
two storages are both remembered. A storage URL with a password is recorded masked: the report
then needs `--storage` (or the URL in an environment variable) to open it. When the index knows
nothing of a name, the sweep's MLflow parent run does: it is tagged with the study's name and
(masked) storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra_plugins.optuna_mlflow_sweeper.tracking import mask_url
from hydra_plugins.optuna_mlflow_sweeper.trial import ENV_STORAGE, ENV_STUDY
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# the parent run of a sweep carries both (children carry the name only)
NAME_TAG, STORAGE_TAG = "optuna.study_name", "optuna.storage"

Entry = dict[str, str]  # {"storage": URL (masked), "sweep_dir": absolute path, "recorded": time}


def index_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "mnist-sweep" / "studies.json"


def known() -> dict[str, list[Entry]]:
    """study name -> its entries, one per storage, newest first."""
    try:
        data = json.loads(index_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # an index written before entries were kept per storage held one entry per name
    return {name: [entries] if isinstance(entries, dict) else entries
            for name, entries in data.items() if isinstance(entries, (dict, list))}


def record(study_name: str, sweep_dir: str, storage: str | None) -> None:
    """Remember where a study is, beside the same name's studies in other storages.

    Under a lock and replaced atomically: the jobs of several sweeps record at once."""
    storage = storage or default_storage(sweep_dir)
    entry = {"storage": storage, "sweep_dir": str(Path(sweep_dir).resolve())}
    path = index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_name(path.name + ".lock")):
            entries = known()
            mine = entries.get(study_name, [])
            if mine and {k: mine[0].get(k) for k in entry} == entry:
                return  # the newest already: every job of a sweep calls this
            others = [e for e in mine if e.get("storage") != storage]
            entries[study_name] = [{**entry, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S")},
                                   *others]
            fd, tmp = tempfile.mkstemp(prefix=".studies-", dir=path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(entries, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
    except OSError as exc:  # the index is a convenience: a sweep never fails for it
        log.warning("could not record study %s in %s: %s", study_name, path, exc)
        with contextlib.suppress(OSError, NameError):
            os.unlink(tmp)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def default_storage(sweep_dir: str | Path) -> str:
    """The sweeper's default storage: the sweep folder's optuna.db."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


def find(study_name: str, storage: str | None = None,
         tracking_uri: str | None = None) -> list[str]:
    """The storage URLs a study may be in, most likely first: the one given, else
    ./multirun/NAME, else the index's (newest first), else the storages MLflow's parent runs of
    that name were tagged with."""
    if storage:
        return [storage]
    here = Path("multirun") / study_name / "optuna.db"
    if here.is_file():
        return [default_storage(here.parent)]
    indexed = [e["storage"] for e in known().get(study_name, []) if e.get("storage")]
    return indexed or (tagged(study_name, tracking_uri) if tracking_uri else [])


def tagged(study_name: str, tracking_uri: str) -> list[str]:
    """The storages of the sweeps' parent runs named `study_name`, newest first ([] when the
    tracking store has none, or cannot be read: the report then says what it looked at)."""
    path = sqlite_file(tracking_uri)
    if path is not None and not path.is_file():  # opening it would create an empty store
        return []
    try:
        client = MlflowClient(tracking_uri)
        ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(ids, f"tags.`{NAME_TAG}` = '{study_name}'",
                                  order_by=["attributes.start_time DESC"]) if ids else []
    except Exception as exc:  # a server down, a bad URI: the index was all there was
        log.debug("no MLflow fallback for %s: %s", study_name, exc)
        return []
    found = [r.data.tags[STORAGE_TAG] for r in runs if STORAGE_TAG in r.data.tags]
    return list(dict.fromkeys(found))


def sqlite_file(storage: str) -> Path | None:
    """The file of a sqlite URL (None for other databases): opening a missing one creates it."""
    prefix = "sqlite:///"
    return Path(storage[len(prefix):]) if storage.startswith(prefix) else None


class RecordStudy(Callback):
    """Hydra callback (conf/config.yaml): records an optuna_mlflow sweep's study when a trial's
    job starts, that is once the sweep has passed its checks and its study exists."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the real URL, even one with a password: it comes through the environment, never the
        # job's config
        storage, name = os.environ.get(ENV_STORAGE), os.environ.get(ENV_STUDY)
        if not (storage and name):
            return  # a single run, or another sweeper's job
        sweep_dir = Path(config.hydra.runtime.cwd) / str(config.hydra.sweep.dir)
        record(name, str(sweep_dir), mask_url(storage))
