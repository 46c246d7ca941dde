"""Build everything a training config names (data, model, loss, optimizer) and read run folders.

A run folder (``cnnframe train ... --out runs/NAME``) holds::

    config.toml          the resolved training config (after command-line overrides)
    metrics.csv          one row per epoch
    checkpoints/         ckpt-e*-s*.npz, the last few
    model.cnnf           the final model (Model.save; an npz file)
    preprocess.json      classes, input shape and the eval-time transforms, for predict/evaluate
    curves.png           loss and accuracy per epoch (with matplotlib)
"""
import json
import os
from pathlib import Path

from cnnframe.train.checkpoint import atomic_write

MODEL_FILE = "model.cnnf"
PREPROCESS_FILE = "preprocess.json"
CONFIG_FILE = "config.toml"


def resolve_data_root(cfg_data, data_dir=None):
    """The dataset root: --data-dir, else the config's data.root, else None ($CNNFRAME_DATA)."""
    if data_dir:
        return Path(data_dir)
    if cfg_data.get("root"):
        return Path(os.path.expanduser(cfg_data["root"]))
    env = os.environ.get("CNNFRAME_DATA")
    return Path(env) if env else None


def _cifar_image_folder(root):
    """A class-per-folder CIFAR-10 copy (train/airplane/...) at or just below `root`, or None."""
    if root is None:
        return None
    for cand in (root, root / "cifar10-jpeg", root / "cifar10"):
        if (cand / "train" / "airplane").is_dir():
            return cand
    return None


def load_datasets(cfg, data_dir=None):
    """(train_set, eval_set or None) for a validated config's [data] section.

    ``dataset = "cifar10"`` reads the official python/binary release under the root; when
    the root (or root/cifar10-jpeg) instead holds the class-per-folder JPEG copy, that is used.
    """
    from cnnframe.data import get_dataset
    from cnnframe.data.cifar import find_cifar10
    data = cfg["data"]
    name = str(data["dataset"]).lower().replace("-", "_")
    root = resolve_data_root(data, data_dir)
    options = dict(data.get("options") or {})
    per_split = {"train": dict(options.pop("train", None) or {}),
                 "test": dict(options.pop("test", None) or {})}
    train_opts = {**options, **per_split["train"]}
    test_opts = {**options, **per_split["test"]}
    if name in ("cifar10", "cifar_10") and root is not None and root.exists() \
            and not find_cifar10(root):
        folder = _cifar_image_folder(root)
        if folder is not None:
            name, root = "image_folder", folder
    train_set = get_dataset(name, root, train=True, **train_opts)
    val = data.get("validation", "test")
    if val == "none":
        return train_set, None
    if val == "test":
        return train_set, get_dataset(name, root, train=False, **test_opts)
    held, kept = train_set.split(float(val), seed=cfg["seed"])
    return kept, held


def eval_transform_config(cfg):
    """The eval-time transform configs: to_float, then normalize when the config has one."""
    norm = cfg["data"].get("normalize")
    out = [{"type": "to_float"}]
    if norm:
        if not isinstance(norm, dict):
            raise ValueError(f"data.normalize must be a table {{mean = [...], std = [...]}}, "
                             f"got {norm!r}")
        out.append({"type": "normalize", **norm})
    return out


def build_loaders(cfg, train_set, eval_set, eval_batch_size=None):
    """(train_loader, eval_loader or None): augmentation then eval transforms for training."""
    from cnnframe.data import DataLoader, build_transforms
    aug = list(cfg["data"].get("augmentation") or [])
    evt = eval_transform_config(cfg)
    train = DataLoader(train_set, cfg["batch_size"], shuffle=True, seed=cfg["seed"],
                       transform=build_transforms(aug + evt))
    ev = None
    if eval_set is not None:
        ev = DataLoader(eval_set, eval_batch_size or max(cfg["batch_size"], 256), shuffle=False,
                        seed=cfg["seed"], transform=build_transforms(evt))
    return train, ev


def build_model(cfg):
    """The Model a config's [model] section describes (inline config or ``file = ...``).

    A model config without its own seed gets the training config's seed, so runs are
    reproducible from the training config alone.
    """
    from cnnframe.graph import Model
    mcfg = dict(cfg["model"])
    if "file" in mcfg:
        if len(mcfg) != 1:
            raise ValueError(f"[model] with 'file' takes no other keys, got {sorted(mcfg)}")
        model = Model.from_file(mcfg["file"])
    else:
        if mcfg.get("seed") is None:
            mcfg["seed"] = cfg["seed"]
        model = Model.from_config(mcfg)
    return model


def build_loss(cfg):
    from cnnframe.losses import get_loss
    lcfg = dict(cfg["loss"])
    kind = lcfg.pop("type", "softmax_cross_entropy")
    return get_loss(kind, **lcfg)


def write_preprocess(out_dir, classes, image_shape, transforms):
    info = {"classes": list(classes), "image_shape": [int(s) for s in image_shape],
            "transforms": transforms}
    text = json.dumps(info, indent=2)
    atomic_write(Path(out_dir) / PREPROCESS_FILE, lambda f: f.write(text), mode="w")


def find_model(path):
    """(model file, run folder or None) for a model file or a run folder."""
    path = Path(path)
    if path.is_dir():
        model = path / MODEL_FILE
        if not model.exists():
            raise FileNotFoundError(f"{path} is a folder without {MODEL_FILE} (is the run "
                                    "finished? a checkpoint's weights are in checkpoints/)")
        return model, path
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    return path, path.parent


def read_preprocess(run_dir):
    """The preprocess.json of a run folder, or None."""
    p = Path(run_dir) / PREPROCESS_FILE if run_dir is not None else None
    if p is None or not p.is_file():
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)
