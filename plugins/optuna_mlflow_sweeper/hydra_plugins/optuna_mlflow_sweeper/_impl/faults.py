"""What kind of failure an error is: a local fault waiting cannot fix, or an unreachable service.

A full disk, a read-only file system or a permission refused on this machine stay that way
however long a sweep waits, so the retry predicates never wait for them (`local_fault`), and
the command says so in one line (`LocalFault`). `unreachable_cause` turns the error of a first
contact with a service into the few words a user needs (`connection refused`, `unknown host
db.example`, `wrong user name or password`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from collections.abc import Iterator, Sequence

from hydra.errors import CompactHydraException

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import sqlite_path

log = logging.getLogger(__name__)

_LOCAL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "permission denied"}
# SQLite's words for the same faults, as SQLAlchemy and MLflow pass them on
_LOCAL_TEXTS = (("database or disk is full", "database or disk is full"),
                ("no space left on device", "no space left on device"),
                ("attempt to write a readonly database", "read-only database"),
                ("read-only file system", "read-only file system"))
_UNREACHABLE = (
    (re.compile(r"connection refused", re.I), "connection refused"),
    (re.compile(r"failed to resolve (?:host )?'([^']+)'|could not translate host name "
                r"\"([^\"]+)\"|name or service not known|nodename nor servname", re.I),
     "unknown host"),
    (re.compile(r"password authentication failed|authentication failed|"
                r"no password supplied", re.I), "wrong user name or password"),
    (re.compile(r"database \"([^\"]+)\" does not exist", re.I), "database does not exist"),
    (re.compile(r"timed? ?out|timeout expired", re.I), "no answer"),
    (re.compile(r"no route to host|network is unreachable", re.I), "no route to host"),
)


class LocalFault(RuntimeError, CompactHydraException):
    """A write failed on this machine (disk full, read-only, permission): one line, no retry."""


class Unreachable(RuntimeError, CompactHydraException):
    """A service the command needs could not be used at first contact: one line, no retry."""


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what caused it (a few levels: SQLAlchemy and MLflow wrap the driver's)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return
        yield seen
        orig = getattr(seen, "orig", None)  # SQLAlchemy's DBAPIError keeps the driver's error
        if isinstance(orig, BaseException):
            yield orig
        seen = seen.__cause__ or seen.__context__


def local_fault(error: BaseException) -> str | None:
    """The cause, when `error` (or what caused it) is a local fault waiting cannot fix."""
    for e in chain(error):
        if isinstance(e, OSError) and e.errno in _LOCAL_ERRNOS:
            name = f": {e.filename}" if e.filename else ""
            return f"{_LOCAL_ERRNOS[e.errno]}{name}"
        text = str(e).lower()
        for needle, cause in _LOCAL_TEXTS:
            if needle in text:
                return cause
    return None


def fault_line(error: BaseException, stores: Sequence[tuple[str, str]]) -> str | None:
    """"cannot write the MLflow store at /x/mlflow.db: database or disk is full", or None.

    `stores`: (what, sqlite URL or path) the command writes to; the one whose file system is
    full or read-only is named (all of them when none can be told apart)."""
    cause = local_fault(error)
    if cause is None:
        return None
    paths = [(what, _path(where)) for what, where in stores if _path(where)]
    suspects = [(what, path) for what, path in paths if _faulty(path)] or paths
    if ": /" in cause or not suspects:
        return f"cannot write: {cause}"
    named = " or ".join(f"the {what} at {path}" for what, path in suspects)
    return f"cannot write {named}: {cause}"


class _Reraised(logging.Filter):
    """MLflow's SQL store logs each database error with its traceback, then raises it: the
    raised error is what the command reports (in one line), the log record is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


@contextlib.contextmanager
def one_line_faults(stores: Sequence[tuple[str, str]]) -> Iterator[None]:
    """A local fault raised inside becomes a `LocalFault` (one line; the traceback is logged).
    A config error stays one, even when its words name a fault (a read-only folder refused)."""
    mlflow_sql = logging.getLogger("mlflow.store.db.utils")
    reraised = _Reraised()
    mlflow_sql.addFilter(reraised)
    try:
        yield
    except (LocalFault, SweeperConfigError):
        raise
    except Exception as e:
        line = fault_line(e, stores)
        if line is None:
            raise
        log.debug("local fault", exc_info=e)
        raise LocalFault(line) from None
    finally:
        mlflow_sql.removeFilter(reraised)


def unreachable_cause(error: BaseException) -> str:
    """A few words for why a first contact failed (the error's first line when unknown)."""
    for e in chain(error):
        text = str(e)
        for pattern, cause in _UNREACHABLE:
            match = pattern.search(text)
            if match:
                named = next((g for g in match.groups() if g), None)
                return f"{cause} {named}" if named and cause == "unknown host" else (
                    f'database "{named}" does not exist' if named else cause)
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0][:200] if first else ''}"


def _path(where: str) -> str | None:
    return sqlite_path(where) or (where if where.startswith("/") else None)


def _faulty(path: str) -> bool:
    """Whether the file system holding `path` is full, read-only or not writable by us."""
    folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    full = st.f_bavail * st.f_frsize < 64 * 1024
    return full or bool(st.f_flag & os.ST_RDONLY) or not os.access(folder, os.W_OK)
