"""Training curves and confusion-matrix images (matplotlib, an optional extra).

Without matplotlib each function prints a note and returns None instead of failing:
install it with ``pip install "cnnframe[plot]"``.
"""
import os
import sys

import numpy as np

from cnnframe._files import atomic_write

_NOTE = ("note: matplotlib is not installed, so {what} was not drawn "
         "(pip install \"cnnframe[plot]\" to get it)")


def _pyplot(what):
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        print(_NOTE.format(what=what), file=sys.stderr)
        return None
    return plt


def _save(fig, plt, path):
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return os.fspath(path)


def plot_curves(history, path, metric="accuracy"):
    """Loss and `metric` per epoch (train and, when present, validation) -> PNG at `path`.

    Parameters
    ----------
    history : History or sequence of row dicts (as written to metrics.csv)
    path : str or os.PathLike
    metric : str

    Returns
    -------
    str or None
        The path written, or None without matplotlib or without any epoch.
    """
    rows = list(getattr(history, "rows", history))
    if not rows:
        return None
    plt = _pyplot(path)
    if plt is None:
        return None
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], metric, metric)):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            col = prefix + key
            if col in rows[0]:
                vals = [r.get(col, np.nan) for r in rows]
                if key != "loss":
                    vals = [100 * v for v in vals]
                ax.plot(epochs, vals, style, ms=3, label="validation" if prefix else "train")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label + (" (%)" if key != "loss" else ""))
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("loss")
    axes[1].set_title(metric)
    return _save(fig, plt, path)


def plot_confusion(cm, classes, path, title="confusion matrix"):
    """A confusion matrix (rows: true class, columns: predicted) as a PNG, row-normalised colours.

    Returns
    -------
    str or None
        The path written, or None without matplotlib.
    """
    cm = np.asarray(cm)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(classes) != k:
        raise ValueError(f"plot_confusion: cm must be (K, K) with K = len(classes) = "
                         f"{len(classes)}, got {cm.shape}")
    plt = _pyplot(path)
    if plt is None:
        return None
    totals = np.maximum(cm.sum(axis=1, keepdims=True), 1)
    frac = cm / totals
    size = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, plt, path)
