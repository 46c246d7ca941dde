"""Datasets by name, so a config file can say `dataset = "cifar10"`."""
from pathlib import Path

from cnnframe.data.cifar import CIFAR10
from cnnframe.data.image_folder import ImageFolder
from cnnframe.data.mnist import MNIST, FashionMNIST
from cnnframe.data.shapes import Shapes

SPLIT_DIRS = {True: ("train",), False: ("test", "val", "valid")}


def split_root(root, train):
    """The split folder of an image-folder tree: root/train, or root/test (or val, valid)."""
    root = Path(root)
    for name in SPLIT_DIRS[bool(train)]:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"{root}: no {' or '.join(SPLIT_DIRS[bool(train)])} folder for the "
                            f"{'train' if train else 'test'} split")


def is_single_folder(root):
    """Whether an image-folder root is one folder of class folders (no train/ or test/ folder)."""
    names = SPLIT_DIRS[True] + SPLIT_DIRS[False]
    return Path(root).is_dir() and not any((Path(root) / d).is_dir() for d in names)


def _image_folder(root, train, **kw):
    if root is None:
        raise ValueError("the image_folder dataset needs a root (with train/ and test/ folders, "
                         "or class folders)")
    if is_single_folder(root):
        if not train:
            raise FileNotFoundError(
                f"{root}: no train/ and test/ folders, so no test split; hold out part of each "
                "class for evaluation with validation = 0.1 in [data] (or validation = \"none\")")
        return ImageFolder(root, **kw)  # one folder of class folders: all of it is training data
    return ImageFolder(split_root(root, train), **kw)


def _shapes(root, train, n=None, **kw):
    return Shapes(n=(10000 if train else 2000) if n is None else n, train=train, **kw)


DATASETS = {
    "cifar10": lambda root, train, **kw: CIFAR10(root, train=train, **kw),
    "image_folder": _image_folder,
    "mnist": lambda root, train, **kw: MNIST(root, train=train, **kw),
    "fashion_mnist": lambda root, train, **kw: FashionMNIST(root, train=train, **kw),
    "shapes": _shapes,
}
ALIASES = {"cifar10_jpeg": "image_folder", "fashionmnist": "fashion_mnist", "cifar_10": "cifar10"}


def available_datasets():
    """Names accepted by `get_dataset`."""
    return sorted(DATASETS)


def get_dataset(name, root=None, train=True, **kwargs):
    """A dataset by name: cifar10, image_folder (alias cifar10_jpeg), mnist, fashion_mnist, shapes.

    Parameters
    ----------
    name : str
        Case and "-" versus "_" do not matter.
    root : str or Path, optional
        The dataset's root (ignored by shapes; image_folder uses root/train and root/test, or
        a root without train/ as the training split).
    train : bool
        Which split.
    **kwargs
        Passed to the dataset class (e.g. download=True for cifar10, n=... and seed=... for shapes).

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones).
    """
    key = str(name).lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(available_datasets())}"
                         f" (aliases: {', '.join(sorted(ALIASES))})")
    return DATASETS[key](root, train, **kwargs)
