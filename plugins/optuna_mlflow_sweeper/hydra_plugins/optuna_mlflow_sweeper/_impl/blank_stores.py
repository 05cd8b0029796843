"""New SQLite stores, MLflow's and Optuna's: made once, under the project's lock, from a blank
copy once one is cached.

MLflow makes a store by running its schema migrations one by one from the first: 3-5 s on two
cores (a dozen on a loaded machine), paid by the first sweep or run in every new folder; Optuna
makes its tables and stamps their version, ~0.25 s of every new sweep's start. The first store
each makes at its version is kept, emptied, as a blank in the user's cache
(`$XDG_CACHE_HOME/optuna_mlflow_sweeper/`, by default under `~/.cache`); every new store after it
starts as a copy of that blank, which the library opens at once (MLflow then gives it its Default
experiment where the new store is, as it does for a store it made itself). A cache that cannot be
read or written is passed over: the library then makes the store.

The copy is made under the caller's setup lock (a second process must not replace a store the
first has begun to fill). Two processes running MLflow's migrations at once fail ('table tags
already exists'), so an MLflow store is made under the "mlflow" setup lock. A program outside the
lock (`mlflow ui`) may still race: MLflow's creation is tried again for a few seconds, then fails
in one line naming the store (a LocalFault: waiting longer will not fix it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from hydra_plugins.optuna_mlflow_sweeper._impl.faults import LocalFault, local_fault
from hydra_plugins.optuna_mlflow_sweeper._impl.locks import setup_lock
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import STORE_RETRY_S, retry_call
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import redact
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import sqlite_path

log = logging.getLogger(__name__)
T = TypeVar("T")


def create_store(uri: str) -> None:
    """The SQLite MLflow store at `uri`, made if it does not exist yet (see the module doc); a
    server or another database is made by whoever runs it."""
    path = sqlite_path(uri)
    if path is None:
        return
    from mlflow.tracking import MlflowClient  # MLflow only where a sweep or run records
    from mlflow.version import VERSION

    def opened() -> None:
        try:
            retry_call(lambda: MlflowClient(uri), "creating the store", wait=STORE_RETRY_S,
                       retry_if=lambda e: not local_fault(e), on_retry=lambda *_: None)
        except Exception as e:
            if local_fault(e):  # a full disk: named by one_line_faults
                raise
            cause = (str(e).strip().splitlines() or [""])[0][:200]
            raise LocalFault(f"cannot create the MLflow store {redact(uri)}: MLflow's own "
                             f"creation failed ({type(e).__name__}: {cause})") from None

    with setup_lock(uri, name="mlflow"):
        # the Default experiment's artifact folder is where that store is: not in the blank
        from_blank(path, f"mlflow-{VERSION}", opened, emptied="DELETE FROM experiments")


def from_blank(path: str | None, blank_name: str, open_: Callable[[], T],
               emptied: str = "") -> T:
    """`open_()` the store at `path` (a SQLite file; None: another database), which starts as a
    copy of the cached blank `blank_name` if it does not exist yet; one that `open_` had to make
    is kept as that blank, less what the SQL `emptied` deletes. Under the caller's setup lock."""
    blank = cache_dir() / f"{blank_name}.db"
    made = bool(path) and not os.path.exists(path) and not _copied(blank, path)
    opened = open_()
    if made:
        assert path
        _keep_blank(path, blank, emptied)
    return opened


def cache_dir() -> Path:
    """Where the blank stores are kept: the user's cache (XDG's base directory rule; without a
    home folder, the system's temporary folder)."""
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(home, ".cache") if os.path.isabs(home) else tempfile.gettempdir())
    return Path(base).absolute() / "optuna_mlflow_sweeper"


def _copied(blank: Path, path: str) -> bool:
    """Whether the blank store now stands at `path`. A blank that is not a store its library
    made (no schema version in it) is passed over."""
    try:
        with contextlib.closing(sqlite3.connect(f"{blank.as_uri()}?mode=ro", uri=True)) as db:
            db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        with _into_place(path) as part:
            shutil.copyfile(blank, part)
        log.debug("new store %s: a copy of %s", path, blank)
        return True
    except (OSError, sqlite3.Error, TypeError) as e:  # TypeError: no version row
        if blank.exists():
            log.info("the blank store %s was not copied (%s): its library makes %s", blank, e,
                     path)
        return False


def _keep_blank(path: str, blank: Path, emptied: str) -> None:
    """A copy of the store just made at `path`, less what the SQL `emptied` deletes, kept as
    `blank` for the next new store."""
    try:
        blank.parent.mkdir(parents=True, exist_ok=True)
        with _into_place(blank) as part, contextlib.closing(sqlite3.connect(path)) as source, \
                contextlib.closing(sqlite3.connect(part)) as copy:
            source.backup(copy)
            if emptied:
                copy.execute(emptied)
                copy.commit()
    except (OSError, sqlite3.Error) as e:
        log.info("no blank store kept in %s (%s)", blank.parent, e)


@contextlib.contextmanager
def _into_place(target: str | Path) -> Iterator[str]:
    """A file beside `target` to write (this process' own, made with the user's umask, as the
    store its library makes is), moved onto `target` whole when the block ends, removed if it fails:
    a copy cut short never looks like a store."""
    part = f"{target}.{os.getpid()}.part"
    try:
        yield part
        os.replace(part, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(part)
        raise
