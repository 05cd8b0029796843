"""A logged model refuses input it cannot read, in Python and through MLflow's scoring server.

The model takes raw digits (uint8, 0-255, shape (n, 28, 28)). Digits pre-scaled to [0, 1] floats
were once answered as blank images by `mlflow models serve` (it cast the JSON numbers to the
signature's uint8: 0.7 became 0); now they get HTTP 400 naming the expected input.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import _wait, free_port, http_ready
from mlflow.exceptions import MlflowException

from mnist_sweep.data import mnist as data

EXPECTED = "integers 0-255 (uint8), shape (n, 28, 28)"


@pytest.fixture
def logged_model(tracking_store, compose):
    """The notebook's dense net, logged as every trial logs it: (its models:/ URI, digits)."""
    from mnist_sweep.model import backend

    cfg = compose([])
    backend.configure(cfg.train)
    from mnist_sweep.model import models
    from mnist_sweep.tracking import runs

    digits = data.load_mnist().x_test[:4]
    model = models.serving_model(models.build_model(cfg.model, seed=0))
    previous = mlflow.get_tracking_uri()  # an earlier test may have set one: it beats the env
    mlflow.set_tracking_uri(tracking_store)
    try:
        with mlflow.start_run():
            model_id = runs.log_keras_model(model, digits, name="serving-test")
        yield f"models:/{model_id}", digits
    finally:
        mlflow.set_tracking_uri(previous)


def test_pyfunc_takes_raw_digits_and_refuses_floats_and_other_shapes(logged_model):
    uri, digits = logged_model
    loaded = mlflow.pyfunc.load_model(uri)
    probs = np.asarray(loaded.predict(digits))
    assert probs.shape == (4, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    # the same digits as int64 (as a JSON request brings them): the same answer
    assert np.allclose(np.asarray(loaded.predict(digits.astype(np.int64))), probs, atol=1e-6)
    for wrong, got in ((digits / 255.0, "float64 values in [0, 1]"),
                       (digits.astype(np.float32), "float32 values"),
                       (digits.reshape(4, 784), "shape (4, 784)"),
                       (digits.astype(np.int64) + 200, "values in [200, 455]")):
        with pytest.raises(MlflowException, match=r"expects raw digits") as refused:
            loaded.predict(wrong)
        assert EXPECTED in refused.value.message and got in refused.value.message


class ScoringServer:
    """`mlflow models serve` of one model on a free port, as the README serves the champion."""

    def __init__(self, uri: str, workdir: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = workdir / "serve.log"
        venv_bin = str(Path(sys.executable).parent)  # it runs `uvicorn`: an activated venv's PATH
        env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(Path(venv_bin) / "mlflow"), "models", "serve", "-m", uri,
                 "--env-manager", "local", "--host", "127.0.0.1",
                 "--port", self.url.rsplit(":", 1)[1]],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() ends its workers too
            )

    def ready(self) -> bool:
        return http_ready(self.proc, self.log, "mlflow models serve", f"{self.url}/ping")

    def predict(self, body: object) -> tuple[int, dict]:
        request = urllib.request.Request(f"{self.url}/invocations", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as refused:
            return refused.code, json.load(refused)

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            if self.proc.poll() is not None:
                return
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue


@pytest.mark.slow
def test_the_scoring_server_answers_raw_digits_and_refuses_what_it_cannot_read(
        logged_model, tmp_path):
    uri, digits = logged_model
    expected = np.asarray(mlflow.pyfunc.load_model(uri).predict(digits))
    server = ScoringServer(uri, tmp_path)
    try:
        _wait(server.ready, "mlflow models serve", 180)
        status, answer = server.predict({"inputs": digits.tolist()})
        assert status == 200, answer
        assert np.allclose(np.asarray(answer["predictions"]), expected, atol=1e-5)
        for wrong, got in (((digits / 255.0).tolist(), "float64 values in [0, 1]"),
                           (digits.reshape(4, 784).tolist(), "shape (4, 784)"),
                           ((digits.astype(int) + 200).tolist(), "values in [200, 455]")):
            status, answer = server.predict({"inputs": wrong})
            assert status == 400, answer
            assert EXPECTED in answer["message"] and got in answer["message"]
            assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    finally:
        server.stop()
