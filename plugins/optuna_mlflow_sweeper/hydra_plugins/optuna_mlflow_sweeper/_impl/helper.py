"""A helper process: `python -m MODULE`, started before it is needed so that its imports overlap
other work, fed pickled requests on stdin (a URL with a password never reaches its command line),
one JSON reply line each, read with a timeout. A helper that cannot start, dies or hangs is killed
and the caller does the work itself, so nothing is lost to it.

Why a process, not a thread: what it takes over (importing matplotlib, plotly or scikit-learn,
drawing, training) holds the GIL. One mechanism for the sweep report (`report_process.py`), a
run's figures and the notebook's reference models (the app's `render.py`, `references.py`).

    helper = Helper("pkg.module", {"MPLBACKEND": "agg"})
    helper.start()                      # early: the module's imports run meanwhile
    if helper.send(request):
        outcome = helper.reply(60)      # (True, value), (False, "Error: why"), None: dead or hung

and in `pkg.module`: `if __name__ == "__main__": sys.exit(serve(handle))`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import select
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

from hydra_plugins.optuna_mlflow_sweeper._impl.interrupts import heap_left_to_exit

log = logging.getLogger(__name__)


class Helper:
    """One helper process, restarted by `start()` once it has died or been killed."""

    def __init__(self, module: str, env: Mapping[str, str] | None = None,
                 drop_env: tuple[str, ...] = (), quiet: bool = False) -> None:
        self.module, self._env, self._drop, self._quiet = module, dict(env or {}), drop_env, quiet
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending = b""  # reply bytes read but not yet returned

    def start(self) -> bool:
        """Start it unless it is running; False if it cannot start."""
        if self._proc is not None and self._proc.poll() is None:
            return True
        self.kill()
        env = {k: v for k, v in {**os.environ, **self._env}.items() if k not in self._drop}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", self.module], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if self._quiet else None,
                start_new_session=True,  # Ctrl-C is the caller's alone: it decides what follows
                env=env)
        except OSError as e:
            log.info("helper %s not started (%s): its work is done here", self.module, e)
            self._proc = None
        return self._proc is not None

    def send(self, request: Any) -> bool:
        """Queue a request; False if the helper is gone (the caller does the work itself)."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        try:
            message = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)  # whole, or not
            stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
            stdin.write(message)
            stdin.flush()
            return True
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            return False

    def reply(self, timeout: float) -> tuple[bool, Any] | None:
        """The next request's outcome: (True, what it returned), (False, "Error: why"), or None
        if the helper died or did not answer within `timeout` s."""
        if self._proc is None:
            return None
        fd = self._proc.stdout.fileno()  # type: ignore[union-attr]
        # reading, not retrying: select's timeout is how a hung helper is told from a slow one
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        ok, value = json.loads(line)
        return bool(ok), value

    def stop(self, timeout: float = 5.0) -> None:
        """End of input: the helper exits; killed if it has not within `timeout` s."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=timeout)
        self.kill()

    def kill(self) -> None:
        """Now, whatever it was doing: its unread replies go with it, so none can be taken for
        the next request's."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]
        self._proc = None
        self._pending = b""


def serve(handle: Callable[[Any], Any], warm: Callable[[], None] = lambda: None) -> int:
    """The helper's side: `warm()` (its imports), then each request from stdin answered with
    `handle(request)` (or its error), until the caller closes the pipe.

    The reply pipe is a private copy of stdout; stdout itself goes to stderr, so nothing a
    library prints can be taken for a reply.
    """
    heap_left_to_exit()  # it exits once the caller is done with it
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    warm()
    while True:
        try:
            request = pickle.load(sys.stdin.buffer)
        except EOFError:  # the caller closed the pipe, or died
            return 0
        except Exception:  # a garbled stream: stop; the caller does what this did not
            return 1
        try:
            line = json.dumps([True, handle(request)])
        except Exception as exc:
            line = json.dumps([False, f"{type(exc).__name__}: {exc}"])
        replies.write(line + "\n")
        replies.flush()
