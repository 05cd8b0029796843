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


def test_a_runs_images_are_logged_without_starting_mlflows_logging_queue(tracking_store, tmp_path):
    """`mlflow.log_image` logs asynchronously unless told otherwise, which starts MLflow's logging
    queue; ending the run then waits for that queue's idle poll to time out (up to 1 s, every
    trial: 45 s -> 33 s for 8 quickstart trials). The compared images are written before the call
    returns, and the queue stays idle."""
    from PIL import Image

    folder = tmp_path / "plots"
    folder.mkdir()
    for name in [*runs.COMPARED_IMAGES, "learning_curves.png"]:
        Image.new("RGB", (8, 8)).save(folder / name)
    with runs.start_run(tracking_store, "images", "r") as run:
        runs.log_plot_dir(folder)
        store = MlflowClient()._tracking_client.store  # the fluent API's, cached per URI
        assert store._async_logging_queue.is_idle()
    client = MlflowClient(tracking_store)
    assert len(client.list_artifacts(run.info.run_id, "images")) == 4  # a PNG and a preview each
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == [
        "plots/learning_curves.png"]
