"""`cnnframe predict MODEL IMAGE|DIR...`: class probabilities for image files (needs Pillow).

A file that cannot be read is reported on stderr (one line naming it and why) and the
others are still classified; the exit status is then 1.
"""
import argparse
import os
import sys

import numpy as np

from cnnframe.cli._args import positive_int

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


def load_image(path, image_shape):
    """One image file as uint8 (C, H, W), converted to C channels and resized to H x W.

    Returns
    -------
    (ndarray, bool)
        The image and whether it had to be resized.

    Raises
    ------
    DatasetError
        The file cannot be decoded (the message names it and says why).
    """
    from cnnframe.data.base import DatasetError
    Image = _pillow()
    c, h, w = image_shape
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if c == 3 else "L")
            resized = im.size != (w, h)
            if resized:
                im = im.resize((w, h), Image.BILINEAR)
            arr = np.asarray(im, np.uint8)
    except DatasetError:
        raise
    # Pillow raises OSError, ValueError, SyntaxError or DecompressionBombError (an image
    # declaring an absurd size), and crafted files have made it raise others: any failure
    # to decode one untrusted file is that file's problem, not the batch's.
    except Exception as exc:  # noqa: BLE001 - reported with its type, per file
        raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    return (arr.transpose(2, 0, 1) if c == 3 else arr[None]), resized


def load_images(paths, image_shape):
    """uint8 (N, C, H, W) from image files, with the paths resized and the failures.

    Returns
    -------
    images : ndarray, uint8 (N, C, H, W), the files that could be read
    read : list of str, their paths (in order)
    resized : list of str, the paths that were resized
    failed : list of (str, str), (path, why) for files that could not be read
    """
    from cnnframe.data.base import DatasetError
    c = image_shape[0]
    if c not in (1, 3):
        raise ValueError(f"predict reads 1- or 3-channel images; the model takes {c} channels")
    arrays, read, resized, failed = [], [], [], []
    for path in paths:
        try:
            arr, was_resized = load_image(path, image_shape)
        except (DatasetError, OSError) as exc:
            msg = str(exc)
            failed.append((path, msg[len(f"{path}: "):] if msg.startswith(f"{path}: ") else msg))
            continue
        arrays.append(arr)
        read.append(path)
        if was_resized:
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
        images, read, resized, bad = load_images(files[start:start + CHUNK], image_shape)
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
