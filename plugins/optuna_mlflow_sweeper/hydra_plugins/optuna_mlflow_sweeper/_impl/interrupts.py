"""Ctrl-C that always arrives, and a second one that always ends the process.

Python turns SIGINT into a KeyboardInterrupt in the main thread at its next bytecode; when that
happens to be inside a weakref callback or a `__del__` (garbage collection, frequent in a training
process) the exception is printed as "Exception ignored" and lost, and the sweep runs on as if the
key had not been pressed. So the first Ctrl-C is remembered, and raised again every half second
until the sweeper acknowledges it (it then records the trials in flight); a Ctrl-C after that ends
the process at once. A lost one is not printed either (a traceback from `weakref.py` tells the
user nothing): it goes to the debug log, and is raised again.

SIGTERM, as schedulers send it before a preemption or a time limit (SLURM, Ray, Kubernetes,
`timeout`), is a gentler stop: a trial in progress may finish its epoch and checkpoint (task code
asks `stop_requested()` at each epoch's end and calls `stop_now()`), bounded by a grace period,
after which `Terminated` (a KeyboardInterrupt, so every path that records an interrupted trial
records this one too) is raised wherever the process is. Outside a trial it is raised at once.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

requested = threading.Event()
_acknowledged = threading.Event()
_last_resend = [0.0]
terminating = threading.Event()  # SIGTERM arrived: stop after this epoch
_in_trial = threading.Event()
_grace = [60.0]
_grace_timers: list[threading.Timer] = []  # each ends a grace period that ran out
_stopped_by: list[int] = []  # the signal that asked to stop: SIGTERM, or a preemption signal
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM): recorded like Ctrl-C, exit code 143."""


def install(grace_period: float = 60.0) -> None:
    """Take over SIGINT and SIGTERM in this (main) thread; elsewhere (a launcher's thread)
    keep Python's. `grace_period`: seconds a trial may take to reach its epoch's end."""
    _grace[0] = float(grace_period)
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _term_handler)
        if sys.unraisablehook is not _unraisable:
            _previous_hook[0] = sys.unraisablehook
            sys.unraisablehook = _unraisable


def heap_left_to_exit() -> None:
    """At this process's exit, no last garbage collections over its heap: over what a sweep
    loads (MLflow, Optuna, SQLAlchemy; TensorFlow in its trials) they take 1-2 s of CPU after the
    answer is printed, for memory the OS frees anyway. Frozen objects are skipped; atexit
    handlers still run. Registered once, however many sweeps the process runs."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def also_stop_on(signum: int) -> None:
    """`signum` stops this process as SIGTERM does (a launcher's preemption signal)."""
    signal.signal(signum, _term_handler)


def stopped_by() -> int | None:
    """The signal that asked this process to stop, if one did."""
    return _stopped_by[0] if _stopped_by else None


def grace_period() -> float:
    return _grace[0]


def exit_code(error: BaseException) -> int:
    return EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED


@contextlib.contextmanager
def trial_in_progress() -> Iterator[None]:
    """While a trial runs here, a SIGTERM waits (up to the grace period) for its epoch's end."""
    _in_trial.set()
    try:
        if terminating.is_set():
            _stop_from_signal()
        yield
    finally:
        _in_trial.clear()


@contextlib.contextmanager
def sigterm_stops_after_epoch(grace_period: float = 60.0) -> Iterator[None]:
    """SIGTERM to a process that runs its task alone (no sweep), as it is to a sweep's trial:
    the task finishes its epoch (at most `grace_period` seconds), checkpoints, and `Terminated`
    leaves the block, acknowledged (the caller says so in one line). In the main thread only;
    elsewhere nothing changes."""
    _grace[0] = float(grace_period)
    try:
        previous = signal.signal(signal.SIGTERM, _term_handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        with trial_in_progress():
            yield
    except Terminated as e:
        acknowledge(e)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        while _grace_timers:  # stopped in time: no late interrupt for what runs next
            _grace_timers.pop().cancel()


def stop_requested() -> bool:
    """Whether this process was asked to stop: task code checkpoints, then calls stop_now()."""
    return terminating.is_set()


def stop_now() -> None:
    """Raise `Terminated` here (task code, at its epoch's end: the trial is recorded as
    stopped, to run again first)."""
    raise Terminated


def _stop_from_signal() -> None:
    """Raise `Terminated` from the handler, and again until acknowledged: raised in a garbage
    collection callback it would be lost (see the module doc)."""
    if not requested.is_set():
        requested.set()
        threading.Thread(target=_insist, args=(signal.SIGTERM,), name="optuna-mlflow-term",
                         daemon=True).start()
    raise Terminated


def pending() -> KeyboardInterrupt | None:
    """The stop asked for and not raised yet (it was lost where it landed), if any."""
    if terminating.is_set():
        return Terminated()
    return KeyboardInterrupt() if requested.is_set() else None


def _term_handler(signum: int, _frame: object) -> None:
    if terminating.is_set():
        if _acknowledged.is_set():
            return  # being recorded already: let it finish
        _stop_from_signal()  # the grace period is over (our own timer), or a second SIGTERM
    terminating.set()
    _stopped_by.append(signum)
    log.warning("%s: stopping after the epoch in progress (at most %.0f s)",
                signal.Signals(signum).name, _grace[0])
    if not _in_trial.is_set():
        _stop_from_signal()
    timer = threading.Timer(_grace[0], _thread.interrupt_main, args=(signal.SIGTERM,))
    timer.daemon = True
    _grace_timers.append(timer)
    timer.start()


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


def _handler(signum: int, _frame: object) -> None:
    if _acknowledged.is_set():
        if time.monotonic() - _last_resend[0] < 1.0:
            return  # our own resend, overtaken by the acknowledgement
        os._exit(130)
    if not requested.is_set():
        requested.set()
        threading.Thread(target=_insist, args=(signal.SIGINT,), name="optuna-mlflow-ctrl-c",
                         daemon=True).start()
    raise KeyboardInterrupt


_previous_hook: list[Any] = [sys.unraisablehook]


def _unraisable(unraisable: Any) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and requested.is_set():
        log.debug("Ctrl-C landed in %r and was lost there; raising it again", unraisable.object)
        return
    _previous_hook[0](unraisable)


def _insist(signum: int) -> None:
    # not retry.poll: the acknowledgement must end the wait at once, not after a sleep
    while not _acknowledged.wait(0.5):
        _last_resend[0] = time.monotonic()
        _thread.interrupt_main(signum)
