"""The run's figures render from real data to PNG, without pyplot state left behind."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from mnist_sweep.data import mnist
from mnist_sweep.model import evaluation
from mnist_sweep.tracking import plots


@pytest.fixture(scope="module")
def test_set(mnist_cache):
    from omegaconf import OmegaConf

    splits = mnist.prepare(OmegaConf.create({"val_size": 5000, "limit_train": 100}))
    return splits.x_test, splits.y_test


def _png_size(fig) -> tuple[int, int]:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return Image.open(io.BytesIO(buffer.getvalue())).size


def test_each_figure_renders_to_a_png(test_set):
    x, y = test_set
    open_before = plt.get_fignums()  # pyplot's, of other tests in this process
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=len(y)).astype(np.float32)
    history = {k: list(rng.random(3)) for k in ("accuracy", "loss", "val_accuracy", "val_loss")}
    wrong = evaluation.misclassified(y, probs.argmax(axis=1), 12)
    figures = [
        plots.learning_curves(history),
        plots.confusion(evaluation.confusion_matrix(y, probs.argmax(axis=1))),
        plots.misclassified_gallery(x[wrong], y[wrong], probs[wrong], wrong.tolist()),
        plots.misclassified_gallery(x[:0], y[:0], probs[:0], []),  # a perfect model: a note
        plots.noise_accuracy({0.25: 0.9, 1.0: 0.6}, clean=0.95),
    ]
    for fig in figures:
        width, height = _png_size(fig)
        assert width > 300 and height > 150
    # built without pyplot: safe anywhere, nothing to close
    assert plt.get_fignums() == open_before


def test_gallery_grows_by_rows_of_four(test_set):
    x, y = test_set
    probs = np.eye(10, dtype=np.float32)[(y + 1) % 10]  # every digit wrong
    heights = [plots.misclassified_gallery(x[:n], y[:n], probs[:n], range(n)).get_figheight()
               for n in (4, 8, 12)]
    assert heights[0] < heights[1] < heights[2]


def test_learning_curves_mark_whole_epochs(test_set):
    fig = plots.learning_curves({"accuracy": [0.5, 0.7, 0.8], "loss": [1.0, 0.6, 0.5]})
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)
