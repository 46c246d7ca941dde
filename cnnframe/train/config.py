"""The training config file (TOML or JSON): what `cnnframe train CONFIG` runs.

::

    seed = 0                         # seeds shuffling, augmentation and initialisation
    epochs = 10                      # passes over the training set
    batch_size = 128                 # images per optimizer step (over all ranks)
    threads = 2                      # optional; default: every core (per rank: cores / ranks)
    sync_batch_norm = false          # optional; distributed runs: batch statistics over all ranks
    metrics = ["accuracy"]           # optional; or "top5_accuracy" (any k)

    [model]                          # the network: a Model config (Model.from_config)
    # file = "my_model.toml"         # or a model file, relative to this config

    [data]                           # the dataset, its augmentation and validation split
    dataset = "cifar10"              # shapes | cifar10 | fashion_mnist | mnist | image_folder
    root = "/data/cifar10"           # optional: else --data-dir, else $CNNFRAME_DATA
    augmentation = [{type = "random_crop", padding = 4}, {type = "random_horizontal_flip"}]
                                     # train-time transforms on uint8 batches (cnnframe.data)
    normalize = {mean = [0.49, 0.48, 0.45], std = [0.25, 0.24, 0.26]}   # optional, after
                                     # scaling to [0, 1]; used for training and evaluation
    validation = "test"              # "test" split, "none", or a held-out fraction like 0.1
    options = {}                     # keyword arguments of the dataset class; sub-tables
                                     # options.train / options.test apply to one split only

    [loss]                           # optional; default softmax cross-entropy
    type = "softmax_cross_entropy"

    [optimizer]                      # cnnframe.optim.build_optimizer
    type = "sgd"
    lr = 0.05

    [schedule]                       # optional; cnnframe.optim.build_schedule
    type = "onecycle"

    [checkpoint]                     # optional; when checkpoints are written and kept
    keep = 3                         # checkpoint files kept
    every_steps = 0                  # also checkpoint every N steps (0: only per epoch)

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
            "threads", "metrics", "checkpoint", "sync_batch_norm")
REQUIRED_TOP = ("model", "data", "optimizer", "epochs", "batch_size")
DATA_KEYS = ("dataset", "root", "augmentation", "normalize", "options", "validation")
CHECKPOINT_KEYS = ("keep", "every_steps")
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

    ck = {**DEFAULTS["checkpoint"], **out["checkpoint"]}
    _unknown(ck, CHECKPOINT_KEYS, "[checkpoint]")
    _int(ck, "keep", 1, "[checkpoint]")
    _int(ck, "every_steps", 0, "[checkpoint]")
    out["checkpoint"] = ck

    if "type" not in out["optimizer"]:
        raise ValueError("[optimizer] needs a 'type' (sgd, adam, adamw)")
    return out


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
