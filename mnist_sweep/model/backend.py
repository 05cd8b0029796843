"""Choosing the Keras backend and its thread pools, which must happen before they first start.

Keras reads `KERAS_BACKEND` once, at import; a process that already imported it cannot switch, so
asking for another backend then is a config error rather than a silent fallback. Thread pools are
the same: TensorFlow sizes them when its runtime first starts (one thread per core by default), so
2 trials running side by side on 2 cores each start 2+2 threads. `train.intra_op_threads` /
`train.inter_op_threads` cap them per trial process; once TensorFlow has started, a different
value is a config error too (`tf.config.threading` refuses it), never silently ignored.

TensorFlow's C++ start-up on a machine without CUDA writes lines that look like failures (an
E-level "failed call to cuInit") straight to file descriptor 2, where neither TF_CPP_MIN_LOG_LEVEL
nor Python's logging reaches (tensorflow/tensorflow#100442), and on CPUs with oneDNN kernels an
I-level notice about their rounding, twice; `configure` starts TensorFlow with those lines left
out and every other line passed on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper.trial import ENV_CPUS

from mnist_sweep.config.schema import BACKENDS
from mnist_sweep.errors import ConfigError

# What TensorFlow's start-up prints when the machine has no GPU: notices, not errors.
NO_GPU_LINES = (b"absl::InitializeLog() is called", b"cudart_stub.cc", b"failed call to cuInit",
                b"Unable to register cu")
# What it prints, twice, on a CPU whose oneDNN kernels it uses (AVX-512 and the like): that they
# may round differently from the plain ones. A run repeats on the same machine either way.
ONEDNN_LINES = (b"oneDNN custom operations are on",)
NVIDIA_DRIVER = Path("/proc/driver/nvidia")  # there when an NVIDIA driver is loaded
FORWARD_WAIT_S = 5.0  # for the last lines of the block to be passed on


def configure(train: Mapping[str, Any]) -> None:
    """Backend then threads, from the checked `train` config: what a trial process calls first."""
    backend = train.get("backend", "tensorflow")
    select(backend)
    if backend == "tensorflow":
        share = worker_cpus()
        # only its start prints them: a warm worker's later trials need no pipe and thread
        started = "tensorflow" in sys.modules
        with native_lines_dropped(() if started else start_up_lines()):
            import tensorflow as tf

            set_tf_threads(train.get("intra_op_threads") or share,
                           train.get("inter_op_threads") or share)
            tf.config.list_physical_devices("GPU")  # where CUDA starts, or says it cannot


def start_up_lines() -> tuple[bytes, ...]:
    """The start-up lines to leave out: the no-GPU ones only where no NVIDIA driver is loaded,
    since a failed cuInit there is why training falls back to the CPU."""
    return ONEDNN_LINES + (() if NVIDIA_DRIVER.exists() else NO_GPU_LINES)


@contextlib.contextmanager
def native_lines_dropped(patterns: tuple[bytes, ...]) -> Iterator[None]:
    """File descriptor 2 (where C++ libraries write, past sys.stderr and logging) through a pipe
    for the block: each line is passed on as it comes, less those containing one of `patterns`.
    As it comes, so that a crash or a hang inside the block still shows its last words."""
    if not patterns:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, saved, patterns),
                                 name="native-stderr", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the forwarder reads to its end
        forwarder.join(FORWARD_WAIT_S)
        if not forwarder.is_alive():  # else a child holds the pipe: the forwarder still writes
            os.close(saved)


def _forward(read_end: int, out: int, patterns: tuple[bytes, ...]) -> None:
    with os.fdopen(read_end, "rb") as pipe:
        for line in pipe:
            if not any(p in line for p in patterns):
                os.write(out, line)


def select(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError("train.backend", backend, BACKENDS)
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        raise ConfigError(
            "train.backend", backend, "tensorflow (jax is not installed: pip install -e '.[jax]')"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow takes the whole memory of every GPU it sees when it starts, which leaves nothing
    # to a second trial process on the same GPU (parallel workers, a single run beside a sweep):
    # it grows its share as it needs instead (read when its GPUs start; `false` keeps the old way)
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    # A worker builds a new model per trial; tf.function's "retracing" warning is expected then.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if current != backend:
            raise ConfigError(
                "train.backend", backend, f"{current} (Keras is already loaded in this process)"
            )
        return
    os.environ["KERAS_BACKEND"] = backend


def worker_cpus() -> int | None:
    """The cores the sweeper gives each of its parallel workers (None: not a parallel worker).

    Its workers share the machine: TensorFlow's default of one thread per core would have N
    workers on N cores run N*N threads, and two CNN trials side by side were measured slower
    than one after the other that way.
    """
    value = os.environ.get(ENV_CPUS)
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def set_tf_threads(intra: int | None, inter: int | None) -> None:
    """Size TensorFlow's intra-op and inter-op pools (None = TensorFlow's default, one per core).

    `tf.config.threading` rather than TF_NUM_INTRAOP_THREADS: both work with TF 2.21 when set
    before the runtime starts, but only the API can tell a later, different request apart from
    a repeat of the same one.
    """
    import tensorflow as tf

    pools = tf.config.threading
    for key, value, getter, setter in (
        ("intra_op_threads", intra, pools.get_intra_op_parallelism_threads,
         pools.set_intra_op_parallelism_threads),
        ("inter_op_threads", inter, pools.get_inter_op_parallelism_threads,
         pools.set_inter_op_parallelism_threads),
    ):
        current = getter()
        if current == (value or 0):  # 0 = TensorFlow's default
            continue
        try:
            setter(value or 0)
        except RuntimeError:
            raise ConfigError(
                f"train.{key}", value, f"{current or None}, the value TensorFlow started with in "
                "this process (its thread pools are fixed per process)",
            ) from None


def tf_threads() -> dict[str, int]:
    """The pool sizes TensorFlow was asked for in this process (0 = its default)."""
    import tensorflow as tf

    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }
