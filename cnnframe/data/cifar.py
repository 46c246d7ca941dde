"""CIFAR-10 in its two official formats (python pickles, binary records), read from the extracted
directory or straight from the .tar.gz, with an optional checksummed download."""
import gzip
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from cnnframe.data.base import ArrayDataset, DatasetError, check_labels, default_data_root
from cnnframe.data.download import DEADLINE, download as _download, mirror_urls
from cnnframe.data.image_folder import ImageFolder
from cnnframe.data.safe_pickle import safe_loads

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/"
MIRRORS_ENV = "CNNFRAME_CIFAR10_MIRRORS"
ARCHIVES = {"binary": "cifar-10-binary.tar.gz", "python": "cifar-10-python.tar.gz"}
DIRS = {"binary": "cifar-10-batches-bin", "python": "cifar-10-batches-py"}
# Expected MD5 of each archive (tests substitute their own for tiny archives).
MD5 = {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
       "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}
# The archives are 162.2 MiB (binary) and 162.6 MiB (python); a download is stopped beyond this.
ARCHIVE_MAX_BYTES = 180 * 2**20
RECORD = 1 + 3 * 32 * 32  # binary format: a label byte, then R, G, B planes of 32x32
# Where a class-per-folder copy (DIR/train/<class>/*.jpg, DIR/test/<class>/*.jpg) may sit under a
# data root: the root itself or one of these subfolders.
IMAGE_FOLDER_DIRS = ("cifar10-jpeg", "cifar10")


def batch_files(fmt, train):
    """The batch file names of split `train` in format `fmt` ("binary" or "python")."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    return [n + ".bin" for n in names] if fmt == "binary" else names


def find_cifar10(root):
    """Every CIFAR-10 copy under `root`, best first: a list of (format, path).

    `root` may hold the extracted directories or the archives, or be one of them itself. Binary
    comes before python (no unpickling), and a directory before its archive (no decompression).
    """
    root = Path(root)
    found = []
    for fmt in ("binary", "python"):
        for path in (root / DIRS[fmt], root / ARCHIVES[fmt]):
            if path.exists():
                found.append((fmt, path))
        is_dir, is_archive = root.name == DIRS[fmt], root.name == ARCHIVES[fmt]
        if (is_dir and root.is_dir()) or (is_archive and root.is_file()):
            found.append((fmt, root))
    return found


def find_cifar10_image_folder(root):
    """A class-per-folder CIFAR-10 copy at `root` or in root/cifar10-jpeg or root/cifar10.

    Such a copy holds train/<class>/ and test/<class>/ folders of images named by CIFAR-10's
    classes (airplane, automobile, ...).

    Returns
    -------
    Path or None
        The copy's directory (the parent of train/ and test/), or None when there is none.
    """
    root = Path(root)
    for folder in (root, *(root / name for name in IMAGE_FOLDER_DIRS)):
        if any((folder / split / CLASSES[0]).is_dir() for split in ("train", "test")):
            return folder
    return None


def read_cifar10_image_folder(folder, train=True, cache=True, progress=None):
    """Read one split of a class-per-folder CIFAR-10 copy (see `find_cifar10_image_folder`).

    Returns
    -------
    ImageFolder
        Its images (uint8 (N, 3, 32, 32)), labels (int64 (N,)) and classes (CIFAR-10's order).

    Raises
    ------
    FileNotFoundError
        The split folder or one of the ten class folders is missing.
    DatasetError
        An image cannot be decoded or is not 32x32 (names the file).
    """
    split = Path(folder) / ("train" if train else "test")
    images = ImageFolder(split, classes=CLASSES, cache=cache, progress=progress)
    if images.image_shape != (3, 32, 32):
        _, h, w = images.image_shape
        raise DatasetError(f"{images.files[0]}: image is {w}x{h} pixels; CIFAR-10 images are "
                           "32x32")
    return images


def parse_binary(data, source):
    """Records of a binary batch -> (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    if len(data) == 0 or len(data) % RECORD:
        raise DatasetError(f"{source}: size {len(data)} bytes is not a whole number of "
                           f"{RECORD}-byte records (1 label byte + 3072 pixel bytes); truncated?")
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    check_labels(labels, len(CLASSES), source)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def parse_python(data, source):
    """A pickled python batch -> (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    try:
        batch = safe_loads(data)
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"{source}: cannot unpickle the batch: {exc}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{source}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DatasetError(f"{source}: the batch dict lacks 'data' or 'labels' "
                           f"(keys: {sorted(map(str, batch))})")
    images, labels = batch["data"], batch["labels"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != RECORD - 1:
        desc = (f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray)
                else type(images).__name__)
        raise DatasetError(f"{source}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(f"{source}: 'labels' must be a list of ints") from None
    if labels.shape != (images.shape[0],):
        raise DatasetError(f"{source}: {labels.size} labels for {images.shape[0]} images")
    check_labels(labels, len(CLASSES), source)
    return images.reshape(-1, 3, 32, 32), labels


def _read_members(path, fmt, names):
    """The bytes of each batch file `names`, from the directory or archive at `path`."""
    path = Path(path)
    if path.is_dir():
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise DatasetError(f"{path}: missing batch file(s) {', '.join(missing)}")
        return {n: (path / n).read_bytes() for n in names}
    wanted = {f"{DIRS[fmt]}/{n}": n for n in names}
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:  # one sequential pass: seeking back in a .gz re-decompresses
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    out[wanted[name]] = tar.extractfile(member).read()
                    if len(out) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise DatasetError(f"{path}: cannot read the archive ({type(exc).__name__}: {exc}); "
                           "truncated or corrupt? Delete it and download again") from None
    missing = [m for m, n in wanted.items() if n not in out]
    if missing:
        raise DatasetError(f"{path}: the archive lacks {', '.join(missing)}")
    return out


def read_cifar10(path, fmt, train=True):
    """Read one split from a CIFAR-10 directory or archive of format `fmt`.

    Returns
    -------
    images : ndarray, uint8 (N, 3, 32, 32)
    labels : ndarray, int64 (N,)
    """
    names = batch_files(fmt, train)
    parse = parse_binary if fmt == "binary" else parse_python
    blobs = _read_members(path, fmt, names)
    parts = [parse(blobs[n], f"{path}/{n}" if Path(path).is_dir() else f"{path}:{n}")
             for n in names]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


class CIFAR10(ArrayDataset):
    """CIFAR-10: 60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test).

    Parameters
    ----------
    root : str or Path, optional
        Directory holding cifar-10-batches-bin/, cifar-10-binary.tar.gz, cifar-10-batches-py/ or
        cifar-10-python.tar.gz (archives are read in place, not extracted), or one of those
        itself; or a class-per-folder copy (root/train/<class>/*.jpg, root/test/<class>/*.jpg,
        also found in root/cifar10-jpeg or root/cifar10), decoded once and cached as
        `ImageFolder` does. The official release is used when both are present.
        Default: $CNNFRAME_DATA, else ~/.cache/cnnframe/datasets.
    train : bool
        The training split (data_batch_1..5) or the test split (test_batch).
    download : bool
        When no copy is found, download the official `download_format` archive into `root`
        (progress bar, atomic write, MD5 check).
    mirrors : list of str, optional
        Base URLs tried before the official one; default: $CNNFRAME_CIFAR10_MIRRORS (comma or
        space separated).
    download_format : {"binary", "python"}
        Which archive to download; binary needs no unpickling.
    progress : bool
        Show the download progress bar (and, for a class-per-folder copy, the decoding one).
    cache : bool
        For a class-per-folder copy: use the ImageFolder decode cache.

    Attributes
    ----------
    images : ndarray, uint8 (N, 3, 32, 32)
    labels : ndarray, int64 (N,)
    classes : list of str
        airplane automobile bird cat deer dog frog horse ship truck.
    format, path
        Which copy was read: "binary" or "python" and its directory or archive, or
        "image_folder" and the split's folder (root/train or root/test).

    Raises
    ------
    FileNotFoundError
        No copy under `root` and download=False.
    DatasetError
        A batch file is truncated or malformed, or a label is out of range (names the file).
    DownloadError
        The download failed (names each URL tried and how to fetch the archive by hand).
    """

    def __init__(self, root=None, train=True, download=False, mirrors=None,
                 download_format="binary", progress=True, cache=True):
        if download_format not in ARCHIVES:
            raise ValueError(f"download_format must be one of {sorted(ARCHIVES)}, "
                             f"got {download_format!r}")
        root = Path(root) if root is not None else default_data_root()
        found = find_cifar10(root) if root.exists() else []
        folder = find_cifar10_image_folder(root) if root.exists() and not found else None
        if not found and folder is None and download:
            fetch_cifar10(root, download_format, mirrors=mirrors, progress=progress)
            found = find_cifar10(root)
        if found:
            self.format, self.path = found[0]
            images, labels = read_cifar10(self.path, self.format, train)
        elif folder is not None:
            split = read_cifar10_image_folder(folder, train, cache, None if progress else False)
            self.format, self.path = "image_folder", split.root
            images, labels = split.images, split.labels
        else:
            what = "does not exist" if not root.exists() else "holds no CIFAR-10 copy"
            raise FileNotFoundError(
                f"CIFAR-10 root {root} {what}: expected {DIRS['binary']}/, {ARCHIVES['binary']}, "
                f"{DIRS['python']}/ or {ARCHIVES['python']} there, or a class-per-folder copy "
                f"(train/<class>/*.jpg and test/<class>/*.jpg, there or in "
                f"{' or '.join(IMAGE_FOLDER_DIRS)}/); pass download=True to fetch the official "
                "release")
        super().__init__(images, labels, CLASSES)
        self.train = train


def fetch_cifar10(root, fmt="binary", mirrors=None, progress=True, timeout=60.0,
                  deadline=DEADLINE):
    """Download the official CIFAR-10 archive of format `fmt` into `root` and verify its MD5.

    Each URL gets `timeout` seconds per read and `deadline` seconds in all, and is refused once
    it sends more than ARCHIVE_MAX_BYTES (180 MiB; the archives are about 163 MiB).

    Returns
    -------
    Path
        The archive.
    """
    name = ARCHIVES[fmt]
    urls = mirror_urls(name, OFFICIAL_URL, mirrors, MIRRORS_ENV)
    hint = (f"To fetch it by hand, download {OFFICIAL_URL}{name} (MD5 {MD5.get(name)}) and put it "
            f"(or its extracted {DIRS[fmt]}/ directory) in {Path(root).resolve()}; or set "
            f"{MIRRORS_ENV} to a mirror's base URL.")
    return _download(urls, Path(root) / name, MD5.get(name), timeout=timeout, progress=progress,
                     hint=hint, max_bytes=ARCHIVE_MAX_BYTES, deadline=deadline)
