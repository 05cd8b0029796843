"""Per-epoch checkpoints on real Keras trainings of MNIST slices: a run stopped after a
checkpoint and resumed ends as the uninterrupted run does (whole commands killed, stopped and
preempted: tests/test_preemption.py)."""

from __future__ import annotations

import contextlib

import numpy as np
import optuna
import pytest
from hydra_plugins.optuna_mlflow_sweeper._impl import interrupts

from mnist_sweep.data import mnist
from mnist_sweep.model import checkpoints
from mnist_sweep.model.checkpoint_store import FILE
from mnist_sweep.model.models import build_model
from mnist_sweep.model.training import fit

# Every piece of state a resume must bring back: dropout and augmentation (seed generators),
# batch norm (moving statistics), a cosine schedule (the optimizer's step count), early stopping
# (its counters and best weights).
STATEFUL = ["model=cnn", "data.limit_train=640", "data.val_size=500", "train.epochs=4",
            "train.batch_size=64", "train.seed=5", "model.conv.0.batch_norm=true",
            "model.conv.0.dropout=0.2", "model.hidden.0.dropout=0.2", "train.augment.rotation=10",
            "train.noise_augment=0.3", "train.lr_schedule.name=cosine",
            "train.early_stopping_patience=3"]


def _fit(cfg, store=None, stop_after=None):
    """(model, result, steps on_epoch saw); `stop_after`: ask to stop after that epoch."""
    splits = mnist.prepare(cfg.data)
    model = build_model(cfg.model, seed=cfg.train.seed, augment=cfg.train.augment,
                        noise=cfg.train.noise_augment)
    seen = []

    def on_epoch(step, metrics):
        seen.append((step, metrics))
        if step == stop_after:
            interrupts.terminating.set()  # what a SIGTERM to the sweep sets

    try:
        return model, fit(model, splits, cfg.train, on_epoch=on_epoch, checkpoints=store), seen
    finally:
        interrupts.terminating.clear()


@pytest.mark.slow
def test_a_resumed_fit_trains_only_the_rest_and_ends_as_the_uninterrupted_one(compose, tmp_path):
    cfg = compose(STATEFUL)
    whole_model, whole, _ = _fit(cfg)

    store = checkpoints.Store(tmp_path / "run", every=1, fingerprint="f")
    with pytest.raises(interrupts.Terminated):
        _fit(cfg, store, stop_after=2)
    assert store.load().epoch == 2

    model, resumed, seen = _fit(cfg, store)
    assert resumed.resumed_from_epoch == 2
    assert [step for step, _ in seen] == [1, 2, 3, 4]  # the saved epochs first, each once
    assert [m["val_accuracy"] for _, m in seen[:2]] == whole.history["val_accuracy"][:2]
    # the same epochs 3 and 4: same batches, same noise, same rates, same updates
    np.testing.assert_allclose(resumed.history["loss"], whole.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed.history["val_accuracy"], whole.history["val_accuracy"],
                               atol=1e-6)
    assert resumed.history["learning_rate"] == pytest.approx(whole.history["learning_rate"])
    assert resumed.weights_epoch == whole.weights_epoch
    for a, b in zip(model.get_weights(), whole_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_run_resumed_after_early_stopping_ended_it_trains_no_further(compose, tmp_path):
    cfg = compose(["data.limit_train=1000", "data.val_size=1000", "train.epochs=30",
                   "train.learning_rate=0.05", "train.early_stopping_patience=1"])
    store = checkpoints.Store(tmp_path / "run")
    _, first, _ = _fit(cfg, store)  # complete; fit leaves the checkpoint (the run removes it)
    assert first.epochs_run < 30 and store.load().epoch == first.epochs_run
    _, again, seen = _fit(cfg, store)
    assert again.resumed_from_epoch == first.epochs_run == again.epochs_run
    assert len(seen) == first.epochs_run  # the saved epochs, replayed; none trained
    assert again.weights_epoch == first.weights_epoch < first.epochs_run - 1


def test_a_checkpoint_is_replaced_whole_and_ignored_when_made_with_another_config(tmp_path):
    store = checkpoints.Store(tmp_path / "run", fingerprint="a")
    for epoch in (1, 2):
        store.save({"rows": [{"loss": 1.0}] * epoch}, {"model": [np.full(3, epoch)]})
    assert [p.name for p in (tmp_path / "run").iterdir()] == [FILE]  # no temporary left
    saved = store.load()
    assert saved.epoch == 2 and saved.group("model")[0].tolist() == [2, 2, 2]
    assert checkpoints.Store(store.location, fingerprint="b").load() is None  # another config's
    (tmp_path / "run" / FILE).write_bytes(b"torn")
    assert store.load() is None


@pytest.mark.parametrize(("error", "kept"), [
    (KeyboardInterrupt, True), (interrupts.Terminated, True), (SystemExit, True),
    (RuntimeError, False), (optuna.TrialPruned, False), (None, False),
])
def test_a_checkpoint_outlives_its_run_only_when_interrupted(tmp_path, error, kept):
    store = checkpoints.Store(tmp_path / "run")
    store.save({"rows": [{"loss": 1.0}]}, {})
    raised = None
    try:
        with checkpoints.kept_for_retry(store):
            if error is not None:
                raise error
    except BaseException as e:  # noqa: BLE001 (each kind is the test's parameter)
        raised = e
    assert type(raised) is error if error is not None else raised is None
    assert (tmp_path / "run").exists() == kept
    if isinstance(raised, KeyboardInterrupt):  # the line that says the run stopped
        assert f"epochs 1-1 saved in {tmp_path / 'run'}" in raised.__notes__[0]


def test_single_runs_checkpoint_only_when_asked_and_per_config(compose, tmp_path):
    assert checkpoints.for_run(compose([])) is None  # off outside a sweep by default
    on = ["train.checkpoint.enabled=true", f"train.checkpoint.dir={tmp_path}"]
    store = checkpoints.for_run(compose(on))
    assert store.location.startswith(f"{tmp_path}/run-")
    assert checkpoints.for_run(compose(on)).location == store.location  # the same command resumes
    assert checkpoints.for_run(compose([*on, "train.epochs=9"])).location != store.location
    assert checkpoints.for_run(compose([*on, "train.checkpoint.every=2"])).location == \
        store.location


def test_a_checkpoint_that_does_not_fit_the_model_is_one_warning_and_a_fresh_start(
    compose, tmp_path, caplog
):
    """A file that reads, made with this config, but holding a weight of another shape (edited,
    or mixed up with another run's): one line, then training from the first epoch."""
    cfg = compose(["data.limit_train=300", "data.val_size=100", "train.epochs=2"])
    store = checkpoints.Store(tmp_path / "run", fingerprint="f")
    _fit(cfg, store)
    saved = store.load()
    groups = {name: saved.group(name) for name in saved.meta["sizes"]}
    groups["model"][0] = np.zeros((3, 3), np.float32)  # the first kernel, of another shape
    store.save({k: v for k, v in saved.meta.items() if k not in ("sizes", "fingerprint")},
               groups)

    with caplog.at_level("WARNING"):
        _, again, seen = _fit(cfg, store)
    assert not again.resumed_from_epoch and again.epochs_run == 2 and len(seen) == 2
    # ours (TensorFlow may add a retracing warning of its own, after other tests in the process)
    [warning] = [r.getMessage() for r in caplog.records
                 if r.levelname == "WARNING" and r.name.startswith("mnist_sweep")]
    assert "does not fit this model" in warning and "\n" not in warning


def test_checkpoints_on_s3_are_replaced_whole_and_nothing_is_written_locally(
    s3_server, monkeypatch, tmp_path
):
    """A real S3-compatible server (moto's), reached as AWS is, through AWS_ENDPOINT_URL and
    the AWS_* credentials: the checkpoint is one object, replaced whole, read back, removed."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    store = checkpoints.Store(f"s3://{s3_server.BUCKET}/unit/run", fingerprint="a")
    assert store.load() is None
    for epoch in (1, 2):
        store.save({"rows": [{"loss": 1.0}] * epoch}, {"model": [np.full(3, epoch)]})
    assert s3_server.keys("unit/") == [f"unit/run/{FILE}"]  # no temporary left
    saved = store.load()
    assert saved.epoch == 2 and saved.group("model")[0].tolist() == [2, 2, 2]
    assert not list(tmp_path.rglob("*"))  # not a local folder named "s3:"
    with contextlib.suppress(BaseException), checkpoints.kept_for_retry(store):
        pass
    assert s3_server.keys("unit/") == []
