"""MLflow writes that outlive a tracking-server outage: ordered, retried with backoff, spooled.

MLflow's client retries each request a few times and then raises; a sweep that logs through it
directly either dies on an outage or, worse, counts the wait as work. Writes that need no answer
go through an `Outbox` instead: a background thread sends them in order, waits out transient
failures with exponential backoff, and `close()` waits up to `patience` seconds for the rest.
What still could not be sent is written to a spool file (JSON lines) and sent by `replay()` the
next time a sweep or run opens that folder: delivered late, never silently dropped. A write the
server *rejects* (bad value, unknown run) is not retried; it is logged as a warning.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl.retry import patience, retry_call, short, transient

log = logging.getLogger(__name__)

Send = Callable[[str, list[Any]], None]


class Outbox:
    """An ordered queue of (op, args) writes, sent by one background thread."""

    def __init__(self, send: Send, spool_dir: str | os.PathLike[str] | None = None,
                 name: str = "mlflow") -> None:
        self._send = send
        self._spool_dir = Path(spool_dir) if spool_dir else None
        self._name = name
        self._items: deque[tuple[str, list[Any]]] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._down = False  # the last send failed: say so when one gets through again
        atexit.register(self.close)

    def put(self, op: str, *args: Any) -> None:
        """Queue a write; it is sent after every write queued before it."""
        with self._cond:
            self._items.append((op, list(args)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"{self._name}-outbox",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._items) + int(self._busy)

    def drain(self, wait: float) -> bool:
        """Wait up to `wait` s until everything queued is sent; True when it was."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._items or self._busy), timeout=wait)

    def close(self, wait: float | None = None) -> Path | None:
        """Drain (up to `wait`, default patience); spool what is left. Returns the spool file."""
        if self._closed:
            return None
        wait = patience() if wait is None else wait
        # a healthy store takes well under a second: only a real wait is worth a word
        if self.drain(min(wait, 2.0)):
            self._closed = True
            return None
        log.warning("waiting up to %.0f s to deliver %d %s write(s) (the server is not "
                    "answering)", wait, self.pending(), self._name)
        if self.drain(wait):
            self._closed = True
            return None
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
        return self._spool(left)

    def _spool(self, items: list[tuple[str, list[Any]]]) -> Path | None:
        if not items:
            return None
        if self._spool_dir is None:
            log.error("%d %s write(s) could not be delivered and are lost: %s", len(items),
                      self._name, [op for op, _ in items])
            return None
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        path = self._spool_dir / f"outbox-{os.getpid()}-{time.time_ns()}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for op, args in items:
                f.write(json.dumps({"op": op, "args": args}, default=str) + "\n")
        log.warning("%d %s write(s) could not be delivered (server unreachable): saved in %s; "
                    "they are sent when a sweep or run next opens that folder", len(items),
                    self._name, path)
        return path

    def replay(self) -> int:
        """Queue the writes spooled in `spool_dir` by earlier processes (each file taken once)."""
        if self._spool_dir is None or not self._spool_dir.is_dir():
            return 0
        count = 0
        for path in sorted(self._spool_dir.glob("outbox-*.jsonl")):
            mine = path.with_suffix(f".sending-{os.getpid()}")
            try:
                path.rename(mine)  # atomic: two sweeps never send the same file
            except OSError:
                continue
            for line in mine.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                self.put(item["op"], *item["args"])
                count += 1
            mine.unlink()
        return count

    def _run(self) -> None:
        # a consumer (its retries are retry_call's): the Condition wakes it when an item comes
        while True:
            with self._cond:
                while not self._items:
                    self._busy = False
                    self._cond.notify_all()
                    if not self._cond.wait(60.0) and not self._items:
                        self._thread = None  # idle: the next put() starts a new thread
                        return
                op, args = self._items[0]
                self._busy = True
            try:  # waits out an outage for as long as it lasts: close() decides what to keep
                retry_call(functools.partial(self._send_unless_closed, op, args), op,
                           wait=math.inf, retry_if=transient, on_retry=self._unreachable)
            except Exception as e:
                log.warning("%s rejected %s: %s", self._name, op, short(e))
            if self._down:
                log.warning("%s reachable again: queued writes are being delivered", self._name)
                self._down = False
            with self._cond:
                with contextlib.suppress(IndexError):
                    self._items.popleft()
                self._busy = False
                self._cond.notify_all()

    def _send_unless_closed(self, op: str, args: list[Any]) -> None:
        """Once closed, what was not sent is in the spool, for a later replay: sending it here
        too would deliver it twice, and retrying it would keep a thread busy for good."""
        if not self._closed:
            self._send(op, args)

    def _unreachable(self, error: BaseException, attempt: int, pause: float) -> None:
        if not self._down:
            log.warning("%s unreachable (%s); writes are kept and retried", self._name,
                        short(error))
            self._down = True
