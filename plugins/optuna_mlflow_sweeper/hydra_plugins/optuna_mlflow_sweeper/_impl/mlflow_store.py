"""A new SQLite MLflow store: made once, under the project's lock, from a blank copy once one is
cached.

MLflow makes a store by running its schema migrations one by one from the first: 3-5 s on two
cores (a dozen on a loaded machine), paid by the first sweep or run in every new folder. The
first store made at an MLflow version is kept, its experiments removed, as a blank store in the
user's cache (`$XDG_CACHE_HOME/optuna_mlflow_sweeper/`, by default under `~/.cache`); every new
store after it starts as a copy of that blank, which MLflow opens at once and gives its Default
experiment where the new store is, as it does for a store it made itself. A cache that cannot be
read or written is passed over: MLflow then makes the store.

Two processes running MLflow's migrations at once fail ('table tags already exists'), so a store
is made under the "mlflow" setup lock. A program outside the lock (`mlflow ui`) may still race:
MLflow's creation is tried again for a few seconds, then fails in one line naming the store (a
LocalFault: waiting longer will not fix it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hydra_plugins.optuna_mlflow_sweeper._impl.faults import LocalFault, local_fault
from hydra_plugins.optuna_mlflow_sweeper._impl.locks import setup_lock
from hydra_plugins.optuna_mlflow_sweeper._impl.retry import STORE_RETRY_S, retry_call
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import redact
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import sqlite_path

log = logging.getLogger(__name__)


def create_store(uri: str) -> None:
    """The SQLite store at `uri`, made if it does not exist yet (see the module doc); a server
    or another database is made by whoever runs it."""
    path = sqlite_path(uri)
    if path is None:
        return
    from mlflow.tracking import MlflowClient  # MLflow only where a sweep or run records
    from mlflow.version import VERSION

    blank = cache_dir() / f"mlflow-{VERSION}.db"
    with setup_lock(uri, name="mlflow"):
        made = not os.path.exists(path) and not _copied(blank, path)  # by MLflow, below
        try:
            retry_call(lambda: MlflowClient(uri), "creating the store", wait=STORE_RETRY_S,
                       retry_if=lambda e: not local_fault(e), on_retry=lambda *_: None)
        except Exception as e:
            if local_fault(e):  # a full disk: named by one_line_faults
                raise
            cause = (str(e).strip().splitlines() or [""])[0][:200]
            raise LocalFault(f"cannot create the MLflow store {redact(uri)}: MLflow's own "
                             f"creation failed ({type(e).__name__}: {cause})") from None
        if made:
            _keep_blank(path, blank)


def cache_dir() -> Path:
    """Where the blank stores are kept: the user's cache (XDG's base directory rule; without a
    home folder, the system's temporary folder)."""
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(home, ".cache") if os.path.isabs(home) else tempfile.gettempdir())
    return Path(base).absolute() / "optuna_mlflow_sweeper"


def _copied(blank: Path, path: str) -> bool:
    """Whether the blank store now stands at `path`. A blank that is not one MLflow made (no
    schema version in it) is passed over."""
    try:
        with contextlib.closing(sqlite3.connect(f"{blank.as_uri()}?mode=ro", uri=True)) as db:
            db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        with _into_place(path) as part:
            shutil.copyfile(blank, part)
        return True
    except (OSError, sqlite3.Error, TypeError) as e:  # TypeError: no version row
        if blank.exists():
            log.info("the blank MLflow store %s was not copied (%s): MLflow makes %s", blank, e,
                     path)
        return False


def _keep_blank(path: str, blank: Path) -> None:
    """A copy of the store MLflow has just made at `path`, without its Default experiment
    (whose artifact folder is where that store is), kept as `blank` for the next new store."""
    try:
        blank.parent.mkdir(parents=True, exist_ok=True)
        with _into_place(blank) as part, contextlib.closing(sqlite3.connect(path)) as source, \
                contextlib.closing(sqlite3.connect(part)) as copy:
            source.backup(copy)
            copy.execute("DELETE FROM experiments")
            copy.commit()
    except (OSError, sqlite3.Error) as e:
        log.info("no blank MLflow store kept in %s (%s)", blank.parent, e)


@contextlib.contextmanager
def _into_place(target: str | Path) -> Iterator[str]:
    """A file beside `target` to write (this process' own, made with the user's umask, as the
    store MLflow makes is), moved onto `target` whole when the block ends, removed if it fails:
    a copy cut short never looks like a store."""
    part = f"{target}.{os.getpid()}.part"
    try:
        yield part
        os.replace(part, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(part)
        raise
