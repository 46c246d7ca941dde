"""The training config file (TOML or JSON): what `cnnframe train CONFIG` runs.

::

    seed = 0                         # seeds shuffling, augmentation and initialisation
    epochs = 10                      # passes over the training set
    batch_size = 128                 # images per optimizer step (over all ranks)
    threads = 2                      # optional; default: every core (per rank: cores / ranks)
    sync_batch_norm = false          # optional; distributed runs: batch statistics over all ranks
    metrics = ["accuracy"]           # optional; or "top5_accuracy" (any k)
    freeze = ["conv1", "bn1"]        # optional: parameters that are not trained (patterns as
                                     # in [[optimizer.groups]]); or `trainable = false` on a
                                     # node of the model
    init = [{type = "whitening", node = "whiten", eps = 5e-4, samples = 5000}]
                                     # optional: data-dependent initialisers, run in order
                                     # after the model is built, on `samples` training
                                     # images (drawn with the seed; to_float + normalize,
                                     # no augmentation); "whitening": the conv's filters
                                     # whiten its input patches (cnnframe.layers.data_init)

    [model]                          # the network: a Model config (Model.from_config)
    # file = "my_model.toml"         # or a model file, relative to this config

    [data]                           # the dataset, its augmentation and validation split
    dataset = "cifar10"              # shapes | cifar10 | fashion_mnist | mnist | image_folder
    root = "/data/cifar10"           # optional: else --data-dir, else $CNNFRAME_DATA
    augmentation = [{type = "random_crop", padding = 4}, {type = "random_horizontal_flip"}]
                                     # train-time transforms on uint8 batches (cnnframe.data):
                                     # random_crop, random_horizontal_flip, random_translate,
                                     # random_resized_crop, resize, alternating_flip,
                                     # random_erasing, cutout, color_jitter,
                                     # and the batch mixers mixup / cutmix (applied last, to the
                                     # float batch; labels become (N, K) probabilities)
    normalize = {mean = [0.49, 0.48, 0.45], std = [0.25, 0.24, 0.26]}   # optional, after
                                     # scaling to [0, 1]; used for training and evaluation
    validation = "test"              # "test" split, "none", or a held-out fraction like 0.1
                                     # (image_folder: of each class; a folder without train/
                                     # and test/ needs a fraction or "none")
    image_size = [64, 64]            # image_folder only, optional: decode every image to this
                                     # (height, width); an int n means [n, n]
    resize = "shorter_side_then_center_crop"   # with image_size: or "stretch", "pad"
    eval_transforms = [{type = "resize", size = 56}]   # optional: transforms of evaluation
                                     # batches before to_float/normalize (e.g. after a
                                     # random_resized_crop to a size other than image_size)
    options = {}                     # keyword arguments of the dataset class; sub-tables
                                     # options.train / options.test apply to one split only

    [loss]                           # optional; default softmax cross-entropy
    type = "softmax_cross_entropy"   # or "bce_with_logits" (key pos_weight), "mse"
    label_smoothing = 0.0            # optional, cross-entropy
    weight = [1.0, 2.0, ...]         # optional, cross-entropy: one weight per class

    [optimizer]                      # cnnframe.optim.build_optimizer
    type = "sgd"                     # sgd | adam | adamw; other keys: the constructor's
    lr = 0.05                        # (momentum, nesterov, weight_decay, betas, no_decay...)
    clip_grad_norm = 1.0             # optional: global L2 norm of the gradients at most this
    clip_grad_value = 5.0            # optional: every gradient element into [-v, v] (first)
    lookahead = {k = 5, alpha = 0.5} # optional: wrap in cnnframe.optim.Lookahead
    [[optimizer.groups]]             # optional, any number: per-group lr / weight_decay for
    params = ["*.bias", "bn*"]       # the parameters these patterns select ("node.param"
    weight_decay = 0.0               # keys: "conv1", "*.bias", "bn*"); the first group that
    # lr = 0.01                      # selects a parameter applies; a group lr follows the
                                     # schedule (scaled like the optimizer's lr)

    [schedule]                       # optional; cnnframe.optim.build_schedule
    type = "onecycle"                # constant | step | cosine | onecycle | plateau |
                                     # piecewise_linear (fractions = [0, 0.23, 1], factors =
                                     # [0.2, 1, 0.07]: lr factors at fractions of the run)
    # type = "plateau"               # ReduceLROnPlateau: monitor = "val_loss", mode = "auto",
                                     # factor = 0.1, patience = 10, min_delta = 1e-4,
                                     # cooldown = 0, min_lr = 0.0 (stepped per epoch)

    [ema]                            # optional: moving average of the weights
    decay = 0.999                    # in [0, 1)
    every_steps = 1                  # optional: average every N optimizer steps
    warmup = false                   # optional: decay min(decay, (1 + n) / (10 + n))
    buffers = true                   # optional: average batch-norm statistics too
    evaluate = true                  # optional: validate with the averaged weights
    save = false                     # optional: model.cnnf gets the averaged weights

    [early_stopping]                 # optional: cnnframe.train.EarlyStopping
    monitor = "val_loss"             # a column of metrics.csv: val_loss, val_accuracy, loss...
    mode = "auto"                    # min | max | auto ("max" for names with "acc")
    patience = 5                     # epochs without improvement before stopping
    min_delta = 0.0                  # the least change that counts as an improvement
    restore_best = false             # on stopping, go back to the best epoch's weights

    [checkpoint]                     # optional; when checkpoints are written and kept
    keep = 3                         # checkpoint files kept
    every_steps = 0                  # also checkpoint every N steps (0: only per epoch)
    keep_best = {monitor = "val_accuracy", mode = "max"}   # optional: checkpoints/best.npz
                                     # holds the best epoch (also just keep_best = "val_loss")

Unknown keys anywhere in this schema raise ValueError naming the valid ones.
"""
import copy
import difflib
import json
import math
import os

try:
    import tomllib
except ImportError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

from cnnframe.train.checkpoint import atomic_write

TOP_KEYS = ("model", "data", "loss", "optimizer", "schedule", "epochs", "batch_size", "seed",
            "threads", "metrics", "checkpoint", "sync_batch_norm", "ema", "early_stopping",
            "freeze", "init")
REQUIRED_TOP = ("model", "data", "optimizer", "epochs", "batch_size")
DATA_KEYS = ("dataset", "root", "augmentation", "normalize", "options", "validation",
             "image_size", "resize", "eval_transforms")
IMAGE_FOLDER_NAMES = ("image_folder", "cifar10_jpeg")  # datasets that take image_size
CHECKPOINT_KEYS = ("keep", "every_steps", "keep_best")
KEEP_BEST_KEYS = ("monitor", "mode", "min_delta")
EMA_KEYS = ("decay", "every_steps", "warmup", "buffers", "evaluate", "save")
EARLY_STOPPING_KEYS = ("monitor", "mode", "patience", "min_delta", "restore_best")
DEFAULTS = {"seed": 0, "threads": None, "metrics": ["accuracy"], "schedule": None,
            "loss": {"type": "softmax_cross_entropy"},
            "checkpoint": {"keep": 3, "every_steps": 0}}


def _unknown(keys, valid, where):
    unknown = [k for k in keys if k not in valid]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, valid, n=1)
            hints.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
        raise ValueError(f"unknown key(s) {', '.join(hints)} in {where}; valid keys: "
                         f"{', '.join(valid)}")


def _int(cfg, key, minimum, where="the config"):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{key} in {where} must be an integer >= {minimum}, got {v!r}")


def validate_config(cfg):
    """Check a training config dict and fill in defaults; returns a new dict.

    Raises
    ------
    ValueError
        For unknown keys (naming the valid ones), missing required keys, or bad values.
    TypeError
        When a section is not a table.
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"training config must be a table/dict, got {type(cfg).__name__}")
    _unknown(cfg, TOP_KEYS, "the training config")
    missing = [k for k in REQUIRED_TOP if k not in cfg]
    if missing:
        raise ValueError(f"training config is missing {', '.join(map(repr, missing))}; "
                         f"required keys: {', '.join(REQUIRED_TOP)}")
    out = copy.deepcopy(DEFAULTS)
    out.update(copy.deepcopy(cfg))
    for section in ("model", "data", "optimizer", "loss", "checkpoint"):
        if not isinstance(out[section], dict):
            raise TypeError(f"[{section}] must be a table, got {type(out[section]).__name__}")
    if out["schedule"] is not None and not isinstance(out["schedule"], dict):
        raise TypeError(f"[schedule] must be a table, got {type(out['schedule']).__name__}")
    _int(out, "epochs", 1)
    _int(out, "batch_size", 1)
    _int(out, "seed", 0)
    if out["threads"] is not None:
        _int(out, "threads", 1)
    # No default: configs without the key (every run before it existed) stay unchanged.
    if "sync_batch_norm" in out and not isinstance(out["sync_batch_norm"], bool):
        raise ValueError(f"sync_batch_norm in the config must be true or false, got "
                         f"{out['sync_batch_norm']!r}")
    if not isinstance(out["metrics"], list) or not all(isinstance(m, str) for m in out["metrics"]):
        raise ValueError(f"metrics must be a list of metric names, got {out['metrics']!r}")
    from cnnframe.train.metrics import parse_metric
    for m in out["metrics"]:
        parse_metric(m)

    data = out["data"]
    _unknown(data, DATA_KEYS, "[data]")
    if "dataset" not in data:
        raise ValueError("[data] needs 'dataset' (e.g. \"shapes\", \"cifar10\")")
    data.setdefault("root", None)
    data.setdefault("augmentation", [])
    data.setdefault("normalize", None)
    data.setdefault("options", {})
    data.setdefault("validation", "test")
    if not isinstance(data["options"], dict):
        raise TypeError(f"data.options must be a table, got {type(data['options']).__name__}")
    val = data["validation"]
    if not (val in ("test", "none") or (isinstance(val, float) and 0.0 < val < 1.0)):
        raise ValueError(f"data.validation must be \"test\", \"none\" or a fraction in (0, 1) of "
                         f"the training set held out, got {val!r}")
    _check_image_keys(data)

    ck = {**DEFAULTS["checkpoint"], **out["checkpoint"]}
    _unknown(ck, CHECKPOINT_KEYS, "[checkpoint]")
    _int(ck, "keep", 1, "[checkpoint]")
    _int(ck, "every_steps", 0, "[checkpoint]")
    if "keep_best" in ck:
        kb = ck["keep_best"]
        if isinstance(kb, str):
            kb = {"monitor": kb}
        if not isinstance(kb, dict) or "monitor" not in kb:
            raise ValueError(f"checkpoint.keep_best must be a metric name or a table "
                             f"{{monitor = \"val_accuracy\", mode = \"max\"}}, got {kb!r}")
        _unknown(kb, KEEP_BEST_KEYS, "checkpoint.keep_best")
        ck["keep_best"] = kb
    out["checkpoint"] = ck
    _check_controls(out)

    if "type" not in out["optimizer"]:
        raise ValueError("[optimizer] needs a 'type' (sgd, adam, adamw)")
    return out


def _check_controls(cfg):
    """The tables of the training controls: known keys and plain types (values are checked
    where they are used: Model.freeze, ExponentialMovingAverage, EarlyStopping)."""
    for section, keys in (("ema", EMA_KEYS), ("early_stopping", EARLY_STOPPING_KEYS)):
        if section in cfg:
            if not isinstance(cfg[section], dict):
                raise TypeError(f"[{section}] must be a table, got {type(cfg[section]).__name__}")
            _unknown(cfg[section], keys, f"[{section}]")
    if "ema" in cfg and "decay" not in cfg["ema"]:
        raise ValueError("[ema] needs 'decay' (e.g. 0.999)")
    for key in ("evaluate", "save", "warmup", "buffers"):
        if key in cfg.get("ema", {}) and not isinstance(cfg["ema"][key], bool):
            raise ValueError(f"ema.{key} must be true or false, got {cfg['ema'][key]!r}")
    if "init" in cfg:
        from cnnframe.layers.data_init import check_data_inits
        cfg["init"] = check_data_inits(cfg["init"])
    if "freeze" in cfg:
        frz = cfg["freeze"]
        if isinstance(frz, str):
            frz = cfg["freeze"] = [frz]
        if not isinstance(frz, list) or not all(isinstance(p, str) and p for p in frz):
            raise ValueError(f"freeze must be a list of parameter patterns such as "
                             f"[\"conv1\", \"*.bias\"], got {frz!r}")


def _check_image_keys(data):
    """Check (and normalise) [data] image_size, resize and eval_transforms in place."""
    from cnnframe.data.image_folder import check_image_size, check_resize
    if "image_size" in data:
        name = str(data["dataset"]).lower().replace("-", "_")
        if name not in IMAGE_FOLDER_NAMES:
            raise ValueError(f"data.image_size applies to the image_folder dataset, not "
                             f"{data['dataset']!r}")
        data["image_size"] = list(check_image_size(data["image_size"], "data.image_size"))
        data.setdefault("resize", "shorter_side_then_center_crop")
    if "resize" in data:
        if "image_size" not in data:
            raise ValueError("data.resize needs data.image_size (the size images are resized "
                             "to), e.g. image_size = [64, 64]")
        try:
            check_resize(data["resize"])
        except ValueError as exc:
            raise ValueError(f"data.{exc}") from None
    if "eval_transforms" in data:
        from cnnframe.data import build_transforms
        evt = data["eval_transforms"]
        if not isinstance(evt, list):
            raise ValueError(f"data.eval_transforms must be a list of transform tables, got "
                             f"{evt!r}")
        try:
            build_transforms(evt)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"data.eval_transforms: {exc}") from None


# What may change between a run and its resumption without changing the run itself: how
# long it goes on, how many threads compute it, and where its data is read from.
RESUME_FREE = ("epochs", "threads", "data.root")
_MISSING = object()


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out if out or not prefix else {prefix: {}}
    return {prefix: value}


def resume_differences(saved, cfg):
    """The dotted keys in which two validated training configs differ, beyond `RESUME_FREE`.

    A run may be resumed with a config only when this is empty: every other key (model,
    data, optimizer, schedule, seed, batch size...) shapes the run's results.

    Parameters
    ----------
    saved, cfg : dict
        The run's config (its config.toml) and the config to resume it with.

    Returns
    -------
    list of str
        Sorted, e.g. ``["optimizer.lr"]``.
    """
    a, b = _flatten(saved), _flatten(cfg)
    return sorted(k for k in set(a) | set(b)
                  if k not in RESUME_FREE and a.get(k, _MISSING) != b.get(k, _MISSING))


def load_config(path):
    """Read and validate a training config file (.toml or .json).

    A ``model.file`` entry is resolved relative to the config file's folder.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"training config {path!r} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if path.endswith(".json"):
            cfg = json.loads(raw.decode("utf-8"))
        else:
            cfg = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot parse the config: {exc}") from exc
    cfg = validate_config(cfg)
    mfile = cfg["model"].get("file")
    if isinstance(mfile, str) and not os.path.isabs(mfile):
        cfg["model"]["file"] = os.path.normpath(os.path.join(os.path.dirname(path), mfile))
    return cfg


# ----------------------------------------------------------------------------- writing TOML

def _toml_key(k):
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return json.dumps(k)


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()
                                if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(cfg):
    """TOML text for a config dict of plain values (None values are left out)."""
    lines = []

    def table(d, prefix):
        scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict)]
        tables = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for k, v in scalars:
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                lines.append(f"{_toml_key(k)} = [")
                lines.extend(f"    {_toml_value(x)}," for x in v)
                lines.append("]")
            else:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        if scalars or (prefix and not tables):
            lines.append("")
        for k, v in tables:
            table(v, f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k))

    table(cfg, "")
    return "\n".join(lines).rstrip() + "\n"


def save_config(cfg, path):
    """Write a config dict as TOML (atomically)."""
    text = to_toml(cfg)
    atomic_write(path, lambda f: f.write(text), mode="w")
