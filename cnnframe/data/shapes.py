"""Shapes: a built-in synthetic image set drawn procedurally (no files, works offline)."""
import numpy as np

from cnnframe.data.base import ArrayDataset

CLASSES = ["horizontal_bar", "vertical_bar", "diagonal_bar", "square", "circle", "triangle",
           "cross", "ring"]


def _rotate(dx, dy, angle):
    c, s = np.cos(angle), np.sin(angle)
    return dx * c + dy * s, -dx * s + dy * c


def _mask(kind, dx, dy, s, p):
    """Boolean masks (n, H, W) of shape `kind`; dx, dy are offsets from each centre, s the
    half-size and p a dict of per-image parameters, all broadcast as (n, 1, 1)."""
    u, v = _rotate(dx, dy, p["angle"])
    t = p["thickness"]
    if kind in ("horizontal_bar", "vertical_bar", "diagonal_bar"):
        return (np.abs(u) <= s) & (np.abs(v) <= t)
    if kind == "square":
        return (np.abs(u) <= 0.75 * s) & (np.abs(v) <= 0.75 * s)
    r2 = dx * dx + dy * dy
    if kind == "circle":
        return r2 <= (0.85 * s) ** 2
    if kind == "ring":
        return (r2 <= (0.9 * s) ** 2) & (r2 >= (0.9 * s - 2 * t - 1.0) ** 2)
    if kind == "triangle":
        v = v * p["flip"]  # apex up or down
        return (v >= -s) & (v <= 0.8 * s) & (np.abs(u) <= (v + s) * 0.53)
    if kind == "cross":
        return ((np.abs(u) <= s) & (np.abs(v) <= t)) | ((np.abs(v) <= s) & (np.abs(u) <= t))
    raise ValueError(f"unknown shape {kind!r}")


def draw_shapes(labels, size, rng):
    """Draw one image per label: uint8 (N, 3, size, size).

    Each image is a shape of class `labels[i]` at a random position, scale, small rotation and
    colour, on a random flat background (light-on-dark or dark-on-light), plus Gaussian noise.
    """
    n = len(labels)
    col = lambda lo, hi: rng.uniform(lo, hi, (n, 1, 1)).astype(np.float32)  # noqa: E731
    s = col(0.25, 0.42) * size
    cx = rng.uniform(s[:, 0, 0], size - 1 - s[:, 0, 0])[:, None, None].astype(np.float32)
    cy = rng.uniform(s[:, 0, 0], size - 1 - s[:, 0, 0])[:, None, None].astype(np.float32)
    base_angle = np.array([0.0, np.pi / 2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])[labels][:, None, None]
    diag = np.where(rng.random((n, 1, 1)) < 0.5, np.pi / 4, -np.pi / 4)
    base_angle = np.where((labels == 2)[:, None, None], diag, base_angle)
    params = {"angle": (base_angle + col(-0.2, 0.2)).astype(np.float32),
              "thickness": np.maximum(col(0.12, 0.22) * s, 1.0),
              "flip": np.where(rng.random((n, 1, 1)) < 0.5, 1.0, -1.0).astype(np.float32)}
    fg = rng.uniform(150, 255, (n, 3, 1, 1)).astype(np.float32)
    bg = rng.uniform(0, 105, (n, 3, 1, 1)).astype(np.float32)
    swap = rng.random((n, 1, 1, 1)) < 0.5
    fg, bg = np.where(swap, bg, fg), np.where(swap, fg, bg)
    sigma = col(4, 16)[:, None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, 3, size, size), np.uint8)
    for k, kind in enumerate(CLASSES):
        idx = np.flatnonzero(labels == k)
        if not idx.size:
            continue
        sub = {key: val[idx] for key, val in params.items()}
        mask = _mask(kind, xx - cx[idx], yy - cy[idx], s[idx], sub)[:, None]
        img = rng.standard_normal((idx.size, 3, size, size), dtype=np.float32)
        img *= sigma[idx]
        img += np.where(mask, fg[idx], bg[idx])
        images[idx] = np.clip(img, 0, 255, out=img).round(out=img)
    return images


class Shapes(ArrayDataset):
    """A built-in synthetic dataset of coloured shapes in 8 classes, drawn procedurally.

    Classes: horizontal_bar, vertical_bar, diagonal_bar, square, circle, triangle, cross, ring;
    each at a random position, scale, small rotation and colour, with Gaussian noise. The set is
    deterministic for (seed, train, size), and the train and test splits come from disjoint
    random streams. Classes are balanced (label i % 8, shuffled). A small CNN learns it to
    over 95% test accuracy within a minute on a CPU.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Image height and width in pixels (>= 12).
    seed : int
    train : bool
        Which split's random stream to draw from.

    Attributes
    ----------
    images : ndarray, uint8 (n, 3, size, size)
    labels : ndarray, int64 (n,)
    classes : list of str
    """

    def __init__(self, n=10000, size=32, seed=0, train=True):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        if not isinstance(size, (int, np.integer)) or size < 12:
            raise ValueError(f"size must be an int >= 12, got {size!r}")
        rng = np.random.default_rng([int(seed), 0 if train else 1, int(size)])
        labels = rng.permutation(np.arange(n) % len(CLASSES))
        images = (draw_shapes(labels, int(size), rng) if n
                  else np.zeros((0, 3, size, size), np.uint8))
        super().__init__(images, labels, CLASSES)
        self.seed, self.train, self.size = seed, train, size
