"""`cnnframe predict MODEL IMAGE|DIR...`: class probabilities for image files (needs Pillow).

A file that cannot be read is reported on stderr (one line naming it and why) and the
others are still classified; the exit status is then 1.
"""
import argparse
import os
import sys

import numpy as np

from cnnframe.cli._args import nonnegative_int, positive_int
from cnnframe.data.image_folder import MAX_PIXELS

HELP = "classify image files with a trained model (run folder or model file)"
# Extensions (lower case) of the files taken from a directory; files named one by one are
# read whatever their name.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CHUNK = 256  # images decoded and classified at a time


def add_parser(subparsers):
    p = subparsers.add_parser(
        "predict", help=HELP,
        description=HELP + ". A directory stands for its image files "
        f"({', '.join(IMAGE_EXTENSIONS)}), searched recursively, in sorted order. Files that "
        "cannot be read are reported and skipped; the exit status is then 1.")
    p.add_argument("model", help="a run folder (runs/NAME) or a model file with "
                   "preprocess.json next to it")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, JPEG, ...) or directories of them")
    p.add_argument("--top", type=positive_int, default=3, metavar="K",
                   help="classes shown per image")
    p.add_argument("--max-pixels", type=nonnegative_int, metavar="N", default=MAX_PIXELS,
                   help="refuse images with more than N pixels, checked from the file's header "
                   f"before decoding (default: {MAX_PIXELS:,}; 0: no limit but Pillow's own "
                   "decompression-bomb check)")
    p.add_argument("--threads", type=positive_int, metavar="N", default=argparse.SUPPRESS,
                   help="threads for kernels and BLAS")
    p.set_defaults(func=run)
    return p


def expand_paths(args):
    """The image files named by `args` (files and directories), and the problems found.

    Returns
    -------
    files : list of str
        Files as given, and each directory's image files (recursively, sorted, hidden
        files and folders left out; symbolic links to folders are not followed).
    problems : list of (str, str)
        (path, why) for arguments that do not exist or directories without images.
    """
    files, problems = [], []
    for arg in args:
        if os.path.isdir(arg):
            found = []
            for folder, dirs, names in os.walk(arg, onerror=lambda e: problems.append(
                    (e.filename, f"cannot list the folder ({e.strerror})"))):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found += [os.path.join(folder, n) for n in names if not n.startswith(".")
                          and n.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                problems.append((arg, "a folder without image files "
                                      f"({', '.join(IMAGE_EXTENSIONS)})"))
            files += sorted(found)
        elif os.path.isfile(arg):
            files.append(arg)
        else:
            problems.append((arg, "does not exist"))
    return files, problems


def _pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("cnnframe predict needs Pillow: pip install \"cnnframe[images]\"") \
            from exc
    return Image


def load_images(paths, image_shape, max_pixels=MAX_PIXELS, resize="stretch"):
    """uint8 (N, C, H, W) from image files, with the paths resized and the failures.

    Each file is read by `cnnframe.data.load_image`: converted to C channels (RGB or
    grayscale) and resized (bilinear) to H x W.

    Parameters
    ----------
    paths : list of str
    image_shape : (int, int, int)
        (C, H, W) the model takes; C is 1 or 3.
    max_pixels : int or None
        Files with more pixels are refused before decoding (None: no limit).
    resize : str
        How a file of another shape reaches H x W (ImageFolder's resize modes; a run trained
        with data.image_size records its own in preprocess.json).

    Returns
    -------
    images : ndarray, uint8 (N, C, H, W), the files that could be read
    read : list of str, their paths (in order)
    resized : list of str, the paths that were resized
    failed : list of (str, str), (path, why) for files that could not be read
    """
    from cnnframe.data import load_image
    from cnnframe.data.base import DatasetError
    c, h, w = image_shape
    if c not in (1, 3):
        raise ValueError(f"predict reads 1- or 3-channel images; the model takes {c} channels")
    arrays, read, resized, failed = [], [], [], []
    for path in paths:
        try:
            arr, original_size = load_image(path, "RGB" if c == 3 else "L", size=(h, w),
                                            max_pixels=max_pixels, resize=resize)
        except DatasetError as exc:  # names the file and says why
            msg = str(exc)
            failed.append((path, msg[len(f"{path}: "):] if msg.startswith(f"{path}: ") else msg))
            continue
        arrays.append(arr)
        read.append(path)
        if original_size != (h, w):
            resized.append(path)
    images = (np.stack(arrays) if arrays
              else np.empty((0, *image_shape), np.uint8))
    return images, read, resized, failed


def run(args):
    from cnnframe.data import build_transforms
    from cnnframe.graph import Model
    from cnnframe.train.evaluation import output_count, predict
    from cnnframe.train.runs import PREPROCESS_FILE, find_model, read_preprocess

    model_path, run_dir = find_model(args.model)
    pre = read_preprocess(run_dir)
    if pre is None:
        raise FileNotFoundError(f"no {PREPROCESS_FILE} next to {model_path}: predict needs the "
                                "classes, input size and normalisation a run folder records")
    classes = pre["classes"]
    model = Model.load(model_path)
    k_out = output_count(model)
    if k_out is not None and k_out != len(classes):
        raise ValueError(f"the model has {k_out} outputs but {PREPROCESS_FILE} lists "
                         f"{len(classes)} classes")
    _pillow()
    image_shape = tuple(pre["image_shape"])
    transform = build_transforms(pre["transforms"])
    files, failed = expand_paths(args.images)
    for path, why in failed:
        print(f"cnnframe predict: {path}: {why}", file=sys.stderr)
    k = min(args.top, len(classes))
    n_read, n_resized = 0, 0
    for start in range(0, len(files), CHUNK):
        images, read, resized, bad = load_images(files[start:start + CHUNK], image_shape,
                                                 args.max_pixels or None,
                                                 pre.get("resize", "stretch"))
        for path, why in bad:
            print(f"cnnframe predict: {path}: {why}", file=sys.stderr)
        failed += bad
        n_resized += len(resized)
        if not read:
            continue
        n_read += len(read)
        x = transform(images, np.random.default_rng(0))
        probs = predict(model, x, probabilities=True)
        for path, p in zip(read, probs):
            best = np.argsort(-p, kind="stable")[:k]
            ranked = ", ".join(f"{classes[j]} {100 * p[j]:.1f}%" for j in best)
            print(f"{path}: {classes[best[0]]}  ({ranked})")
        sys.stdout.flush()
    if n_resized:
        h, w = image_shape[1:]
        print(f"note: {n_resized} image(s) were resized to {w}x{h} (the model's input size)")
    if failed:
        print(f"cnnframe predict: error: {len(failed)} of {len(failed) + n_read} inputs could "
              f"not be read (listed above); {n_read} images were classified", file=sys.stderr)
        return 1
    return 0
