"""Class-per-subfolder image datasets (PNG/JPEG via Pillow) with a decode cache."""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnframe._files import atomic_write
from cnnframe.data.base import ArrayDataset, DatasetError, default_cache_dir

EXTENSIONS = (".png", ".jpg", ".jpeg")  # lower case
CACHE_VERSION = 2
_MODES = {"RGB": 3, "L": 1}
# The largest image (width x height) decoded by default: 4096x4096, 48 MiB as RGB. Checked from
# the file's header, before any pixel is decoded.
MAX_PIXELS = 4096 * 4096
# Pillow's modes for 16-bit grayscale ("I" is what older Pillow versions give a 16-bit PNG).
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_CACHE_MAGIC = b"cnnframe image cache\n"


def _require_pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("ImageFolder needs Pillow to decode PNG/JPEG files: "
                          "pip install Pillow (or pip install cnnframe[images])") from None
    return Image


class ImageFile(NamedTuple):
    """One image of a scanned folder: its path, label and the stat fields the cache key uses."""
    path: str
    label: int
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int


def _unreadable(path, exc):
    """The DatasetError for a file or folder the scan cannot stat (e.g. a symlink loop)."""
    return DatasetError(f"{path}: cannot read ({exc.strerror or exc}); a broken symlink or a "
                        "symlink loop?")


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
    files : list of ImageFile
        Each image's (path, label, size, mtime_ns, ino, ctime_ns), by class then file name.

    Raises
    ------
    FileNotFoundError
        `root` or a requested class folder is missing.
    DatasetError
        No class folders, a class folder holds no images, or a folder or image cannot be read
        (a symlink loop, no permission); the message names it.
    """
    root = Path(root)
    extensions = tuple(extensions)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {root} does not exist or is not a directory")
    if classes is None:
        classes = []
        for e in _list_folder(root):
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    classes.append(e.name)
            except OSError as exc:
                raise _unreadable(e.path, exc) from None
        classes.sort()
        if not classes:
            raise DatasetError(f"{root}: no class subfolders (expected root/<class>/<image>)")
    files = []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{root}: class folder {name!r} does not exist")
        images = []
        for e in _list_folder(folder):
            if e.name.startswith(".") or not e.name.lower().endswith(extensions):
                continue
            try:
                if e.is_file():
                    st = e.stat()  # follows symlinks, as is_file() does
                    images.append(ImageFile(e.path, label, st.st_size, st.st_mtime_ns,
                                            st.st_ino, st.st_ctime_ns))
            except OSError as exc:
                raise _unreadable(e.path, exc) from None
        if not images:
            raise DatasetError(f"{folder}: empty class folder (no {'/'.join(extensions)} images)")
        files += sorted(images, key=lambda f: os.path.basename(f.path))
    return list(classes), files


def _list_folder(folder):
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError as exc:
        raise _unreadable(folder, exc) from None


def cache_key(root, classes, files, mode):
    """The SHA-256 (hex) of everything the decoded array depends on.

    That is the resolved root, the colour mode, the class list, and each file's path relative to
    the root, label, size, inode, mtime and ctime (ns). A file edited in place keeps its inode and
    may keep its size and mtime (``os.utime`` can restore the mtime), but its ctime changes and
    cannot be set back; another folder with the same names, sizes and mtimes has another root.
    """
    prefix = os.path.join(root, "")  # scan_image_folder's paths start with it
    listing = [[f.label, f.path[len(prefix):] if f.path.startswith(prefix) else f.path, f.size,
                f.ino, f.mtime_ns, f.ctime_ns] for f in files]
    text = json.dumps([CACHE_VERSION, str(Path(root).resolve()), mode, list(classes), listing])
    return hashlib.sha256(text.encode()).hexdigest()


def _open_checked(path, Image, max_pixels):
    """Open `path` with Pillow (reads the header only) and check its size against `max_pixels`.

    Raises
    ------
    DatasetError
        The file is missing, unreadable, not an image, or larger than `max_pixels` (or than
        Pillow's own decompression-bomb limit); the message names the file.
    """
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file does not exist") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a directory, not an image file") from None
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: image is too large to decode safely ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for hostile files
        raise DatasetError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        im.close()
        raise DatasetError(
            f"{path}: image is {w}x{h} = {w * h:,} pixels, more than max_pixels={max_pixels:,} "
            "(checked before decoding); resize it first, or pass a larger max_pixels")
    return im


def _pixels(path, im, mode, Image):
    """The decoded pixels of open image `im` as uint8 (H, W, C) in colour `mode`.

    16-bit grayscale is scaled to 8 bits (value * 255 / 65535, rounded) rather than clipped at
    255. Pillow itself decodes 16-bit RGB(A) PNGs to 8 bits by keeping the high byte, which is
    within 1 of that rounding.
    """
    try:
        if im.mode in _WIDE_GRAY_MODES:
            wide = np.asarray(im)
            if im.mode == "I":  # 32-bit ints holding 16-bit values
                wide = np.clip(wide, 0, 65535)
            gray = (wide.astype(np.uint32) * 255 + 32767) // 65535
            im = Image.fromarray(gray.astype(np.uint8), "L")
        if im.mode != mode:
            im = im.convert(mode)
        arr = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - truncated data, bad chunks, decoder errors
        raise DatasetError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None
    return arr.reshape(arr.shape[0], arr.shape[1], -1)


def load_image(path, mode="RGB", size=None, max_pixels=MAX_PIXELS):
    """Decode one image file, e.g. for prediction.

    Parameters
    ----------
    path : str or Path
        A PNG or JPEG file (any format Pillow reads).
    mode : {"RGB", "L"}
        Colour mode the image is converted to (3 or 1 channels).
    size : (int, int), optional
        (H, W) to resize to (bilinear); default: keep the file's size.
    max_pixels : int or None
        Refuse images with more pixels than this, from the header, before decoding; None lifts
        the limit (Pillow's own decompression-bomb limit still applies).

    Returns
    -------
    image : ndarray, uint8 (C, H, W)
    original_size : (int, int)
        (H, W) of the image in the file, before any resizing.

    Raises
    ------
    DatasetError
        For every failure to read the file: missing, a directory, not an image, truncated, or
        too large (the message names the file).
    ImportError
        Pillow is not installed.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    Image = _require_pillow()
    with _open_checked(path, Image, max_pixels) as im:
        w, h = im.size
        arr = _pixels(path, im, mode, Image)
    if size is not None and tuple(size) != (h, w):
        resized = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
        arr = np.asarray(resized.resize((int(size[1]), int(size[0])), Image.BILINEAR))
        arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)), (h, w)


def _decode_into(out, paths, start, mode, max_pixels, Image):
    h, w = out.shape[2:]
    for i, path in enumerate(paths, start):
        with _open_checked(path, Image, max_pixels) as im:
            if im.size != (w, h):  # checked from the header, before decoding
                raise DatasetError(
                    f"{path}: image is {im.size[0]}x{im.size[1]} pixels, expected {w}x{h} (the "
                    "size of the folder's first image)")
            out[i] = _pixels(path, im, mode, Image).transpose(2, 0, 1)


def _physical_memory():
    """Bytes of RAM in this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def decode_images(paths, mode="RGB", num_workers=None, progress=False, max_pixels=MAX_PIXELS):
    """Decode image files of one size into a uint8 array (N, C, H, W), in parallel threads.

    Each file's size is read from its header and checked (against `max_pixels` and against the
    first file's size) before it is decoded, and the whole array must fit in the machine's RAM.

    Raises
    ------
    DatasetError
        A file cannot be read or decoded, is larger than `max_pixels`, or differs in size from
        the first (names the file); or the decoded images would not fit in memory.
    """
    Image = _require_pillow()
    channels = _MODES[mode]
    with _open_checked(paths[0], Image, max_pixels) as im:
        w, h = im.size
    nbytes = len(paths) * channels * h * w
    ram = _physical_memory()
    if ram is not None and nbytes > ram:
        raise DatasetError(
            f"{len(paths)} images of {w}x{h} pixels ({mode}, first: {paths[0]}) need "
            f"{nbytes / 2**30:.1f} GiB decoded, more than this machine's {ram / 2**30:.1f} GiB "
            "of memory; use smaller images or fewer of them")
    try:
        out = np.empty((len(paths), channels, h, w), np.uint8)
    except MemoryError:
        raise DatasetError(f"{len(paths)} images of {w}x{h} pixels ({mode}, first: {paths[0]}) "
                           f"need {nbytes / 2**30:.1f} GiB decoded: out of memory") from None
    chunk = 256
    starts = range(0, len(paths), chunk)
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
        futures = [pool.submit(_decode_into, out, paths[s:s + chunk], s, mode, max_pixels, Image)
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
    return out


class ImageFolder(ArrayDataset):
    """Images in class-per-subfolder layout (root/<class>/<image>.png|.jpg), decoded once, cached.

    The decoded uint8 array is cached in `cache_dir`, so later loads skip decoding (60,000 32x32
    images load in about a second). The cache key covers the resolved root, the colour mode, the
    classes and each file's relative path, size, inode, mtime and ctime, so any change to the
    folder (even an edit in place with its mtime restored) or another folder with the same file
    names gives a new key. The key is stored inside the cache file and checked when it is read;
    the file is written atomically and read without pickle. All images must have the same size.

    Size policy: images are not resized, and each image's size is read from its header before it
    is decoded. An image with more than `max_pixels` pixels (default 4096x4096) is refused with
    a DatasetError naming it, as is anything beyond Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``), and the whole decoded array must fit in the machine's RAM.
    The array holds N * C * H * W bytes in memory and again in the cache file: resize large
    photos before training a CNN on them.

    16-bit PNGs are scaled to 8 bits (grayscale: value * 255 / 65535 rounded; RGB(A): Pillow
    keeps the high byte, within 1 of that), not clipped.

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
    max_pixels : int or None
        The most pixels (width x height) an image may have; None lifts this limit (Pillow's own
        limit still applies).

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
        Empty class folder; an unreadable folder or file (e.g. a symlink loop), an undecodable
        image, an image larger than `max_pixels` or of a different size (each names the file);
        decoded images that would not fit in memory.
    ImportError
        Pillow is missing and nothing is cached.
    """

    def __init__(self, root, classes=None, mode="RGB", cache=True, cache_dir=None,
                 num_workers=None, progress=None, max_pixels=MAX_PIXELS):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        self.root = Path(root)
        classes, files = scan_image_folder(self.root, classes)
        self.files = [f.path for f in files]
        labels = np.fromiter((f.label for f in files), np.int64, len(files))
        self.cache_path, self.from_cache, images = None, False, None
        if cache:
            base = (Path(cache_dir) if cache_dir is not None
                    else default_cache_dir() / "image_folder")
            key = cache_key(self.root, classes, files, mode)
            self.cache_path = base / f"{key[:40]}.cache"
            images = _read_cache(self.cache_path, key, len(files), _MODES[mode])
        if images is None:
            progress = len(files) > 5000 if progress is None else progress
            images = decode_images(self.files, mode, num_workers, progress, max_pixels)
            if cache:
                atomic_write(self.cache_path, lambda f: _write_cache(f, key, images))
        else:
            self.from_cache = True
        super().__init__(images, labels, classes)


def _write_cache(f, key, images):
    """The cache file: a magic line, the full key and a newline, then the array in .npy format."""
    f.write(_CACHE_MAGIC + key.encode() + b"\n")
    np.lib.format.write_array(f, images, allow_pickle=False)


def _read_cache(path, key, n, channels):
    """The cached array if `path` holds one stored under `key` of n images of C channels."""
    try:
        with open(path, "rb") as f:
            if f.read(len(_CACHE_MAGIC) + len(key) + 1) != _CACHE_MAGIC + key.encode() + b"\n":
                return None  # another key (or an old or foreign file) under this name
            images = np.lib.format.read_array(f, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError):
        return None  # unreadable cache: decode again and overwrite it
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:2] != (n, channels):
        return None
    return images
