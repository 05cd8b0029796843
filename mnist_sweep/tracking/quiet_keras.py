"""The pyfunc loader of mnist-sweep's logged models: MLflow's Keras loader, predicting quietly.

MLflow's Keras wrapper calls `model.predict(data)`, which draws a Keras progress bar on every
call (a served model prints one per request). This loader returns the same wrapper with
`verbose=0`. It travels inside each logged model (its `code/` folder, on sys.path when the model
loads), so it imports only MLflow and Keras: a model serves where mnist-sweep is not installed.
"""

from __future__ import annotations

import functools
from typing import Any

from mlflow.keras.load import KerasModelWrapper
from mlflow.keras.load import _load_pyfunc as _keras_pyfunc


class QuietKerasModel(KerasModelWrapper):
    def get_model_call_method(self) -> Any:
        if self.save_exported_model:
            return self.model.serve
        return functools.partial(self.model.predict, verbose=0)


def _load_pyfunc(path: str) -> QuietKerasModel:
    wrapper = _keras_pyfunc(path)
    return QuietKerasModel(wrapper.model, wrapper.signature, wrapper.save_exported_model)
