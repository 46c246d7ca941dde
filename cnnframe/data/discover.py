"""Find the datasets under some directories and count their images per split and class."""
import os
from pathlib import Path

import numpy as np

from cnnframe.data import cifar, mnist, shapes
from cnnframe.data.base import DatasetError, check_labels
from cnnframe.data.image_folder import scan_image_folder
from cnnframe.data.registry import SPLIT_DIRS


def _counts(labels, classes):
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(classes))
    return {"n": int(counts.sum()), "classes": dict(zip(classes, map(int, counts)))}


def _entry(name, fmt, location, read_split):
    entry = {"dataset": name, "format": fmt, "location": str(location), "splits": {}}
    try:
        for split in ("train", "test"):
            entry["splits"][split] = read_split(split == "train")
    except (DatasetError, OSError) as exc:
        entry["error"] = str(exc)
    return entry


def _cifar(path, fmt):
    return _entry("CIFAR-10", f"{fmt} {'directory' if path.is_dir() else 'archive'}", path,
                  lambda train: _counts(cifar.read_cifar10(path, fmt, train)[1], cifar.CLASSES))


def _image_folder(root):
    def read(train):
        split = next((root / d for d in SPLIT_DIRS[train] if (root / d).is_dir()), None)
        if split is None:
            return {"n": 0, "classes": {}}
        classes, files = scan_image_folder(split)
        return _counts([f[1] for f in files], classes)
    return _entry("image folder", "class-per-subfolder images", root, read)


def _idx(root):
    fashion = "fashion" in str(root).lower()
    classes = mnist.FASHION_CLASSES if fashion else mnist.MNIST_CLASSES

    def read(train):  # labels only: counting needs no pixels
        files = mnist.find_idx(root, train)
        if files is None:
            return {"n": 0, "classes": {}}
        labels = mnist.read_idx(files[1], 1)
        check_labels(labels, len(classes), str(files[1]))
        return _counts(labels, classes)
    return _entry("Fashion-MNIST" if fashion else "MNIST", "IDX", root, read)


def _shapes_entry():
    def read(train, n=None):
        n = 10000 if train else 2000
        k = len(shapes.CLASSES)
        return {"n": n, "classes": {c: n // k + (i < n % k) for i, c in enumerate(shapes.CLASSES)}}
    return _entry("Shapes", "built-in, procedural (default sizes)", "(no files)", read)


def _is_image_tree(path):
    split = path / "train"
    return split.is_dir() and any(e.is_dir() for e in os.scandir(split))


def scan(roots, include_builtin=True):
    """Every dataset found in `roots` or their immediate subdirectories.

    Returns
    -------
    list of dict
        Each {"dataset", "format", "location", "splits": {"train"|"test": {"n", "classes":
        {name: count}}}} plus "error" when a copy is unreadable (the message names the file).
    """
    found, seen = [], set()
    candidates = []
    for root in map(Path, roots):
        if root.is_dir():
            candidates.append(root)
            candidates += sorted(p for p in root.iterdir()
                                 if p.is_dir() and not p.name.startswith("."))
    if mnist.FASHION_DEFAULT_ROOT.is_dir():
        candidates.append(mnist.FASHION_DEFAULT_ROOT)
    for path in candidates:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        for fmt, copy in cifar.find_cifar10(path):
            if copy.resolve() not in seen:
                seen.add(copy.resolve())
                found.append(_cifar(copy, fmt))
        if _is_image_tree(path):
            found.append(_image_folder(path))
        if mnist.find_idx(path, True) or mnist.find_idx(path, False):
            found.append(_idx(path))
    if include_builtin:
        found.append(_shapes_entry())
    return found
