"""The pyfunc loader of mnist-sweep's logged models: MLflow's Keras loader, predicting quietly,
refusing input it cannot read.

MLflow's Keras wrapper calls `model.predict(data)`, which draws a Keras progress bar on every
call (a served model prints one per request). This loader returns the same wrapper with
`verbose=0`. It travels inside each logged model (its `code/` folder, on sys.path when the model
loads), so it imports only MLflow, Keras and NumPy: a model serves where mnist-sweep is not
installed.

The model takes raw digits (integers 0-255, as MNIST has them) and checks them itself, served or
not: its signature declares no input dtype, because `mlflow models serve` casts a request's JSON
numbers to that dtype before the model sees them (a uint8 input made digits pre-scaled to [0, 1]
all 0: blank images, answered without error). Unconverted, floats are seen and refused with an
INVALID_PARAMETER_VALUE error, which the scoring server answers with HTTP 400.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.keras.load import KerasModelWrapper
from mlflow.keras.load import _load_pyfunc as _keras_pyfunc
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE


class QuietKerasModel(KerasModelWrapper):
    def get_model_call_method(self) -> Any:
        if self.save_exported_model:
            return self.model.serve
        return functools.partial(self.model.predict, verbose=0)

    def predict(self, data: Any, **kwargs: Any) -> Any:
        shape = tuple(getattr(self.model, "input_shape", (None, 28, 28))[1:])
        return super().predict(raw_digits(data, shape), **kwargs)


def raw_digits(data: Any, shape: tuple[int, ...] = (28, 28)) -> np.ndarray:
    """`data` as uint8 digits, or MlflowException naming what the model expects and what came.

    Floats are refused whatever their values (images scaled to [0, 1] are floats; a digit as
    12.0 is a float too: one rule, the same in Python and over HTTP)."""
    x = np.asarray(data) if isinstance(data, (list, tuple)) else data
    if not isinstance(x, np.ndarray):
        problem = f"a {type(data).__name__}"
    elif x.shape[1:] != shape or x.ndim != len(shape) + 1:
        problem = f"shape {x.shape}"
    elif x.dtype.kind not in "ui":
        span = f" in [{x.min():g}, {x.max():g}]" if x.size and x.dtype.kind == "f" else ""
        problem = f"{x.dtype} values{span}"
    elif x.size and (x.min() < 0 or x.max() > 255):
        problem = f"values in [{x.min()}, {x.max()}]"
    else:
        return x.astype(np.uint8, copy=False)
    expected = ", ".join(str(n) for n in shape)
    raise MlflowException(
        f"this model expects raw digits: integers 0-255 (uint8), shape (n, {expected}); got "
        f"{problem}", error_code=INVALID_PARAMETER_VALUE)


def _load_pyfunc(path: str) -> QuietKerasModel:
    wrapper = _keras_pyfunc(path)
    return QuietKerasModel(wrapper.model, wrapper.signature, wrapper.save_exported_model)
