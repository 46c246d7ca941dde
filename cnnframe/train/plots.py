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
    """Loss and `metric` against epochs -> PNG at `path`.

    The x axis counts whole epochs.  Each finished epoch is a marker (training and, when
    present, validation); the per-step points of ``history.steps`` (training loss and
    metric over short runs of steps, at fractional epochs) are drawn as a thin line of
    small dots, so a run of one epoch, or one stopped within its first epoch, still shows
    a curve.

    Parameters
    ----------
    history : History, or a sequence of row dicts (as written to metrics.csv)
    path : str or os.PathLike
    metric : str or None
        The metric of the right panel; None draws the loss only.

    Returns
    -------
    str or None
        The path written, or None without matplotlib or without anything to draw.
    """
    rows = list(getattr(history, "rows", history))
    steps = list(getattr(history, "steps", ()))
    if not rows and not steps:
        return None
    plt = _pyplot(path)
    if plt is None:
        return None
    from matplotlib.ticker import MaxNLocator
    keys = ["loss"] + ([metric] if metric else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    last_epoch = max([r["epoch"] for r in rows] + [p["epoch"] for p in steps])
    for ax, key in zip(axes[0], keys):
        scale = 1 if key == "loss" else 100
        if steps and key in steps[0]:
            ax.plot([p["epoch"] for p in steps], [scale * p.get(key, np.nan) for p in steps],
                    ".-", ms=2, lw=0.6, alpha=0.45, color="C0", label="train (per step)")
        for prefix, style, color, label in (("", "o", "C0", "train (epoch)"),
                                            ("val_", "s-", "C1", "validation")):
            col = prefix + key
            if rows and col in rows[0]:
                vals = [scale * r.get(col, np.nan) for r in rows]
                ax.plot([r["epoch"] for r in rows], vals, style, ms=4, color=color, label=label)
        ax.set_xlim(0, max(1, np.ceil(last_epoch)))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key + (" (%)" if key != "loss" else ""))
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
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
