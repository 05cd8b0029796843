"""Heartbeats of running trials: a trial goes stale (to be failed and retried by whoever looks
next) only when every process that runs it is gone.

As Optuna's `optuna/storages/_heartbeat.py`: a thread that beats while a `with` block runs, and a
do-nothing variant where heartbeats are off, so callers never branch on it. The first beat is
made on entry, before the block: from then on a process that dies leaves a stale trial.

    with beating(study._storage, [trial._trial_id]):
        ...  # the trial is alive while this runs
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

# one beat; False when there is nothing left to beat (the heartbeat then ends by itself)
Beat = Callable[[], bool]


class BaseHeartbeat:
    """A context manager: `start()` on entry, `stop()` on exit."""

    def start(self) -> BaseHeartbeat:
        return self

    def stop(self) -> None:
        pass

    def __enter__(self) -> BaseHeartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NullHeartbeat(BaseHeartbeat):
    """Heartbeats off: entering, starting and stopping do nothing."""


class Heartbeat(BaseHeartbeat):
    """`beat()` on start (unless `first` is False: the caller makes it), then every `interval` s
    from a thread, until stopped (or a beat returns False). A failed beat is logged and the next
    one tried: a missed heartbeat must never break the trial or the sweep."""

    def __init__(self, beat: Beat, interval: float, name: str = "heartbeat",
                 first: bool = True) -> None:
        self._beat, self._interval, self._name, self._first = beat, interval, name, first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        if not self._first or self._once():
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        # not retry.poll: its sleep cannot be cut short, and stop() must not wait an interval
        while not self._stop.wait(self._interval) and self._once():
            pass

    def _once(self) -> bool:
        try:
            return self._beat()
        except Exception as e:
            log.debug("%s failed: %s", self._name, e)
            return True


def beating(storage: Any, trial_ids: Iterable[int], interval: float | None = None,
            alive: Callable[[], bool] | None = None, first: bool = True) -> BaseHeartbeat:
    """Heartbeats of `trial_ids` in an Optuna `storage`, every `interval` s (default: the
    storage's own); a `NullHeartbeat` where there is none. `alive()`, checked before each beat:
    False ends the heartbeat (this process no longer runs the trial). `first=False`: the first
    beat is the caller's (the worker's comes with the trial's attrs, one transaction)."""
    ids = list(trial_ids)
    interval = interval or getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval or not ids or not hasattr(storage, "record_heartbeat"):
        return NullHeartbeat()

    def beat() -> bool:
        if alive is not None and not alive():
            return False
        for trial_id in ids:
            storage.record_heartbeat(trial_id)
        return True

    return Heartbeat(beat, interval, name=f"heartbeat-{ids[0]}", first=first)
