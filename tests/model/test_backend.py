"""Backend and thread pools, chosen before Keras starts, in fresh processes as a trial worker."""

from __future__ import annotations

import json
import subprocess
import sys


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
