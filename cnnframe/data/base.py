"""The in-memory dataset every cnnframe dataset is: uint8 images, int64 labels, class names."""
import os
from pathlib import Path

import numpy as np


class DatasetError(ValueError):
    """A dataset file is malformed (truncated, wrong size, bad magic number, label out of range)."""


def default_cache_dir():
    """The cache directory: $CNNFRAME_CACHE, else ~/.cache/cnnframe."""
    return Path(os.environ.get("CNNFRAME_CACHE") or Path.home() / ".cache" / "cnnframe")


def default_data_root():
    """Where datasets live when no root is given: $CNNFRAME_DATA, else <cache dir>/datasets."""
    env = os.environ.get("CNNFRAME_DATA")
    return Path(env) if env else default_cache_dir() / "datasets"


def check_labels(labels, num_classes, source):
    """Raise DatasetError naming `source` if any label is outside [0, num_classes)."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        first = int(bad[0])
        raise DatasetError(f"{source}: label {int(labels[first])} at record {first} is out of "
                           f"range [0, {num_classes}) ({bad.size} bad labels in all)")


class ArrayDataset:
    """Images and labels held in memory; the base of every cnnframe dataset.

    Parameters
    ----------
    images : ndarray, uint8, shape (N, C, H, W)
    labels : ndarray of ints, shape (N,), each in [0, len(classes))
    classes : list of str
        Class names; label k names ``classes[k]``.

    Attributes
    ----------
    images : ndarray, uint8 (N, C, H, W), C-contiguous
    labels : ndarray, int64 (N,)
    classes : list of str

    Indexing with an int returns ``(image (C, H, W), label)``; with a slice or an index array it
    returns a new ArrayDataset holding that subset.
    """

    def __init__(self, images, labels, classes):
        images = np.ascontiguousarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise TypeError(f"images must be a uint8 array of shape (N, C, H, W), got dtype "
                            f"{images.dtype} and shape {images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must have shape ({images.shape[0]},) to match images "
                             f"{images.shape}, got {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        self.classes = [str(c) for c in classes]
        check_labels(labels, len(self.classes), type(self).__name__)
        self.images = images
        self.labels = labels.astype(np.int64)

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.images[index], int(self.labels[index])
        return ArrayDataset(self.images[index], self.labels[index], self.classes)

    @property
    def image_shape(self):
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def class_counts(self):
        """Images per class, as a dict class name -> count (every class, zero included)."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}

    def subset(self, indices):
        """A new ArrayDataset of the images at `indices` (an index array, slice or bool mask)."""
        return ArrayDataset(self.images[indices], self.labels[indices], self.classes)

    def split(self, fraction, seed=0):
        """Split randomly into two ArrayDatasets, the first holding round(fraction * N) images."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        order = np.random.default_rng(seed).permutation(len(self))
        k = int(round(fraction * len(self)))
        return self.subset(np.sort(order[:k])), self.subset(np.sort(order[k:]))

    def __repr__(self):
        return (f"{type(self).__name__}(n={len(self)}, image_shape={self.image_shape}, "
                f"classes={len(self.classes)})")
