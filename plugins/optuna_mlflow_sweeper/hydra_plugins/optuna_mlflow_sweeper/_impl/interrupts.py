"""Ctrl-C that always arrives, and a second one that always ends the process.

Python turns SIGINT into a KeyboardInterrupt in the main thread at its next bytecode; when that
happens to be inside a weakref callback or a `__del__` (garbage collection, frequent in a training
process) the exception is printed as "Exception ignored" and lost, and the sweep runs on as if the
key had not been pressed. So the first Ctrl-C is remembered, and raised again every half second
until the sweeper acknowledges it (it then records the trials in flight); a Ctrl-C after that ends
the process at once. A lost one is not printed either (a traceback from `weakref.py` tells the
user nothing): it goes to the debug log, and is raised again.
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

log = logging.getLogger(__name__)

requested = threading.Event()
_acknowledged = threading.Event()
_last_resend = [0.0]


def install() -> None:
    """Take over SIGINT in this (main) thread; elsewhere (a launcher's thread) keep Python's."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, _handler)
        if sys.unraisablehook is not _unraisable:
            _previous_hook[0] = sys.unraisablehook
            sys.unraisablehook = _unraisable


def acknowledge(error: BaseException | None = None) -> None:
    """The interrupt is being handled: stop raising it; the next Ctrl-C exits at once.

    With the KeyboardInterrupt, what the frames it unwound still hold is dropped too: a Ctrl-C
    that cut a query's fetch leaves its cursor open there, and an unfinished SELECT keeps SQLite's
    shared lock (a rollback no longer ends it, Python 3.11), so recording the interrupted trial
    waited 60 s on this process's own lock, and again on every retry.
    """
    _acknowledged.set()
    if error is not None:
        traceback.clear_frames(error.__traceback__)  # the frames still running are kept
        gc.collect()  # cursors held in reference cycles


def _handler(signum: int, frame: object) -> None:
    if _acknowledged.is_set():
        if time.monotonic() - _last_resend[0] < 1.0:
            return  # our own resend, overtaken by the acknowledgement
        os._exit(130)
    if not requested.is_set():
        requested.set()
        threading.Thread(target=_insist, name="optuna-mlflow-ctrl-c", daemon=True).start()
    raise KeyboardInterrupt


_previous_hook: list[Any] = [sys.unraisablehook]


def _unraisable(unraisable: Any) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and requested.is_set():
        log.debug("Ctrl-C landed in %r and was lost there; raising it again", unraisable.object)
        return
    _previous_hook[0](unraisable)


def _insist() -> None:
    while not _acknowledged.wait(0.5):
        _last_resend[0] = time.monotonic()
        _thread.interrupt_main(signal.SIGINT)
