"""Backend and thread pools, chosen before Keras starts, in fresh processes as a trial worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from mnist_sweep.model import backend


@pytest.mark.slow  # a fresh process importing TensorFlow (6 s)
def test_thread_settings_reach_tensorflow_and_are_fixed_per_process():
    """In a fresh process (as a trial worker): applied before TensorFlow starts, then fixed."""
    script = """
import json
from mnist_sweep.model import backend
from mnist_sweep.errors import ConfigError
backend.configure({"backend": "tensorflow", "intra_op_threads": 1, "inter_op_threads": 2})
import tensorflow as tf
tf.constant(1.0) + 1  # starts the runtime
applied = backend.tf_threads()
backend.configure({"backend": "tensorflow", "intra_op_threads": 1, "inter_op_threads": 2})
try:
    backend.configure({"backend": "tensorflow", "intra_op_threads": 2, "inter_op_threads": 2})
    refused = None
except ConfigError as exc:
    refused = exc.key
print(json.dumps({"applied": applied, "refused": refused}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["applied"] == {"intra_op_threads": 1, "inter_op_threads": 2}
    assert out["refused"] == "train.intra_op_threads"
    # TensorFlow started by configure: no "failed call to cuInit", no oneDNN notice and the like
    assert not [line for line in proc.stderr.splitlines()
                if any(p.decode() in line for p in backend.start_up_lines())], proc.stderr[-3000:]


@pytest.mark.parametrize(("before", "after"), [(None, "true"), ("false", "false")])
def test_tensorflow_grows_its_gpu_memory_unless_told_otherwise(monkeypatch, before, after):
    """Else the first trial process on a GPU takes all its memory and a second one fails."""
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # select() sets it: put back afterwards
    if before is None:
        monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    else:
        monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", before)
    backend.select("tensorflow")
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == after


def test_native_lines_dropped_keeps_every_other_line_in_order(capfdbinary):
    with backend.native_lines_dropped(backend.NO_GPU_LINES):
        os.write(2, b"I0000 00:00:1.0 7 cudart_stub.cc:31] Could not find cuda drivers on your "
                    b"machine, GPU will not be used.\n")
        os.write(2, b"a line from C++ \xff\n")  # not UTF-8: passed on as it is
        os.write(2, b"another\n")
        os.write(2, b"E0000 00:00:1.0 7 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
    os.write(2, b"after\n")
    assert capfdbinary.readouterr().err == b"a line from C++ \xff\nanother\nafter\n"


def test_native_lines_dropped_passes_lines_on_as_they_come(capfd):
    """Not only at the end: a block that crashes the process or hangs still shows its lines."""
    with backend.native_lines_dropped((b"noise",)):
        os.write(2, b"noise\nwhy it is stuck\n")
        deadline, seen = time.monotonic() + 10, ""
        while "why it is stuck" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
            seen += capfd.readouterr().err
        assert seen == "why it is stuck\n"


def test_native_lines_dropped_passes_the_lines_on_when_the_block_raises(capfd):
    try:
        with backend.native_lines_dropped((b"noise",)):
            os.write(2, b"noise\nwhy it failed\n")
            raise ValueError("import failed")
    except ValueError:
        pass
    assert capfd.readouterr().err == "why it failed\n"


@pytest.mark.parametrize(("driver", "dropped"), [
    (False, backend.ONEDNN_LINES + backend.NO_GPU_LINES),
    (True, backend.ONEDNN_LINES),
])
def test_start_up_lines_are_kept_where_an_nvidia_driver_is_loaded(
    driver, dropped, tmp_path, monkeypatch
):
    """With a driver, "failed call to cuInit" says why training fell back to the CPU."""
    if driver:
        (tmp_path / "nvidia").mkdir()
    monkeypatch.setattr(backend, "NVIDIA_DRIVER", tmp_path / "nvidia")
    assert backend.start_up_lines() == dropped
