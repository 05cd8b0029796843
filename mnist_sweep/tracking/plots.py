"""Figures of one run: the notebook's plots, made once and saved as artifacts.

Each function returns a matplotlib `Figure` built without pyplot: no global figure registry to
leak figures into across a sweep's trials, nothing to close, and no GUI backend to pick (saving a
bare Figure renders with Agg, so runs work on headless machines and in worker processes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def learning_curves(history: Mapping[str, Sequence[float]]) -> Figure:
    """Accuracy and loss per epoch, train vs validation (the notebook's Task 2)."""
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
        epochs = np.arange(1, len(history.get(key, [])) + 1)
        ax.plot(epochs, history.get(key, []), "o-", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "o-", label=f"validation {key}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(f"{key} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.92, wspace=0.22)
    return fig


def confusion(counts: np.ndarray) -> Figure:
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")  # no colorbar: every cell carries its count
    for (i, j), n in np.ndenumerate(counts):
        color = "white" if n > counts.max() / 2 else "black"
        ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("confusion matrix (test set)")
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.1, top=0.94)
    return fig


def misclassified_gallery(
    images: np.ndarray, labels: np.ndarray, probs: np.ndarray, numbers: Sequence[int],
    columns: int = 4,
) -> Figure:
    """Each wrong digit beside the model's output bars (the notebook's `PlotModelOutput`).

    A grid of panels on one axes: the digit, its ten output bars to the right (green = the label,
    red = the model's answer). Every sweep trial draws this, so it is drawn as three artists, not
    per digit: the digits as one mosaic image, all bars as one collection, the captions as text.
    It takes only the digits shown (`numbers`: their places in the test set, for the captions),
    so a run hands a few kilobytes, not the test set, to the process that draws it.
    """
    n = len(numbers)
    rows = max(1, -(-n // columns))
    cell_w, cell_h = 2.6, 1.45  # panel size in data units: digit 1x1, bars 1.3 wide
    inch = 0.8  # per data unit, the same both ways so digits stay square
    width, height = columns * cell_w * inch, (rows * cell_h + 0.3) * inch
    fig = Figure(figsize=(width + 0.2, height + 0.4))
    ax = fig.add_axes((0.1 / (width + 0.2), 0.0, width / (width + 0.2), height / (height + 0.4)))
    ax.set_axis_off()
    ax.set_xlim(-0.05, columns * cell_w)
    ax.set_ylim(rows * cell_h, -0.3)  # row 0 on top
    if not n:
        ax.text(columns * cell_w / 2, cell_h / 2, "no misclassified test digits", ha="center")
    else:
        ax.imshow(_mosaic(images, columns, rows, cell_w, cell_h), cmap="gray_r",
                  extent=(0, columns * cell_w, rows * cell_h, 0), interpolation="nearest",
                  vmin=0, vmax=float(max(1.0, np.max(images))))
        ax.add_collection(_output_bars(labels, probs, columns, cell_w, cell_h))
        for k, number in enumerate(numbers):
            x0, y0 = (k % columns) * cell_w, (k // columns) * cell_h
            ax.text(x0, y0 - 0.05, f"test #{number}: label {int(labels[k])}, "
                    f"model {int(np.argmax(probs[k]))}", fontsize=7)
    ax.set_aspect("auto")  # imshow asks for "equal", which would shrink the grid to fit
    fig.suptitle("misclassified test digits: output bars 0-9 (green = label, red = model)",
                 fontsize=9, y=1 - 0.1 / fig.get_figheight(), va="top")
    return fig


_PX = 28  # mosaic pixels per data unit: one MNIST pixel each


def _mosaic(images: np.ndarray, columns: int, rows: int, cell_w: float,
            cell_h: float) -> np.ma.MaskedArray:
    """The digits pasted into one image at their panels; masked (transparent) elsewhere."""
    shape = (round(rows * cell_h * _PX), round(columns * cell_w * _PX))
    mosaic = np.ma.array(np.zeros(shape, np.float32), mask=np.ones(shape, bool))
    for k, image in enumerate(images):
        top, left = round((k // columns) * cell_h * _PX), round((k % columns) * cell_w * _PX)
        mosaic[top : top + _PX, left : left + _PX] = image.reshape(_PX, _PX)
    return mosaic


def _output_bars(labels: np.ndarray, probs: np.ndarray, columns: int, cell_w: float,
                 cell_h: float) -> PolyCollection:
    """Ten bars per panel growing up from the digit's baseline, with a grey baseline under them."""
    polygons, colors = [], []
    for k, (label, p_k) in enumerate(zip(labels, probs, strict=True)):
        x0, base = (k % columns) * cell_w + 1.12, (k // columns) * cell_h + 1
        predicted, label = int(np.argmax(p_k)), int(label)
        polygons.append([(x0 - 0.02, base), (x0 + 1.33, base), (x0 + 1.33, base + 0.01),
                         (x0 - 0.02, base + 0.01)])
        colors.append("0.6")
        for digit, p in enumerate(np.asarray(p_k, float)):
            left = x0 + 0.13 * digit
            polygons.append([(left, base), (left + 0.11, base), (left + 0.11, base - p),
                             (left, base - p)])
            colors.append("tab:green" if digit == label else
                          "tab:red" if digit == predicted else "tab:blue")
    return PolyCollection(polygons, facecolors=colors, edgecolors="none")


def noise_accuracy(noise_accuracy: Mapping[float, float], clean: float) -> Figure:
    """Test accuracy vs noise factor f (the notebook's Task 6), f=0 being the clean set."""
    levels = [0.0, *sorted(noise_accuracy)]
    values = [clean, *(noise_accuracy[f] for f in sorted(noise_accuracy))]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(levels, values, "o-")
    ax.set_xlabel("noise factor f  (x + f * U[0, 1))")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy vs test noise")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.92)
    return fig
