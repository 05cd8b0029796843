"""Where a run's checkpoint is kept: one file, `state.npz`, in a folder on a local disk or on
object storage (any fsspec URL: `s3://`, `gs://`, `file://`, or a plain path).

Written to a temporary name beside itself, then moved over the last one: on a local disk a
rename, on object storage a server-side copy (S3 has no rename, but an object, copied or put,
appears whole or not at all). A kill at any moment leaves the previous checkpoint whole; a
temporary left by a kill goes with the folder. Credentials come from where fsspec and the cloud
SDKs look (`AWS_*` variables, `AWS_ENDPOINT_URL`, fsspec's config), never from the config, and
a location is shown and recorded with any password masked.

No Keras here: `unwritable` runs in the config checks, before the backend starts.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from hydra.utils import to_absolute_path
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import one_line_faults
from hydra_plugins.optuna_mlflow_sweeper.tracking import mask_url

log = logging.getLogger(__name__)

FILE = "state.npz"
MIN_FREE_BYTES = 1 << 20  # less than this free under the folder: a full disk


@dataclass
class Saved:
    """A loaded checkpoint: `meta` (JSON) and the arrays it names."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """Epochs done: training resumes with this (0-based) epoch."""
        return len(self.rows)

    def initial_epoch(self, epochs: int) -> int:
        """The epoch training resumes with: the next, or none if early stopping had ended it."""
        return epochs if self.meta.get("stopped") else self.epoch

    @property
    def rows(self) -> list[dict[str, float]]:
        """Each epoch's metrics, as `on_epoch` saw them."""
        return self.meta["rows"]

    def group(self, name: str) -> list[np.ndarray]:
        return [self.arrays[f"{name}/{i}"] for i in range(self.meta["sizes"].get(name, 0))]


@dataclass
class Store:
    """One run's checkpoint folder: a path or an fsspec URL. `before_first_save(location)` runs
    once, before the first file is written (a sweep's trial records the location there)."""

    location: str
    every: int = 1
    fingerprint: str = ""
    before_first_save: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.location = absolute(str(self.location))
        self.fs, root = fsspec.core.url_to_fs(self.location)
        self.root = root.rstrip("/")
        self.file = f"{self.root}/{FILE}"

    @property
    def shown(self) -> str:
        """The location for logs and messages (a password masked)."""
        return mask_url(self.location)

    def load(self) -> Saved | None:
        """The last checkpoint, or None (none, unreadable, or made with another config)."""
        try:
            data = self.fs.cat_file(self.file)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("checkpoint %s/%s is unreadable (%s): training from the first epoch",
                        self.shown, FILE, e)
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                saved = Saved(json.loads(str(npz["meta"])),
                              {k: npz[k] for k in npz.files if k != "meta"})
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            log.warning("checkpoint %s/%s is unreadable (%s): training from the first epoch",
                        self.shown, FILE, e)
            return None
        if saved.meta.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s/%s was made with another config: training from the first "
                        "epoch", self.shown, FILE)
            return None
        return saved

    def save(self, meta: Mapping[str, Any], groups: Mapping[str, Sequence[Any]]) -> None:
        """Write atomically (see the module); a full or read-only disk is named in one line."""
        arrays = {f"{name}/{i}": np.asarray(a) for name, items in groups.items()
                  for i, a in enumerate(items)}
        sizes = {name: len(items) for name, items in groups.items()}
        text = json.dumps({**meta, "sizes": sizes, "fingerprint": self.fingerprint})
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(text), **arrays)
        first, self.before_first_save = self.before_first_save, None
        if first is not None:
            first(self.location)
        temporary = f"{self.root}/.{FILE}.{os.getpid()}.tmp"
        with one_line_faults([("checkpoint folder", self.root)]):
            if isinstance(self.fs, LocalFileSystem):
                self.fs.makedirs(self.root, exist_ok=True)
            with self.fs.open(temporary, "wb") as f:
                f.write(buffer.getvalue())
                _sync(f)
            self.fs.mv(temporary, self.file)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.root, recursive=True)


def absolute(location: str) -> str:
    """A plain path from where the command ran, as Hydra's paths are (a job may run in its own
    folder); a URL as it is."""
    return location if "://" in location else to_absolute_path(location)


def unwritable(location: str) -> str | None:
    """Why checkpoints cannot be written under a local `location` (read-only file system, no
    space left, permission denied), or None; checked before anything trains, creating nothing.
    A URL other than `file://` is not checked here (its first write says)."""
    fs, path = fsspec.core.url_to_fs(absolute(location))
    if not isinstance(fs, LocalFileSystem):
        return None
    folder = path
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # the nearest folder that exists
    st = os.statvfs(folder)
    if st.f_flag & os.ST_RDONLY:
        return f"{folder} is on a read-only file system"
    if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
        return f"no space left on the disk of {folder}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable by this user"
    return None


def _sync(f: Any) -> None:
    """On a local disk, to the disk before the rename (object stores have nothing to sync)."""
    with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
        f.flush()
        os.fsync(f.fileno())
