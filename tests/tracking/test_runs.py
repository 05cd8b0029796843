"""What a run records through mnist_sweep/tracking/runs.py, read back from a real MLflow store."""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from mnist_sweep.tracking import runs


def test_a_password_in_a_param_value_is_logged_masked(tracking_store):
    """`train.checkpoint.dir` may be a URL with a password (sftp://user:pw@host/...): the
    param says where checkpoints went, not the password."""
    with mlflow.start_run() as run:
        runs.log_params({"train.checkpoint.dir": "sftp://me:s3cret-pw@host/ckpt",
                         "train.epochs": 2, "train.checkpoint.every": None})
    params = MlflowClient(tracking_store).get_run(run.info.run_id).data.params
    assert params == {"train.checkpoint.dir": "sftp://me:***@host/ckpt", "train.epochs": "2",
                      "train.checkpoint.every": "null"}
