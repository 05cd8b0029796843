"""Evaluation on real MNIST test digits with a really trained (briefly) notebook model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_sweep.data import mnist
from mnist_sweep.data.noise import noise_metric_name
from mnist_sweep.model import evaluation, models, training
from tests.helpers import compose_config


@pytest.fixture(scope="module")
def trained(mnist_cache):
    """The notebook's dense net after one epoch on 3000 images, and the prepared splits."""
    cfg = compose_config(["train.epochs=1", "data.limit_train=3000", "data.val_size=1000"])
    splits = mnist.prepare(cfg.data)
    model = models.build_model(cfg.model, seed=0)
    training.fit(model, splits, cfg.train, verbose=0)
    return model, splits, cfg


@pytest.mark.parametrize("batch_size", [2048, 3000, 20000])  # short last batch; one batch
def test_predict_equals_keras_predict(trained, batch_size):
    model, splits, _ = trained
    ours = models.predict(model, splits.x_test, batch_size)
    assert ours.shape == (len(splits.x_test), 10)
    keras_probs = model.predict(splits.x_test, batch_size=batch_size, verbose=0)
    np.testing.assert_allclose(ours, keras_probs, atol=1e-6)


def test_metrics_agree_with_keras_evaluate(trained):
    model, splits, cfg = trained
    ev = evaluation.evaluate_clean(model, splits.x_test, splits.y_test, cfg.eval.batch_size)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    keras_loss = float(loss_fn(splits.y_test, model.predict(splits.x_test, verbose=0)))
    assert ev.metrics["test_loss"] == pytest.approx(keras_loss, rel=1e-4)
    assert ev.metrics["test_accuracy"] == pytest.approx(
        float((ev.predictions == splits.y_test).mean()))
    assert 0.5 < ev.metrics["test_accuracy"] < 1.0  # learned something, not everything
    # per class: the confusion matrix' diagonal over its row sums
    counts = evaluation.confusion_matrix(splits.y_test, ev.predictions)
    assert counts.sum() == len(splits.y_test)
    assert counts.sum(axis=1).tolist() == np.bincount(splits.y_test, minlength=10).tolist()
    for digit in range(10):
        assert ev.metrics[f"test_accuracy_class_{digit}"] == pytest.approx(
            counts[digit, digit] / counts[digit].sum())


def test_noise_levels_are_named_with_g_and_hurt_accuracy(trained):
    model, splits, cfg = trained
    ev = cfg.eval
    clean = evaluation.evaluate_clean(model, splits.x_test, splits.y_test, ev.batch_size)
    noisy = evaluation.evaluate_noise(model, splits.x_test, splits.y_test, ev.noise_levels,
                                      ev.noise_seed, ev.batch_size)
    metrics = evaluation.noise_metrics(noisy)
    names = {noise_metric_name(f) for f in ev.noise_levels}
    assert names == {"test_accuracy_noise_0.25", "test_accuracy_noise_0.5",
                     "test_accuracy_noise_0.75", "test_accuracy_noise_1"}
    assert set(metrics) == names | {"test_accuracy_noise_mean"}
    assert metrics["test_accuracy_noise_1"] < clean.metrics["test_accuracy"]
    assert metrics["test_accuracy_noise_mean"] == pytest.approx(np.mean(list(noisy.values())))
    # the same seed gives the same noisy images, hence the same scores
    again = evaluation.evaluate_noise(model, splits.x_test, splits.y_test, ev.noise_levels,
                                      ev.noise_seed, ev.batch_size)
    assert again == noisy


def test_misclassified_are_the_first_wrong_ones_in_test_order(trained):
    model, splits, _ = trained
    predictions = models.predict(model, splits.x_test, 2048).argmax(axis=1)
    wrong = evaluation.misclassified(splits.y_test, predictions, 12)
    assert len(wrong) == 12 and list(wrong) == sorted(wrong)
    assert all(predictions[i] != splits.y_test[i] for i in wrong)
    assert all(predictions[i] == splits.y_test[i] for i in range(wrong[-1]) if i not in wrong)


def test_inference_batches_are_large_but_bounded_per_layer(trained):
    model, _, _ = trained
    # the dense net: the whole test set in two batches
    assert models.even_batch(10000, models.batch_rows(model, 10000)) == 5000
    wide = models.build_model({"family": "cnn", "hidden": [{"units": 16}], "conv": [
        {"filters": 32, "kernel": 3, "padding": "same", "activation": "relu"}]}, seed=0)
    rows = models.batch_rows(wide, 10000)
    assert 100 < rows < 1000
    assert rows * 28 * 28 * 32 * 4 <= models.LAYER_BYTES
    x = np.random.default_rng(0).random((rows + 7, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(models.predict(wide, x, 10000),
                               wide.predict(x, batch_size=256, verbose=0), atol=1e-5)


@pytest.mark.parametrize(("rows", "most", "size"), [
    (10000, 10000, 10000),  # one batch
    (10000, 8024, 5000),  # two equal batches, not 8,024 + a padded 1,976
    (5000, 8024, 5000),
    (10000, 250, 250),  # divides evenly: no padding
    (10000, 501, 500),
    (5000, 501, 500),  # the validation set shares the test set's shape
    (7, 3, 3),  # 3 + 3 + 1 padded by 2: fewer than one row per batch
    (1, 250, 1),
])
def test_even_batch_splits_rows_into_the_fewest_nearly_equal_batches(rows, most, size):
    assert models.even_batch(rows, most) == size
