"""Choosing the Keras backend, which must happen before Keras is first imported.

Keras reads `KERAS_BACKEND` once, at import; a process that already imported it cannot switch, so
asking for another backend then is a config error rather than a silent fallback.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

from mnist_sweep.errors import ConfigError

BACKENDS = ("tensorflow", "jax")


def select(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError("train.backend", backend, BACKENDS)
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        raise ConfigError(
            "train.backend", backend, "tensorflow (jax is not installed: pip install -e '.[jax]')"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
