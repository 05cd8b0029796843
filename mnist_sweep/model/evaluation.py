"""Test-set evaluation: clean, per class, and under the notebook's uniform noise.

One batched prediction per test set gives everything (accuracy, loss, confusion, the misclassified
digits), instead of an `evaluate` plus a `predict` per question as in the notebook. The clean set
and the noisy sets are two steps, so a caller can start on the clean results (the figures, drawn in
another process) before the noisy sets are predicted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_sweep.data.mnist import NUM_CLASSES
from mnist_sweep.data.noise import add_noise, noise_metric_name
from mnist_sweep.model.models import predict


@dataclass
class Clean:
    metrics: dict[str, float]
    probabilities: np.ndarray  # (N, 10)

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def evaluate_clean(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int) -> Clean:
    """Accuracy, loss and per-digit accuracy on the clean test set."""
    probs = predict(model, x, batch_size)
    metrics = {"test_accuracy": accuracy(probs, y), "test_loss": cross_entropy(probs, y)}
    predictions = probs.argmax(axis=1)
    for digit in range(NUM_CLASSES):
        mask = y == digit
        if mask.any():
            metrics[f"test_accuracy_class_{digit}"] = float((predictions[mask] == digit).mean())
    return Clean(metrics, probs)


def evaluate_noise(
    model: Any, x: np.ndarray, y: np.ndarray, levels: Iterable[float], seed: int | None,
    batch_size: int,
) -> dict[float, float]:
    """Accuracy at each noise level f (x + f*U[0,1)); one seed, so every model sees the same
    noisy images."""
    return {
        float(f): accuracy(predict(model, add_noise(x, float(f), seed=seed), batch_size), y)
        for f in levels
    }


def noise_metrics(noise_accuracy: dict[float, float], split: str = "test") -> dict[str, float]:
    """`<split>_accuracy_noise_<f>` per level and their mean (`<split>_accuracy_noise_mean`)."""
    metrics = {noise_metric_name(f, split): acc for f, acc in noise_accuracy.items()}
    if noise_accuracy:
        metrics[f"{split}_accuracy_noise_mean"] = float(np.mean(list(noise_accuracy.values())))
    return metrics


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
