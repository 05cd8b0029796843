"""The notebook's noise, `x + f*U[0,1)`, for the noisy test and validation sets (noise-augmented
training draws its own inside the model: models.RandomUniformNoise).

Seeded draws are made once per process and shared read-only: every trial of a sweep evaluates on
the same noisy test images, and drawing 4 x 7.8M uniforms took half of a trial's evaluation time.
"""

from __future__ import annotations

import functools

import numpy as np


def add_noise(x: np.ndarray, f: float, seed: int | None = None) -> np.ndarray:
    """The notebook's AddNoise, x + f*U[0,1) as float32; seeded so noisy scores are repeatable."""
    x = np.asarray(x, dtype=np.float32)
    return x + np.float32(f) * uniform_noise(x.shape, seed)


def uniform_noise(shape: tuple[int, ...], seed: int | None) -> np.ndarray:
    """U[0,1) float32 of `shape`. One seeded draw serves every noise level, as in the notebook,
    where each level's fresh generator with the same seed drew the same numbers."""
    if seed is None:
        return np.random.default_rng().random(shape, dtype=np.float32)
    return _seeded_uniform(tuple(shape), int(seed))


@functools.lru_cache(maxsize=2)  # the test set's and the validation set's
def _seeded_uniform(shape: tuple[int, ...], seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).random(shape, dtype=np.float32)
    noise.flags.writeable = False
    return noise


def noise_metric_name(f: float, split: str = "test") -> str:
    """`<split>_accuracy_noise_<f:g>`: 1.0 -> test_accuracy_noise_1, 0.25 -> ..._0.25."""
    return f"{split}_accuracy_noise_{f:g}"
