"""`cnnframe predict MODEL IMAGE...`: class probabilities for image files (needs Pillow)."""
import argparse
from pathlib import Path

import numpy as np

HELP = "classify image files with a trained model (run folder or model file)"


def add_parser(subparsers):
    p = subparsers.add_parser("predict", help=HELP, description=HELP + ".")
    p.add_argument("model", help="a run folder (runs/NAME) or a model file with "
                   "preprocess.json next to it")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top", type=int, default=3, metavar="K", help="classes shown per image")
    p.add_argument("--threads", type=int, metavar="N", default=argparse.SUPPRESS,
                   help="threads for kernels and BLAS")
    p.set_defaults(func=run)
    return p


def load_images(paths, image_shape):
    """uint8 (N, C, H, W) from image files, converted to C channels and resized to H x W."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("cnnframe predict needs Pillow: pip install \"cnnframe[images]\"") \
            from exc
    c, h, w = image_shape
    if c not in (1, 3):
        raise ValueError(f"predict reads 1- or 3-channel images; the model takes {c} channels")
    out = np.empty((len(paths), c, h, w), np.uint8)
    resized = []
    for i, path in enumerate(paths):
        if not Path(path).is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        try:
            with Image.open(path) as im:
                im = im.convert("RGB" if c == 3 else "L")
                if im.size != (w, h):
                    resized.append(path)
                    im = im.resize((w, h), Image.BILINEAR)
                arr = np.asarray(im, np.uint8)
        except OSError as exc:
            raise ValueError(f"cannot read image {path}: {exc}") from exc
        out[i] = arr.transpose(2, 0, 1) if c == 3 else arr[None]
    return out, resized


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def run(args):
    from cnnframe.data import build_transforms
    from cnnframe.graph import Model
    from cnnframe.train.runs import PREPROCESS_FILE, find_model, read_preprocess

    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    model_path, run_dir = find_model(args.model)
    pre = read_preprocess(run_dir)
    if pre is None:
        raise FileNotFoundError(f"no {PREPROCESS_FILE} next to {model_path}: predict needs the "
                                "classes, input size and normalisation a run folder records")
    classes = pre["classes"]
    model = Model.load(model_path)
    images, resized = load_images(args.images, tuple(pre["image_shape"]))
    x = build_transforms(pre["transforms"])(images, np.random.default_rng(0))
    logits = np.concatenate([np.array(model.forward(x[i:i + 256], training=False))
                             for i in range(0, len(x), 256)])
    if logits.shape[1] != len(classes):
        raise ValueError(f"the model has {logits.shape[1]} outputs but {PREPROCESS_FILE} lists "
                         f"{len(classes)} classes")
    probs = softmax(logits.astype(np.float64))
    k = min(args.top, len(classes))
    for path, p in zip(args.images, probs):
        best = np.argsort(-p, kind="stable")[:k]
        ranked = ", ".join(f"{classes[j]} {100 * p[j]:.1f}%" for j in best)
        print(f"{path}: {classes[best[0]]}  ({ranked})")
    if resized:
        h, w = pre["image_shape"][1:]
        print(f"note: {len(resized)} image(s) were resized to {w}x{h} (the model's input size)")
    return 0
