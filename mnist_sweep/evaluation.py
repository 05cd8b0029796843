"""Test-set evaluation: clean, per class, and under the notebook's uniform noise.

One batched `predict` per test set gives everything (accuracy, loss, confusion, the misclassified
digits), instead of an `evaluate` plus a `predict` per question as in the notebook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_sweep.data import add_noise
from mnist_sweep.errors import ConfigError, is_positive_int

NUM_CLASSES = 10
LAYER_BYTES = 256 * 2**20  # per layer output in one inference batch: bounds a batch's memory


@dataclass
class Evaluation:
    metrics: dict[str, float]
    probabilities: np.ndarray  # clean test set, (N, 10)
    noise_accuracy: dict[float, float]

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def validate_eval_config(ev: Mapping[str, Any]) -> None:
    levels = ev.get("noise_levels")
    if levels is None or isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence):
        raise ConfigError("eval.noise_levels", levels, "a list of floats >= 0")
    for f in levels:
        if not isinstance(f, (int, float)) or isinstance(f, bool) or f < 0:
            raise ConfigError("eval.noise_levels", list(levels), "a list of floats >= 0")
    if not is_positive_int(ev.get("batch_size")):
        raise ConfigError("eval.batch_size", ev.get("batch_size"), "a positive int")


def noise_metric_name(f: float) -> str:
    """`test_accuracy_noise_<f:g>`: 1.0 -> test_accuracy_noise_1, 0.25 -> ..._0.25."""
    return f"test_accuracy_noise_{f:g}"


def evaluate(
    model: Any, x_test: np.ndarray, y_test: np.ndarray, ev: Mapping[str, Any],
    on_clean: Callable[[np.ndarray], None] | None = None,
) -> Evaluation:
    """Clean and noisy test metrics; noise uses one seed so every model sees the same images.

    `on_clean(probabilities)` runs before the noisy sets are predicted, so whatever needs only
    the clean results (the figures drawn in another process) can start meanwhile.
    """
    probs = predict(model, x_test, ev["batch_size"])
    if on_clean is not None:
        on_clean(probs)
    metrics = {
        "test_accuracy": accuracy(probs, y_test),
        "test_loss": cross_entropy(probs, y_test),
    }
    predictions = probs.argmax(axis=1)
    for digit in range(NUM_CLASSES):
        mask = y_test == digit
        if mask.any():
            metrics[f"test_accuracy_class_{digit}"] = float((predictions[mask] == digit).mean())
    noise_accuracy: dict[float, float] = {}
    for f in ev["noise_levels"]:
        noisy = add_noise(x_test, float(f), seed=ev.get("noise_seed"))
        noisy_probs = predict(model, noisy, ev["batch_size"])
        noise_accuracy[float(f)] = accuracy(noisy_probs, y_test)
        metrics[noise_metric_name(float(f))] = noise_accuracy[float(f)]
    if noise_accuracy:
        metrics["test_accuracy_noise_mean"] = float(np.mean(list(noise_accuracy.values())))
    return Evaluation(metrics=metrics, probabilities=probs, noise_accuracy=noise_accuracy)


def predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """`model.predict` minus its per-call setup, every batch padded to one shape.

    Each `predict` call builds a data pipeline and a progress loop (~50 ms on 2 cores, more than
    the inference of 10,000 digits by the dense net), and a trial makes six of them. A short last
    batch would be a second input shape, traced and compiled again for every new model (~50 ms);
    padding it with zeros keeps one shape, and inference is per row, so the rows kept are the same.
    """
    size = min(batch_rows(model, batch_size), len(x))
    batches = []
    for i in range(0, len(x), size):
        batch = x[i : i + size]
        if len(batch) < size:
            batch = np.concatenate([batch, np.zeros((size - len(batch), *x.shape[1:]), x.dtype)])
        batches.append(np.asarray(model.predict_on_batch(batch))[: len(x) - i])
    return np.concatenate(batches) if batches else np.zeros((0, NUM_CLASSES), np.float32)


def batch_rows(model: Any, most: int) -> int:
    """Rows per inference batch: `most`, fewer where a layer's output would pass LAYER_BYTES.

    Few large batches cost less than many small ones (each call has a fixed cost, ~2 ms): the
    dense net predicts the five 10,000-digit test sets in 0.06 s as 5 batches, 0.11 s as 25.
    A wide CNN (32 feature maps of 28x28) would need 1 GB per layer for 10,000 rows, so it
    gets ~2,600.
    """
    widest = max((math.prod(layer.output.shape[1:]) for layer in model.layers), default=1)
    return max(1, min(most, LAYER_BYTES // (4 * widest)))


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == y).mean())


def cross_entropy(probs: np.ndarray, y: np.ndarray) -> float:
    """Keras' sparse categorical cross-entropy on probabilities (same clipping epsilon)."""
    picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return float(-np.log(picked).mean())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    counts = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(counts, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return counts


def misclassified(y_true: np.ndarray, y_pred: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the first `limit` wrong predictions, in test-set order (the notebook's
    `FindNextWrongPrediction`, called repeatedly)."""
    return np.flatnonzero(y_true != y_pred)[:limit]
