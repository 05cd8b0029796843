"""Figures of one run: the notebook's plots, made once and saved as artifacts.

Each function returns a matplotlib Figure; the caller logs and closes it. The Agg backend is
forced so runs work on headless machines and in worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curves(history: Mapping[str, Sequence[float]]) -> Figure:
    """Accuracy and loss per epoch, train vs validation (the notebook's Task 2)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
        epochs = np.arange(1, len(history.get(key, [])) + 1)
        ax.plot(epochs, history.get(key, []), "o-", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "o-", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(f"{key} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion(counts: np.ndarray) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 5.5))
    image = ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):
        color = "white" if n > counts.max() / 2 else "black"
        ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("confusion matrix (test set)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def misclassified_gallery(
    images: np.ndarray, labels: np.ndarray, probs: np.ndarray, indices: Sequence[int]
) -> Figure:
    """Each wrong digit beside the model's output bars (the notebook's `PlotModelOutput`)."""
    rows = max(1, len(indices))
    fig, axes = plt.subplots(rows, 2, figsize=(7, 2.0 * rows), squeeze=False)
    for row, index in enumerate(indices):
        img_ax, bar_ax = axes[row]
        img_ax.imshow(images[index].reshape(28, 28), cmap="gray_r")
        img_ax.set_axis_off()
        predicted = int(np.argmax(probs[index]))
        img_ax.set_title(f"test #{index}: label {labels[index]}, model {predicted}", fontsize=8)
        colors = ["tab:red" if d == predicted else "tab:blue" for d in range(10)]
        colors[int(labels[index])] = "tab:green"
        bar_ax.bar(range(10), probs[index], color=colors)
        bar_ax.set_xticks(range(10))
        bar_ax.set_ylim(0, 1)
        bar_ax.tick_params(labelsize=7)
    if not len(indices):
        axes[0, 0].set_axis_off()
        axes[0, 1].text(0.5, 0.5, "no misclassified test digits", ha="center")
    height = fig.get_figheight()
    fig.suptitle("misclassified test digits (green = label, red = model output)", fontsize=9,
                 y=1 - 0.12 / height, va="top")
    _row_layout(fig, rows)
    return fig


def _row_layout(fig: Figure, rows: int, row_gap_in: float = 0.45) -> None:
    """Fixed margins in inches for the gallery's identical rows.

    `tight_layout` measures every tick label of its 24 axes first, which took about a third of
    a trial's plotting time; the rows are all alike, so their spacing is known in advance (and
    the suptitle gets its own space, which tight_layout does not reserve).
    """
    height = fig.get_figheight()
    top, bottom = 1 - 0.6 / height, 0.3 / height
    axes_height = (height * (top - bottom) - (rows - 1) * row_gap_in) / rows
    fig.subplots_adjust(left=0.02, right=0.98, top=top, bottom=bottom, wspace=0.0,
                        hspace=row_gap_in / axes_height if rows > 1 else 0.0)


def noise_accuracy(noise_accuracy: Mapping[float, float], clean: float) -> Figure:
    """Test accuracy vs noise factor f (the notebook's Task 6), f=0 being the clean set."""
    levels = [0.0, *sorted(noise_accuracy)]
    values = [clean, *(noise_accuracy[f] for f in sorted(noise_accuracy))]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(levels, values, "o-")
    ax.set_xlabel("noise factor f  (x + f * U[0, 1))")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy vs test noise")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
