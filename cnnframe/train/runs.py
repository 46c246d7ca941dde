"""Build everything a training config names (data, model, loss, optimizer) and read run folders.

A run folder (``cnnframe train ... --out runs/NAME``) holds::

    config.toml          the resolved training config (after command-line overrides)
    metrics.csv          one row per epoch
    checkpoints/         ckpt-e*-s*.npz, the last few
    model.cnnf           the final model (Model.save; an npz file)
    preprocess.json      classes, input shape and the eval-time transforms, for predict/evaluate
    curves.png           loss and accuracy per epoch and per step (with matplotlib)

config.toml records the dataset root the run read (as an absolute path), so that
``cnnframe evaluate RUN`` finds the same data without being told again.
"""
import json
import os
import re
import zipfile
from pathlib import Path

from cnnframe._files import remove_stale_temp_files
from cnnframe.graph.io import RUN_MODEL_FILE as MODEL_FILE, find_model_file
from cnnframe.train.checkpoint import atomic_write

PREPROCESS_FILE = "preprocess.json"
CONFIG_FILE = "config.toml"
# The files of a run folder itself (checkpoints/ cleans up after itself), each written
# atomically through a temporary file next to it.
RUN_FILES = (CONFIG_FILE, "metrics.csv", MODEL_FILE, PREPROCESS_FILE, "curves.png")
_RUN_FILE_NAME = re.compile("(?:" + "|".join(map(re.escape, RUN_FILES)) + r")\Z")


# Datasets that need no files (and so no root).
BUILT_IN_DATASETS = ("shapes",)


def dataset_name(cfg):
    """The config's dataset name, normalised: lower case, "_" for "-"."""
    return str(cfg["data"]["dataset"]).lower().replace("-", "_")


def resolve_data_root(cfg_data, data_dir=None):
    """The dataset root: --data-dir, else the config's data.root, else $CNNFRAME_DATA, else None."""
    if data_dir:
        return Path(os.path.expanduser(data_dir))
    if cfg_data.get("root"):
        return Path(os.path.expanduser(cfg_data["root"]))
    env = os.environ.get("CNNFRAME_DATA")
    return Path(env) if env else None


def record_data_root(cfg, data_dir=None):
    """A copy of `cfg` whose data.root is the absolute root the run reads (when it has one).

    The run folder's config.toml then says where the data came from, so evaluating the run
    later needs no --data-dir.  Built-in datasets (shapes) keep their config as it is.
    """
    if dataset_name(cfg) in BUILT_IN_DATASETS:
        return cfg
    root = resolve_data_root(cfg["data"], data_dir)
    if root is None:
        return cfg
    out = dict(cfg)
    out["data"] = {**cfg["data"], "root": str(root.resolve())}
    return out


def remove_stale_run_temp_files(run_dir):
    """Delete the temporary files of `RUN_FILES` that killed writes left in a run folder.

    Called when a run starts (``Trainer(out_dir=...)``, ``cnnframe train``), so that runs
    killed in the middle of writing model.cnnf or metrics.csv do not pile up partial
    copies; only files whose writer is gone are removed (`cnnframe._files`).

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder; a missing folder has nothing to remove.

    Returns
    -------
    list of str
        The paths removed.
    """
    return remove_stale_temp_files(run_dir, _RUN_FILE_NAME)


def _missing_cifar10(root):
    """FileNotFoundError for a root without CIFAR-10, saying how to point at it or fetch it."""
    from cnnframe.data.cifar import ARCHIVES, DIRS
    what = "does not exist" if not root.exists() else "holds no CIFAR-10 copy"
    return FileNotFoundError(
        f"CIFAR-10 root {root} {what}. Point --data-dir (or data.root in the config, or "
        f"$CNNFRAME_DATA) at a folder holding {DIRS['binary']}/, {ARCHIVES['binary']}, "
        f"{DIRS['python']}/ or {ARCHIVES['python']}, or a class-per-folder copy "
        "(train/airplane/*.png ... and test/airplane/*.png ...); or add --download to fetch "
        f"the official archive (about 160 MB) into {root}")


def is_image_folder(cfg):
    """Whether the config's dataset is an image folder (image_folder or its alias)."""
    from cnnframe.train.config import IMAGE_FOLDER_NAMES
    return dataset_name(cfg) in IMAGE_FOLDER_NAMES


def holds_out_validation(cfg, data_dir=None):
    """Whether evaluation data comes from the run's own held-out part of its training images:
    an image folder without train/ and test/ folders, with ``validation`` a fraction."""
    from cnnframe.data.registry import is_single_folder
    root = resolve_data_root(cfg["data"], data_dir)
    return (is_image_folder(cfg) and isinstance(cfg["data"].get("validation"), float)
            and root is not None and is_single_folder(root))


def load_datasets(cfg, data_dir=None, download=False):
    """(train_set, eval_set or None) for a validated config's [data] section.

    ``dataset = "cifar10"`` reads the official python/binary release under the root, or a
    class-per-folder copy there (as `cnnframe.data.CIFAR10` does).

    ``dataset = "image_folder"`` reads root/train and root/test, or, when the root has no
    train/ folder, the root itself as one folder of class folders. There ``validation = f``
    holds out a fraction f of each class (`cnnframe.data.image_folder.stratified_split`,
    seeded by the config's seed), so the same config always gives the same split; data.image_size
    and data.resize are passed to `ImageFolder`.

    Parameters
    ----------
    cfg : dict
        A validated training config.
    data_dir : str or Path, optional
        The root, overriding data.root and $CNNFRAME_DATA.
    download : bool
        Download CIFAR-10 into the root when no copy is there (as ``CIFAR10(root,
        download=True)`` does); only for ``dataset = "cifar10"``.

    Raises
    ------
    FileNotFoundError
        No copy of the dataset under the root; the message says how to give one.
    ValueError
        `download` for a dataset other than CIFAR-10.
    """
    from cnnframe.data import get_dataset
    from cnnframe.data.base import default_data_root
    from cnnframe.data.cifar import find_cifar10, find_cifar10_image_folder
    data = cfg["data"]
    name = dataset_name(cfg)
    root = resolve_data_root(data, data_dir)
    options = dict(data.get("options") or {})
    per_split = {"train": dict(options.pop("train", None) or {}),
                 "test": dict(options.pop("test", None) or {})}
    train_opts = {**options, **per_split["train"]}
    test_opts = {**options, **per_split["test"]}
    is_cifar = name in ("cifar10", "cifar_10")
    if download and not is_cifar:
        raise ValueError(f"--download fetches CIFAR-10 only; dataset {data['dataset']!r} "
                         "cannot be downloaded by cnnframe")
    if is_cifar:
        where = root if root is not None else default_data_root()
        copy_here = where.exists() and (find_cifar10(where) or find_cifar10_image_folder(where))
        if download and not copy_here:
            from cnnframe.data.cifar import fetch_cifar10
            where.mkdir(parents=True, exist_ok=True)
            fetch_cifar10(where)
        elif not copy_here:
            raise _missing_cifar10(where)
    val = data.get("validation", "test")
    if is_image_folder(cfg) and "image_size" in data:
        both = sorted(k for k in ("image_size", "resize") if k in train_opts or k in test_opts)
        if both:
            raise ValueError(f"data.options sets {', '.join(both)}, which [data] sets too; "
                             "give each once, in [data]")
        sizing = {"image_size": tuple(data["image_size"]), "resize": data["resize"]}
        train_opts, test_opts = {**train_opts, **sizing}, {**test_opts, **sizing}
    if is_image_folder(cfg) and isinstance(val, float):
        # A stratified split of the image files, each part decoded (and cached) by itself: a
        # memory-mapped set is never copied into memory to split it.
        split = {"validation": val, "split_seed": cfg["seed"]}
        return (get_dataset(name, root, train=True, subset="train", **split, **train_opts),
                get_dataset(name, root, train=True, subset="validation", **split, **train_opts))
    train_set = get_dataset(name, root, train=True, **train_opts)
    if val == "none":
        return train_set, None
    if val == "test":
        return train_set, get_dataset(name, root, train=False, **test_opts)
    held, kept = train_set.split(float(val), seed=cfg["seed"])
    return kept, held


def eval_transform_config(cfg):
    """The eval-time transform configs: data.eval_transforms (e.g. a resize), to_float, then
    normalize when the config has one."""
    norm = cfg["data"].get("normalize")
    out = [dict(t) if isinstance(t, dict) else {"type": t}
           for t in cfg["data"].get("eval_transforms") or []]
    out.append({"type": "to_float"})
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


def build_model(cfg, train_set=None):
    """The Model a config's [model] section describes (inline config or ``file = ...``).

    A model config without its own seed gets the training config's seed, so runs are
    reproducible from the training config alone.  Given the training set, the config's
    ``init`` list (data-dependent initialisers, `cnnframe.layers.data_init`) runs on it.
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
    if train_set is not None and cfg.get("init"):
        from cnnframe.data import build_transforms
        from cnnframe.layers.data_init import init_from_data
        init_from_data(model, cfg["init"], train_set,
                       build_transforms(eval_transform_config(cfg)), cfg["seed"])
    return model


def build_loss(cfg):
    from cnnframe.losses import get_loss
    lcfg = dict(cfg["loss"])
    kind = lcfg.pop("type", "softmax_cross_entropy")
    return get_loss(kind, **lcfg)


def write_preprocess(out_dir, classes, image_shape, transforms, resize=None):
    """preprocess.json: the classes, the (C, H, W) images are read at, the eval transforms and,
    for images resized on load, how (`resize`, as ImageFolder's), so predict reads files alike."""
    info = {"classes": list(classes), "image_shape": [int(s) for s in image_shape],
            "transforms": transforms}
    if resize is not None:
        info["resize"] = resize
    text = json.dumps(info, indent=2)
    atomic_write(Path(out_dir) / PREPROCESS_FILE, lambda f: f.write(text), mode="w")


def is_checkpoint(path):
    """True when `path` is a training checkpoint (an npz with a ``__meta__`` member).

    Only the zip directory is read, never the arrays.
    """
    try:
        with zipfile.ZipFile(path) as z:
            return "__meta__.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def checkpoint_is_not_a_model(path):
    """The ValueError for a checkpoint given where a model file is expected."""
    path = Path(path)
    run = path.parent.parent if path.parent.name == "checkpoints" else None
    run_hint = (f"Once the run has finished, its model is {run / MODEL_FILE}; to finish it, run "
                f"`cnnframe train {run / CONFIG_FILE} --out {run} --resume`. "
                if run is not None else "")
    return ValueError(
        f"{path} is a training checkpoint, not a model file: it holds the model's weights "
        "together with the optimizer, schedule, data-loader and random-number state, so that "
        "`cnnframe train ... --resume` can continue the run exactly. " + run_hint
        + "To make a model file from the checkpoint itself, in Python: "
        f"cnnframe.train.runs.model_from_checkpoint({str(path)!r}).save('model.cnnf')")


def model_from_checkpoint(path, config=None):
    """The Model whose weights a training checkpoint of ``cnnframe train`` holds.

    Parameters
    ----------
    path : str or Path
        A checkpoint file (checkpoints/ckpt-e*-s*.npz of a run folder).
    config : dict or str or Path, optional
        The run's training config (or its file); default: the config stored in the checkpoint
        by ``cnnframe train``.

    Returns
    -------
    cnnframe.Model
        Built from the config's [model] section with the checkpoint's weights and buffers.

    Raises
    ------
    CheckpointError
        `path` is not a readable checkpoint.
    ValueError
        No config given and none stored in the checkpoint (a Trainer without
        ``extra_state={"config": ...}`` wrote it).
    """
    from cnnframe.train.checkpoint import load_state
    from cnnframe.train.config import load_config, validate_config
    state = load_state(path)
    if config is None:
        config = (state.get("extra") or {}).get("config")
        if config is None:
            raise ValueError(f"{path}: the checkpoint stores no training config; pass the "
                             "run's config (config.toml) as `config`")
        config = validate_config(config)
    elif not isinstance(config, dict):
        config = load_config(config)
    model = build_model(config)
    model.load_state_dict(state["model"])
    return model


def find_model(path):
    """(model file, run folder) for a model file or a run folder, refusing checkpoints.

    `cnnframe.graph.io.find_model_file`, plus a clear error for a training checkpoint.

    Raises
    ------
    FileNotFoundError
        No such file, or a run folder without its model (the run has not finished).
    ValueError
        `path` is a training checkpoint: the message says what that is and how to get a
        model from it.
    """
    model, run_dir = find_model_file(path)
    if is_checkpoint(model):
        raise checkpoint_is_not_a_model(model)
    return model, run_dir


def read_preprocess(run_dir):
    """The preprocess.json of a run folder, or None."""
    p = Path(run_dir) / PREPROCESS_FILE if run_dir is not None else None
    if p is None or not p.is_file():
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)
