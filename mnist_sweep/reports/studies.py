"""Where each sweep's Optuna study lives, so `mnist-sweep-report NAME` finds it from any folder.

A sweep's study sits in its sweep folder (`multirun/NAME/optuna.db` under the folder the sweep
ran from) or in the storage the sweep was given. A Hydra callback records both when a sweep
starts, in a small per-user index (`$XDG_STATE_HOME/mnist-sweep/studies.json`, by default
`~/.local/state/...`). A storage URL with a password is recorded masked: the report then needs
`--storage` (or the URL in an environment variable) to open it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra_plugins.optuna_mlflow_sweeper.tracking import mask_url
from omegaconf import DictConfig

log = logging.getLogger(__name__)

SWEEPER = "optuna_mlflow"


def index_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "mnist-sweep" / "studies.json"


def known() -> dict[str, dict[str, str]]:
    """study name -> {"sweep_dir": absolute path, "storage": URL (masked if it had a password)}."""
    try:
        data = json.loads(index_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(study_name: str, sweep_dir: str, storage: str | None) -> None:
    """Remember where a study is; atomic, so sweeps starting together never corrupt the index."""
    entries = known()
    entry = {"sweep_dir": str(Path(sweep_dir).resolve()),
             "storage": storage or default_storage(sweep_dir)}
    if entries.get(study_name) == entry:
        return
    entries[study_name] = entry
    path = index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".studies-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # the index is a convenience: a sweep never fails for it
        log.warning("could not record study %s in %s: %s", study_name, path, exc)
        with contextlib.suppress(OSError, NameError):
            os.unlink(tmp)


def default_storage(sweep_dir: str | Path) -> str:
    """The sweeper's default storage: the sweep folder's optuna.db."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


def find(study_name: str, storage: str | None = None) -> str | None:
    """The storage URL of a study: the one given, else ./multirun/NAME, else the index."""
    if storage:
        return storage
    here = Path("multirun") / study_name / "optuna.db"
    if here.is_file():
        return default_storage(here.parent)
    entry = known().get(study_name)
    if entry is None:
        return None
    return entry["storage"]


def sqlite_file(storage: str) -> Path | None:
    """The file of a sqlite URL (None for other databases): opening a missing one creates it."""
    prefix = "sqlite:///"
    return Path(storage[len(prefix):]) if storage.startswith(prefix) else None


class RecordStudy(Callback):
    """Hydra callback (conf/config.yaml): records each optuna_mlflow sweep's study at its start."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if not str(sweeper.get("_target_", "")).endswith("OptunaMlflowSweeper"):
            return
        name = sweeper.get("study_name") or config.hydra.job.name
        storage = sweeper.get("storage")
        if storage and "@" in storage.split("//", 1)[-1].split("/", 1)[0]:
            storage = mask_url(storage)
        record(str(name), str(config.hydra.sweep.dir), storage)
