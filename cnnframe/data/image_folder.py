"""Class-per-subfolder image datasets (PNG/JPEG via Pillow) with a decode cache."""
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cnnframe._files import atomic_write
from cnnframe.data.base import ArrayDataset, DatasetError, default_cache_dir

EXTENSIONS = (".png", ".jpg", ".jpeg")  # lower case
CACHE_VERSION = 1
_MODES = {"RGB": 3, "L": 1}


def _require_pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("ImageFolder needs Pillow to decode PNG/JPEG files: "
                          "pip install Pillow (or pip install cnnframe[images])") from None
    return Image


def scan_image_folder(root, classes=None, extensions=EXTENSIONS):
    """List the images of a class-per-subfolder tree, without decoding them.

    Parameters
    ----------
    root : str or Path
        Directory with one subfolder per class.
    classes : list of str, optional
        Class folder names in label order; default: the sorted subfolder names.
    extensions : tuple of str
        Lower-case file extensions (with the dot) counted as images; other files are ignored.

    Returns
    -------
    classes : list of str
    files : list of (str, int, int, int)
        Each image's path, label, size in bytes and mtime in ns, by class then file name.

    Raises
    ------
    FileNotFoundError
        `root` or a requested class folder is missing.
    DatasetError
        No class folders, or a class folder holds no images.
    """
    root = Path(root)
    extensions = tuple(extensions)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {root} does not exist or is not a directory")
    if classes is None:
        classes = sorted(e.name for e in os.scandir(root)
                         if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise DatasetError(f"{root}: no class subfolders (expected root/<class>/<image>)")
    files = []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{root}: class folder {name!r} does not exist")
        entries = sorted((e.name, e) for e in os.scandir(folder) if not e.name.startswith(".")
                         and e.name.lower().endswith(extensions) and e.is_file())
        if not entries:
            raise DatasetError(f"{folder}: empty class folder (no {'/'.join(extensions)} images)")
        for _, e in entries:
            st = e.stat()
            files.append((e.path, label, st.st_size, st.st_mtime_ns))
    return list(classes), files


def cache_key(classes, files, mode):
    """A hash of the class list, the file names, sizes and mtimes, and the colour mode."""
    h = hashlib.sha256(f"v{CACHE_VERSION}\n{mode}\n{classes}\n".encode())
    h.update("".join(f"{label}/{path[path.rfind(os.sep) + 1:]}\t{size}\t{mtime}\n"
                     for path, label, size, mtime in files).encode())
    return h.hexdigest()[:40]


def _decode_into(out, paths, start, mode, shape, Image):
    for i, path in enumerate(paths, start):
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert(mode) if im.mode != mode else im)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for bad files
            raise DatasetError(f"{path}: cannot decode image ({exc})") from None
        if arr.shape[:2] != shape:
            raise DatasetError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]} pixels, expected "
                               f"{shape[1]}x{shape[0]} (the size of the folder's first image)")
        out[i] = arr.reshape(out.shape[1:])


def decode_images(paths, mode="RGB", num_workers=None, progress=False):
    """Decode image files of one size into a uint8 array (N, C, H, W), in parallel threads.

    Raises
    ------
    DatasetError
        A file cannot be decoded or differs in size from the first (names the file).
    """
    Image = _require_pillow()
    channels = _MODES[mode]
    try:
        with Image.open(paths[0]) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{paths[0]}: cannot decode image ({exc})") from None
    out = np.empty((len(paths), h, w, channels), np.uint8)
    chunk = 256
    starts = range(0, len(paths), chunk)
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
        futures = [pool.submit(_decode_into, out, paths[s:s + chunk], s, mode, (h, w), Image)
                   for s in starts]
        try:
            from tqdm.auto import tqdm
            with tqdm(total=len(paths), desc="decoding images", unit="img", disable=not progress,
                      leave=False) as bar:
                for s, f in zip(starts, futures):
                    f.result()
                    bar.update(min(chunk, len(paths) - s))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


class ImageFolder(ArrayDataset):
    """Images in class-per-subfolder layout (root/<class>/<image>.png|.jpg), decoded once, cached.

    The decoded uint8 array is cached as an .npy file keyed by the folder's file list, file sizes
    and mtimes, so later loads skip decoding (60,000 32x32 images load in about a second); any
    change to the folder gives a new key. The cache is written atomically and read with
    allow_pickle=False. All images must have the same size.

    Parameters
    ----------
    root : str or Path
        The split's root directory (e.g. cifar10-jpeg/train).
    classes : list of str, optional
        Class folder names in label order; default: the sorted subfolder names.
    mode : {"RGB", "L"}
        Colour mode images are converted to (3 or 1 channels).
    cache : bool
        Use (read and write) the decode cache.
    cache_dir : str or Path, optional
        Default: $CNNFRAME_CACHE/image_folder, else ~/.cache/cnnframe/image_folder.
    num_workers : int, optional
        Decoding threads for the first load (default: min(8, CPU count)).
    progress : bool, optional
        Progress bar while decoding; default: when there are more than 5,000 images.

    Attributes
    ----------
    images : ndarray, uint8 (N, C, H, W)
    labels : ndarray, int64 (N,)
    classes : list of str
    cache_path : Path or None
        The cache file used, if any.
    from_cache : bool
        Whether this load came from the cache.

    Raises
    ------
    FileNotFoundError
        Missing root or class folder.
    DatasetError
        Empty class folder, undecodable image, or an image of a different size (names the file).
    ImportError
        Pillow is missing and nothing is cached.
    """

    def __init__(self, root, classes=None, mode="RGB", cache=True, cache_dir=None,
                 num_workers=None, progress=None):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        self.root = Path(root)
        classes, files = scan_image_folder(self.root, classes)
        self.files = [f[0] for f in files]
        labels = np.fromiter((f[1] for f in files), np.int64, len(files))
        self.cache_path, self.from_cache, images = None, False, None
        if cache:
            base = (Path(cache_dir) if cache_dir is not None
                    else default_cache_dir() / "image_folder")
            self.cache_path = base / f"{cache_key(classes, files, mode)}.npy"
            images = self._load_cache(len(files), _MODES[mode])
        if images is None:
            progress = len(files) > 5000 if progress is None else progress
            images = decode_images(self.files, mode, num_workers, progress)
            if cache:
                atomic_write(self.cache_path, lambda f: np.save(f, images, allow_pickle=False))
        else:
            self.from_cache = True
        super().__init__(images, labels, classes)

    def _load_cache(self, n, channels):
        if not self.cache_path.is_file():
            return None
        try:
            images = np.load(self.cache_path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # unreadable cache: decode again and overwrite it
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:2] != (n, channels):
            return None
        return images
