"""MNIST and Fashion-MNIST from their original IDX files (raw or gzipped)."""
import gzip
import zlib
from pathlib import Path

import numpy as np

from cnnframe.data.base import ArrayDataset, DatasetError, check_labels

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist
IDX_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path, ndim):
    """Read an unsigned-byte IDX file (optionally .gz) holding an array of `ndim` dimensions.

    Returns
    -------
    ndarray, uint8
        Shape as the header says.

    Raises
    ------
    DatasetError
        Bad magic number, wrong dimension count, or a size that disagrees with the header.
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot decompress ({exc}); truncated or corrupt?") from None
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise DatasetError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    zero, dtype_code, dims = data[0] | data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08 or dims != ndim:
        raise DatasetError(f"{path}: bad IDX magic number 0x{data[:4].hex()}: expected "
                           f"0x000008{ndim:02x} (unsigned bytes, {ndim} dimensions)")
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", ndim, 4))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DatasetError(f"{path}: {len(data)} bytes but the header's shape {shape} needs "
                           f"{expected}; truncated or wrong file?")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find(root, stem):
    dotted = stem.replace("-idx", ".idx")  # some mirrors name them train-images.idx3-ubyte
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def find_idx(root, train):
    """The (images, labels) IDX files of split `train` under `root`; None if either is missing."""
    root = Path(root)
    images, labels = (_find(root, stem) for stem in IDX_FILES[train])
    return (images, labels) if images and labels else None


def read_idx_pair(root, train, num_classes=10):
    """Read and cross-check one split's image and label files under `root`.

    Returns
    -------
    images : ndarray, uint8 (N, 1, H, W)
    labels : ndarray, int64 (N,)
    """
    files = find_idx(root, train)
    if files is None:
        stems = " and ".join(f"{s}[.gz]" for s in IDX_FILES[train])
        raise FileNotFoundError(f"{root}: missing {stems}")
    images = read_idx(files[0], 3)
    labels = read_idx(files[1], 1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{files[1]}: {labels.shape[0]} labels for {images.shape[0]} images "
                           f"in {files[0]}")
    check_labels(labels, num_classes, str(files[1]))
    return images[:, None], labels


class _IDXDataset(ArrayDataset):
    CLASSES = MNIST_CLASSES
    DEFAULT_ROOT = None

    def __init__(self, root=None, train=True):
        if root is None:
            if self.DEFAULT_ROOT is None or not self.DEFAULT_ROOT.is_dir():
                raise FileNotFoundError(
                    f"{type(self).__name__}: no root given"
                    + (f" and the default {self.DEFAULT_ROOT} does not exist" if self.DEFAULT_ROOT
                       else ""))
            root = self.DEFAULT_ROOT
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{type(self).__name__} root {root} does not exist")
        images, labels = read_idx_pair(root, train, len(self.CLASSES))
        super().__init__(images, labels, self.CLASSES)
        self.root, self.train = root, train


class MNIST(_IDXDataset):
    """MNIST handwritten digits: 28x28 grayscale, 60,000 train + 10,000 test, classes "0".."9".

    Parameters
    ----------
    root : str or Path
        Directory with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
        t10k-labels-idx1-ubyte (each raw or .gz).
    train : bool
        The training split or the test split (t10k).

    Attributes
    ----------
    images : ndarray, uint8 (N, 1, 28, 28)
    labels : ndarray, int64 (N,)
    classes : list of str

    Raises
    ------
    FileNotFoundError
        `root` or one of the split's files is missing.
    DatasetError
        Bad magic number, truncated file, count mismatch or label out of range (names the file).
    """


class FashionMNIST(_IDXDataset):
    """Fashion-MNIST (Zalando): 28x28 grayscale clothing images, 60,000 train + 10,000 test.

    Same files and parameters as MNIST; `root` defaults to /usr/share/datasets/fashion-mnist
    (Debian's dataset-fashion-mnist package) when that exists.
    """
    CLASSES = FASHION_CLASSES
    DEFAULT_ROOT = FASHION_DEFAULT_ROOT
