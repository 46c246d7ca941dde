"""Evaluation and inference as free functions, shared by `Trainer`, the CLI and the benchmarks.

- `evaluate(model, loader)`: mean loss, metrics and optionally the confusion matrix.
- `predict(model, x)`: logits (or softmax probabilities) computed in batches.
- `evaluate_run(path)`: a run folder or model file on its dataset split, as
  ``cnnframe evaluate`` does.
- `check_num_classes(model, loader)`: the model's output count against the data's classes.
"""
import copy
from collections import namedtuple
from pathlib import Path

import numpy as np

from cnnframe.train.metrics import MetricTracker, confusion_matrix

__all__ = ["evaluate", "tta_views", "TTA_MODES", "predict", "softmax", "evaluate_run",
           "RunEvaluation", "check_num_classes", "output_count"]


def _resolve_loss(loss):
    if isinstance(loss, str):
        from cnnframe.losses import get_loss
        return get_loss(loss)
    if not (hasattr(loss, "forward") and hasattr(loss, "backward")):
        raise TypeError(f"loss must be a loss object with forward/backward or a loss name, "
                        f"got {type(loss).__name__}")
    return loss


TTA_MODES = ("none", "flip", "multicrop")


def _tta_mode(tta):
    """The TTA mode name of an `evaluate` tta argument (False/None: "none", True: "flip")."""
    if tta is None or isinstance(tta, (bool, np.bool_)):
        return "flip" if tta else "none"
    if isinstance(tta, str) and tta in TTA_MODES:
        return tta
    raise ValueError(f"tta must be one of {', '.join(map(repr, TTA_MODES))}, True (\"flip\") or "
                     f"False, got {tta!r}")


def tta_views(x, tta):
    """The test-time views of a batch and their weights: ``[(weight, view), ...]``.

    - "none": the batch itself.
    - "flip": the batch and its mirror image, 1/2 each.
    - "multicrop" (airbench's level 2): the batch and its mirror (1/4 each), and both of
      these translated by one pixel up-left and by one pixel down-right, with the border
      reflected (1/8 each): 6 views.

    Parameters
    ----------
    x : ndarray (N, C, H, W), H and W >= 2 for "multicrop"
    tta : str or bool (see `evaluate`)

    Returns
    -------
    list of (float, ndarray (N, C, H, W)); the weights sum to 1.
    """
    mode = _tta_mode(tta)
    if mode == "none":
        return [(1.0, x)]
    if np.ndim(x) != 4:
        what = "flips images left-right" if mode == "flip" else f"{mode!r} flips and shifts images"
        raise ValueError(f"evaluate: tta {what} and needs batches of shape (N, C, H, W), got "
                         f"{np.shape(x)}")

    def mirror(a):
        return np.ascontiguousarray(a[..., ::-1])

    if mode == "flip":
        return [(0.5, x), (0.5, mirror(x))]
    h, w = x.shape[2:]
    if h < 2 or w < 2:
        raise ValueError(f"evaluate: tta 'multicrop' reflects a 1-pixel border and needs images "
                         f"of at least 2 x 2, got shape {x.shape}")
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    views = [(0.25, x), (0.25, mirror(x))]
    for dy, dx in ((0, 0), (2, 2)):  # content moved down-right, then up-left, by one pixel
        crop = np.ascontiguousarray(padded[:, :, dy:dy + h, dx:dx + w])
        views += [(0.125, crop), (0.125, mirror(crop))]
    return views


def evaluate(model, loader, loss="softmax_cross_entropy", metrics=("accuracy",),
             confusion=False, tta=False):
    """Mean loss and metrics over a loader, with the model in inference mode.

    Parameters
    ----------
    model : cnnframe.Model (anything with ``forward(x, training=False)``)
    loader : iterable of (x, y) batches
        x float (N, C, H, W) preprocessed like the training data, y int (N,).
    loss : loss object or loss name (`cnnframe.losses.get_loss`)
    metrics : sequence of str
        "accuracy" and/or "top{k}_accuracy".
    confusion : bool
        Also return "confusion_matrix", int64 (K, K), rows = true class.
    tta : bool or {"none", "flip", "multicrop"}
        Test-time augmentation (x (N, C, H, W) only): each image's logits are the weighted
        mean of those of its views (`tta_views`).  "flip" (or True): the image and its
        mirror image, twice the cost.  "multicrop": airbench's six views (the image and
        its mirror, each also shifted by one pixel up-left and down-right), six times the
        cost.  For data whose classes do not change under mirroring and small shifts,
        such as CIFAR-10.

    Returns
    -------
    dict
        "loss", each metric name, and with `confusion` "confusion_matrix".
    """
    loss = _resolve_loss(loss)
    _tta_mode(tta)  # a bad value fails before any work
    tracker = MetricTracker(metrics)
    cm = None
    for x, y in loader:
        logits = None
        for weight, view in tta_views(x, tta):
            out = model.forward(view, training=False)
            if logits is None:  # a copy: the model may reuse its output buffer
                logits = out * out.dtype.type(weight) if weight != 1.0 else np.array(out)
            else:
                logits += out.dtype.type(weight) * out
        tracker.update(loss.forward(logits, y), logits, y)
        if confusion:
            part = confusion_matrix(logits.argmax(axis=1), y, logits.shape[1])
            cm = part if cm is None else cm + part
    out = tracker.result()
    if confusion:
        out["confusion_matrix"] = cm
    return out


def softmax(logits):
    """Class probabilities from logits (N, K), computed in float64 (rows sum to 1)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(model, x, batch_size=256, probabilities=False):
    """The model's outputs for `x`, computed in batches in inference mode.

    Parameters
    ----------
    model : cnnframe.Model
    x : ndarray, shape (N, C, H, W), already preprocessed like the training data
    batch_size : int
    probabilities : bool
        Return softmax probabilities (float64) instead of logits.

    Returns
    -------
    ndarray, shape (N, K)
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"predict: x must have a batch dimension, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("predict: x is empty")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"predict: batch_size must be an int >= 1, got {batch_size!r}")
    # Copy each batch's output: a model may reuse its output buffers between calls.
    outs = [np.array(model.forward(x[i:i + batch_size], training=False))
            for i in range(0, len(x), batch_size)]
    logits = np.concatenate(outs) if len(outs) > 1 else outs[0]
    return softmax(logits) if probabilities else logits


def output_count(model):
    """The number of outputs (classes) of a single-output model with a flat output, or None."""
    shapes, outputs = getattr(model, "shapes", None), getattr(model, "outputs", None)
    if not isinstance(shapes, dict) or not outputs or len(outputs) != 1:
        return None
    shape = shapes.get(outputs[0])
    return int(shape[0]) if shape is not None and len(shape) == 1 else None


def check_num_classes(model, loader, what="the dataset"):
    """Raise ValueError when the model's output count does not fit the loader's classes.

    Compares with ``loader.dataset.classes`` when the data has class names, and checks
    that every integer label is below the output count.  Models or loaders that do not
    say (no ``shapes``/``outputs``, no ``labels``) are not checked.

    Raises
    ------
    ValueError
        Naming both numbers, e.g. "the model has 20 outputs but the dataset has 8 classes".
    """
    k = output_count(model)
    if k is None or loader is None:
        return
    classes = getattr(getattr(loader, "dataset", None), "classes", None)
    if classes is not None and len(classes) != k:
        names = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
        raise ValueError(f"the model has {k} outputs but {what} has {len(classes)} classes "
                         f"({names}); its last layer must have {len(classes)} outputs "
                         f"(e.g. linear out_features = {len(classes)})")
    labels = getattr(loader, "labels", None)
    if isinstance(labels, np.ndarray) and labels.size and np.issubdtype(labels.dtype, np.integer):
        top = int(labels.max())
        if top >= k:
            raise ValueError(f"the model has {k} outputs but {what} has labels up to {top} "
                             f"({top + 1} classes or more); its last layer must have one "
                             "output per class")


# ----------------------------------------------------------------------------- run folders

RunEvaluation = namedtuple("RunEvaluation", "result classes model_path config")
RunEvaluation.__doc__ = """What `evaluate_run` returns.

result : dict from `evaluate` with "confusion_matrix"
classes : list of str, the dataset's class names
model_path : Path, the model file evaluated
config : dict, the training config used for the data
"""


def _eval_config(model, config, data, run_dir, data_dir=None):
    """The training config that describes the data of an evaluation (see `evaluate_run`)."""
    from cnnframe.train.config import load_config, validate_config
    from cnnframe.train.runs import CONFIG_FILE
    path = Path(config) if config else (Path(run_dir) / CONFIG_FILE if run_dir else None)
    if path is not None and path.is_file():
        cfg = load_config(path)
    elif config:
        raise FileNotFoundError(f"config {config} does not exist")
    else:
        if not data:
            raise ValueError(f"no config.toml next to {model}: name the dataset with --data "
                             "(and --config for its options and normalisation)")
        cfg = validate_config({"model": {}, "data": {"dataset": data},
                               "optimizer": {"type": "sgd"}, "epochs": 1, "batch_size": 1})
    cfg = copy.deepcopy(cfg)
    if data:
        if data != cfg["data"]["dataset"]:
            cfg["data"]["options"] = {}
        cfg["data"]["dataset"] = data
    from cnnframe.train.runs import holds_out_validation
    if not holds_out_validation(cfg, data_dir):  # else the "test" split is the held-out part
        cfg["data"]["validation"] = "test"
    return cfg


def evaluate_run(model, data_dir=None, split="test", tta=False, batch_size=256, config=None,
                 data=None, download=False):
    """Evaluate a trained model (a run folder or model file) on a dataset split.

    Parameters
    ----------
    model : str or Path
        A run folder of ``cnnframe train`` (its model.cnnf, config.toml and preprocess.json)
        or a model file.
    data_dir : str or Path, optional
        The dataset root; default: the config's data.root, else $CNNFRAME_DATA.
    split : {"test", "train"}
    tta : bool or {"none", "flip", "multicrop"}
        Test-time augmentation (see `evaluate`); True means "flip".
    batch_size : int
    config : str or Path, optional
        A training config giving the dataset, its options and normalisation; default: the
        run folder's config.toml.
    data : str, optional
        A dataset name overriding the config's.
    download : bool
        Download CIFAR-10 into the root when it is not there.

    Returns
    -------
    RunEvaluation
        (result, classes, model_path, config).

    Raises
    ------
    ValueError
        The model's output count differs from the dataset's class count (names both), or
        `model` is a training checkpoint rather than a model file.
    FileNotFoundError
        No model file, config or dataset.
    """
    from cnnframe.data import DataLoader, build_transforms
    from cnnframe.graph import Model
    from cnnframe.train.runs import (build_loss, eval_transform_config, find_model,
                                     load_datasets, read_preprocess)

    model_path, run_dir = find_model(model)
    cfg = _eval_config(model, config, data, run_dir, data_dir)
    net = Model.load(model_path)
    train_set, test_set = load_datasets(cfg, data_dir, download=download)
    dataset = train_set if split == "train" else test_set
    pre = read_preprocess(run_dir)
    transforms = (pre["transforms"] if pre and not config and not data
                  else eval_transform_config(cfg))
    loader = DataLoader(dataset, batch_size, shuffle=False,
                        transform=build_transforms(transforms))
    check_num_classes(net, loader, f"{cfg['data']['dataset']} ({split} split)")
    res = evaluate(net, loader, build_loss(cfg), metrics=("accuracy",), confusion=True, tta=tta)
    return RunEvaluation(res, list(dataset.classes), model_path, cfg)
