"""The notebook's noise x + f*U[0,1) on real MNIST test digits."""

import numpy as np

from mnist_sweep.data import mnist
from mnist_sweep.data.noise import add_noise, noise_metric_name, uniform_noise


def test_add_noise_is_seeded_bounded_and_keeps_the_shape(mnist_cache):
    x = mnist.prepare_splits().x_test[:50]
    noisy = add_noise(x, 0.5, seed=3)
    assert noisy.dtype == np.float32 and noisy.shape == x.shape
    assert np.array_equal(noisy, add_noise(x, 0.5, seed=3))
    assert not np.array_equal(noisy, add_noise(x, 0.5, seed=4))
    added = noisy - x
    assert added.min() >= 0.0 and added.max() < 0.5 and added.max() > 0.45
    for shape in [(7,), (2, 3), (2, 3, 4, 5)]:
        assert add_noise(np.zeros(shape), 1.0, seed=0).shape == shape
    assert np.array_equal(add_noise(x, 0.0, seed=None), x)


def test_seeded_noise_is_the_notebook_formula_drawn_once(mnist_cache):
    x = mnist.prepare_splits().x_test[:500]
    expected = x + np.float32(0.75) * np.random.default_rng(7).random(x.shape, dtype=np.float32)
    assert np.array_equal(add_noise(x, 0.75, seed=7), expected)
    # every noise level of every trial shares one read-only draw instead of drawing again
    first, second = uniform_noise(x.shape, 7), uniform_noise(x.shape, 7)
    assert first is second and not first.flags.writeable


def test_noise_metric_names_print_levels_short():
    assert noise_metric_name(1.0) == "test_accuracy_noise_1"
    assert noise_metric_name(0.25) == "test_accuracy_noise_0.25"
