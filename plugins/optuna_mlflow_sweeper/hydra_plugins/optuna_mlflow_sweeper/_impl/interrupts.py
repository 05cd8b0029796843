"""Ctrl-C that always arrives, and a second one that always ends the process.

Python turns SIGINT into a KeyboardInterrupt in the main thread at its next bytecode; when that
happens to be inside a weakref callback or a `__del__` (garbage collection, frequent in a training
process) the exception is printed as "Exception ignored" and lost, and the sweep runs on as if the
key had not been pressed. So the first Ctrl-C is remembered, and raised again every half second
until the sweeper acknowledges it (it then records the trials in flight); a Ctrl-C after that ends
the process at once.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
import time

requested = threading.Event()
_acknowledged = threading.Event()
_last_resend = [0.0]


def install() -> None:
    """Take over SIGINT in this (main) thread; elsewhere (a launcher's thread) keep Python's."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, _handler)


def acknowledge() -> None:
    """The interrupt is being handled: stop raising it; the next Ctrl-C exits at once."""
    _acknowledged.set()


def _handler(signum: int, frame: object) -> None:
    if _acknowledged.is_set():
        if time.monotonic() - _last_resend[0] < 1.0:
            return  # our own resend, overtaken by the acknowledgement
        os._exit(130)
    if not requested.is_set():
        requested.set()
        threading.Thread(target=_insist, name="optuna-mlflow-ctrl-c", daemon=True).start()
    raise KeyboardInterrupt


def _insist() -> None:
    while not _acknowledged.wait(0.5):
        _last_resend[0] = time.monotonic()
        _thread.interrupt_main(signal.SIGINT)
