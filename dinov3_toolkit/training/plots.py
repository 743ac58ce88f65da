"""The PNG plots of training and evaluation: the curves of a run, and what a metric's single number hides.

matplotlib is imported only when a plot is drawn, with the file-only Agg backend, so
that training and evaluation run without it and without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ..drawing import palette
from ..errors import MissingExtra

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MAX_AXIS_NAMES = 40  # beyond this many classes, names on the confusion matrix's axes are unreadable


def _pyplot() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingExtra("evaluation plots need matplotlib: pip install 'matplotlib>=3.5'") from e
    return plt


def _save(fig: Figure, path: Path) -> None:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def precision_recall(path: Path, recall: np.ndarray, mean: np.ndarray,
                     curves: Mapping[int, tuple[str, np.ndarray]]) -> None:
    """Interpolated precision against recall at IoU 0.5: the mean over classes, and ``curves``
    ({class index: (name, precision)}) in the class colours of the overlays."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    colours = palette(max(curves, default=0) + 1) / 255.0
    for k, (name, precision) in curves.items():
        ax.plot(recall, precision, color=colours[k], linewidth=1.2, label=f"{name} (AP50 {precision.mean():.3f})")
    ax.plot(recall, mean, color="black", linewidth=2.2, label=f"mean of all classes (mAP50 {mean.mean():.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def confusion_matrix(path: Path, confusion: np.ndarray, names: Sequence[str]) -> None:
    """The confusion matrix with each row (true class) divided by its pixel count: row k shows
    where class k's pixels went; class names on the axes for up to 40 classes."""
    plt = _pyplot()
    rows = confusion.sum(axis=1, keepdims=True)
    share = confusion / np.maximum(rows, 1)
    k = len(names)
    side = min(4 + 0.25 * k, 20) if k <= _MAX_AXIS_NAMES else 10
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(share, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's pixels")
    if k <= _MAX_AXIS_NAMES:
        ax.set_xticks(range(k), names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (rows normalised)")
    _save(fig, path)


def depth_histogram(path: Path, counts: np.ndarray, edges: np.ndarray, *, median_scaled: bool) -> None:
    """Pixel counts of predicted against true depth on log axes, cropped to the occupied bins, with
    the diagonal (perfect) and the delta1 band (within a factor 1.25)."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    occupied = np.flatnonzero(counts.sum(axis=1) + counts.sum(axis=0))
    low, high = edges[occupied[0]], edges[occupied[-1] + 1]
    fig, ax = plt.subplots(figsize=(6, 5))
    shown = np.ma.masked_equal(counts.T, 0)  # rows of the image: predicted depth
    mesh = ax.pcolormesh(edges, edges, shown, cmap="viridis", norm=LogNorm())
    fig.colorbar(mesh, ax=ax, label="pixels")
    line = np.array([low, high])
    ax.plot(line, line, color="black", linewidth=1.0, label="prediction = truth")
    for factor in (1.25, 1 / 1.25):
        ax.plot(line, line * factor, color="black", linewidth=0.8, linestyle="--")
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="true depth",
           ylabel="predicted depth" + (" (median-scaled)" if median_scaled else ""),
           title="Predicted against true depth (dashed: x1.25)")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def training_curves(path: Path, history: Sequence[Mapping], metrics: Sequence[str]) -> None:
    """Each training loss term (log scale) and each validation metric named in ``metrics``, per epoch
    (``train_log.jsonl``)."""
    plt = _pyplot()
    epochs = [entry["epoch"] for entry in history]
    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for part in history[0]["train"]:
        loss_ax.plot(epochs, [entry["train"][part] for entry in history], label=part)
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log")
    loss_ax.legend()
    for key in metrics:
        val_ax.plot(epochs, [entry["val"][key] for entry in history], label=key)
    val_ax.set(xlabel="epoch", ylabel="validation")
    val_ax.legend()
    _save(fig, path)


def error_histogram(path: Path, counts: np.ndarray, edges: np.ndarray, label: str) -> None:
    """Pixel counts per error bin, the last bin holding everything beyond it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge")
    ax.set(xlabel=label, ylabel="pixels", yscale="log" if counts.max() > 100 * max(counts.min(), 1) else "linear")
    _save(fig, path)
