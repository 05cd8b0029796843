"""A Hydra app's command run inside the test's process: what `subprocess.run` of the same
command line would return, without a new interpreter importing Hydra, Optuna, MLflow (and, for
the app, TensorFlow) again: 2-3 s of CPU for the toy app and ~8 s for mnist-sweep, per command.

For a sweep that runs to its end. What needs a process of its own stays one: a command that is
killed, interrupted or preempted, that runs in a fresh venv or a namespace, that a test reads
while it runs. Around the command, everything it may change in the process is put back: the
environment, the working folder, sys.argv, the signal handlers, the logging handlers and levels,
MLflow's state and Hydra's global config; its output is what the file descriptors 1 and 2 got.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures.thread import _worker as futures_worker
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton

from hydra_plugins.optuna_mlflow_sweeper._testing.isolation import reset_mlflow
from hydra_plugins.optuna_mlflow_sweeper._testing.processes import descendants

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP]
_SCRIPTS: dict[Path, Callable[[], Any]] = {}


def script_main(path: Path) -> Callable[[], Any]:
    """The Hydra task of the script at `path` (the function `@hydra.main` wraps there), imported
    once; Hydra reads it as the script it is (its config folder beside it), not as a module of a
    package."""
    if path not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"_in_process_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        [main] = [f for f in vars(module).values()
                  if callable(f) and getattr(f, "__module__", None) == module.__name__
                  and hasattr(f, "__wrapped__")]
        task = main
        while hasattr(task, "__wrapped__"):
            task = task.__wrapped__
        task.__module__ = "__main__"  # how Hydra tells a script from a module
        _SCRIPTS[path] = main
    return _SCRIPTS[path]


@contextlib.contextmanager
def _output() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """File descriptors 1 and 2 (and sys.stdout/sys.stderr over them) into two strings."""
    out, err = io.StringIO(), io.StringIO()
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        os.dup2(fout.fileno(), 1), os.dup2(ferr.fileno(), 2)
        streams = sys.stdout, sys.stderr
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), line_buffering=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), line_buffering=True)
        try:
            yield out, err
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
                stream.close()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
            for f, text in ((fout, out), (ferr, err)):
                f.seek(0)
                text.write(f.read().decode(errors="replace"))


@contextlib.contextmanager
def _process_state(cwd: Path, env: Mapping[str, str], argv: Sequence[str], import_from: Path
                   ) -> Iterator[None]:
    """This process as a fresh one would start the command; everything put back after."""
    environ, folder, args, path = dict(os.environ), os.getcwd(), sys.argv, sys.path[:]
    handlers = {s: signal.getsignal(s) for s in SIGNALS}
    loggers = {name: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
               for name, lg in [("", logging.root), *logging.root.manager.loggerDict.items()]
               if isinstance(lg, logging.Logger)}
    # Hydra configures logging with dictConfig, which closes every handler it knows of: pytest's
    # own (its log capture) among them. Hidden from it, they stay open.
    known = logging._handlerList[:]  # type: ignore[attr-defined]
    logging._handlerList[:] = []  # type: ignore[attr-defined]
    reset_mlflow()  # first: forgetting a tracking URI unsets MLFLOW_TRACKING_URI
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = list(argv)
    sys.path.insert(0, str(import_from))
    GlobalHydra.instance().clear()
    Singleton._instances.pop(HydraConfig, None)  # type: ignore[arg-type]
    try:
        yield
    finally:
        reset_mlflow()
        GlobalHydra.instance().clear()
        gc.unfreeze()  # mnist-sweep freezes the heap it leaves to the exit
        sys.argv, sys.path[:] = args, path
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environ)
        for s, handler in handlers.items():
            signal.signal(s, handler)
        for lg in [logging.root, *logging.root.manager.loggerDict.values()]:
            if not isinstance(lg, logging.Logger):
                continue
            name = "" if lg is logging.root else lg.name
            for handler in lg.handlers[:]:
                if name not in loggers or handler not in loggers[name][0]:
                    lg.removeHandler(handler)
                    with contextlib.suppress(Exception):
                        handler.close()
            if name in loggers:
                lg.handlers[:], lg.level, lg.propagate, lg.disabled = loggers[name]
        logging._handlerList[:] = known  # type: ignore[attr-defined]


def run(main: Callable[[], Any], argv: Sequence[str], cwd: Path, env: Mapping[str, str],
        import_from: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`main()` as the command `argv` run in `cwd` with exactly `env`: its exit status (0, or
    what it passed to sys.exit) and what it printed. `import_from` is first on sys.path, as a
    script's folder is for the script (default: `cwd`, as for `python -m`)."""
    # A test session is a long-lived process: with the report's imports made once here, each
    # sweep draws its report itself (report_process.worth_a_helper), as in a notebook. Here, not
    # at the top: the quick tier, which runs no sweep, does not pay for them.
    importlib.import_module("optuna.visualization")
    code: int = 0
    threads, children = set(threading.enumerate()), set(descendants(os.getpid()))
    with _output() as (out, err), _process_state(cwd, env, argv, import_from or cwd):
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except Exception:  # uncaught: Python prints the trace and exits 1
            traceback.print_exc()
            code = 1
    _end_processes_left(children)
    _assert_left_nothing(threads, argv)
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


def _end_processes_left(children: set[int]) -> None:
    """End what the command started and left running (the joblib launcher's pool waits for more
    work), as its own exit would have: SIGTERM, then SIGKILL after 10 s. Not multiprocessing's
    resource trackers: this process's own, started once, they serve the next command too."""
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    if loky is not None and loky._executor is not None:  # joblib's own way: no broken pool left
        loky._executor.shutdown(wait=True, kill_workers=True)
    left = {pid for pid in set(descendants(os.getpid())) - children
            if b"resource_tracker" not in _cmdline(pid)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while (left := {pid for pid in left if _running(pid)}) and time.monotonic() < deadline:
            time.sleep(0.05)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie does not): a child of this process is reaped here."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _assert_left_nothing(threads: set[threading.Thread], argv: Sequence[str]) -> None:
    """No thread the command started still runs that would keep its process from exiting (5 s
    to end; an idle thread pool's workers, such as MLflow's, end at the exit), and no Ray driver:
    a command that joins a cluster needs a process of its own."""
    for thread in set(threading.enumerate()) - threads:
        if not thread.daemon and getattr(thread, "_target", None) is not futures_worker:
            thread.join(timeout=5)
            assert not thread.is_alive(), f"{thread.name} still runs after {list(argv)}"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        raise AssertionError(f"{list(argv)} joined a Ray cluster: run it in its own process")
