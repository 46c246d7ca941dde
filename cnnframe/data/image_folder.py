"""Class-per-subfolder image datasets (PNG/JPEG via Pillow), sized on load, with a decode cache.

Images are decoded in parallel worker processes, oriented by their EXIF tag, converted to RGB or
grayscale and (with `image_size`) resized to one size. With the cache on, the decoded uint8 array
is written straight to a ``.npy`` file, a chunk at a time, and memory-mapped from there: a folder
larger than RAM trains with the OS page cache holding what fits.
"""
import collections
import hashlib
import json
import math
import os
import re
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnframe._files import atomic_write, remove_stale_temp_files
from cnnframe.data.base import ArrayDataset, DatasetError, default_cache_dir

EXTENSIONS = (".png", ".jpg", ".jpeg")  # lower case
CACHE_VERSION = 3
_MODES = {"RGB": 3, "L": 1}
# The largest image (width x height) decoded by default: 4096x4096, 48 MiB as RGB. Checked from
# the file's header, before any pixel is decoded.
MAX_PIXELS = 4096 * 4096
# How `image_size` is reached from an image of another shape (see ImageFolder).
RESIZE_MODES = ("shorter_side_then_center_crop", "stretch", "pad")
# Pillow's modes for 16-bit grayscale ("I" is what older Pillow versions give a 16-bit PNG).
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# The cache file is a plain .npy followed by this line and the full key, so np.load reads it and
# a file copied or renamed under another key's name is recognised and refused.
_CACHE_TRAILER = b"\ncnnframe image cache\n"
_CACHE_NAME = re.compile(r"[0-9a-f]{40}\.npy\Z")
# Decoded bytes per task handed to a worker process (whole images; at least one).
_CHUNK_BYTES = 4 * 2**20
# Fewer images than this are decoded in this process: starting workers costs more.
_PROCESSES_FROM = 256
_EXIF_ORIENTATION = 0x0112


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


def check_image_size(image_size, name="image_size"):
    """`image_size` as a tuple (H, W) of ints >= 1 (an int n means (n, n)), or None.

    Raises
    ------
    ValueError
        Not an int or a pair of ints >= 1; the message names `name`.
    """
    if image_size is None:
        return None
    sizes = [image_size] * 2 if np.ndim(image_size) == 0 else list(image_size)
    if len(sizes) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                  and s >= 1 for s in sizes):
        raise ValueError(f"{name} must be an int or a pair [height, width] of ints >= 1, got "
                         f"{image_size!r}")
    return int(sizes[0]), int(sizes[1])


def check_resize(resize):
    """Raise ValueError unless `resize` is one of RESIZE_MODES."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(map(repr, RESIZE_MODES))}, got "
                         f"{resize!r}")
    return resize


def cache_key(root, classes, files, mode, image_size=None, resize=None):
    """The SHA-256 (hex) of everything the decoded array depends on.

    That is the cache format version, the resolved root, the colour mode, the image size and
    resize mode, the class list, and each file's path relative to the root, label, size,
    inode, mtime and ctime (ns). A file edited in place keeps its inode and may keep its size and
    mtime (``os.utime`` can restore the mtime), but its ctime changes and cannot be set back;
    another folder with the same names, sizes and mtimes has another root.
    """
    prefix = os.path.join(root, "")  # scan_image_folder's paths start with it
    listing = [[f.label, f.path[len(prefix):] if f.path.startswith(prefix) else f.path, f.size,
                f.ino, f.mtime_ns, f.ctime_ns] for f in files]
    size = None if image_size is None else list(image_size)
    text = json.dumps([CACHE_VERSION, str(Path(root).resolve()), mode, size,
                       resize if size is not None else None, list(classes), listing])
    return hashlib.sha256(text.encode()).hexdigest()


def stratified_split(labels, fraction, seed=0):
    """Hold out `fraction` of each class, at random but seeded: (kept, held) index arrays.

    Class k of n_k images gives round(fraction * n_k) of them to `held`, but at least one when
    n_k >= 2 and never all of them, so every class with two images or more is in both parts.
    Class k's choice depends only on (seed, k) and its own images.

    Parameters
    ----------
    labels : array of int, shape (N,)
    fraction : float in (0, 1)
    seed : int

    Returns
    -------
    kept, held : ndarray of int64, sorted, together a partition of range(N)
    """
    labels = np.asarray(labels)
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction!r}")
    held = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        n = members.size
        count = min(max(int(round(fraction * n)), 1 if n >= 2 else 0), n - 1)
        rng = np.random.default_rng([int(seed), int(k)])
        held.append(rng.permutation(members)[:count])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(labels.size), held)
    return kept.astype(np.int64), held.astype(np.int64)


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


def _orientation(im):
    """The EXIF orientation tag (1..8; 1 = upright) from the header; 1 if absent or unreadable."""
    try:
        value = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block does not spoil the pixels
        return 1
    return value if 1 <= value <= 8 else 1


def _placement(w, h, size, resize):
    """Where an upright w x h image goes in an (H, W) `size` under `resize`.

    Returns
    -------
    box : (left, top, right, bottom) floats, the part of the image used
    scaled : (width, height) it is resized to
    offset : (x, y) of its top-left corner in the output (nonzero only for "pad")
    """
    out_h, out_w = size
    if resize == "stretch":
        return (0.0, 0.0, float(w), float(h)), (out_w, out_h), (0, 0)
    if resize == "pad":
        scale = min(out_w / w, out_h / h)
        sw, sh = max(1, min(out_w, round(w * scale))), max(1, min(out_h, round(h * scale)))
        return (0.0, 0.0, float(w), float(h)), (sw, sh), ((out_w - sw) // 2, (out_h - sh) // 2)
    scale = max(out_w / w, out_h / h)  # cover the output, then cut the middle of the excess
    bw, bh = out_w / scale, out_h / scale
    left, top = (w - bw) / 2, (h - bh) / 2
    return (left, top, left + bw, top + bh), (out_w, out_h), (0, 0)


def _to_mode(im, mode, Image):
    """Open image `im` converted to `mode` ("RGB" or "L").

    16-bit grayscale is scaled to 8 bits (value * 255 / 65535, rounded) rather than clipped at
    255; Pillow decodes 16-bit RGB(A) PNGs to 8 bits by keeping the high byte, within 1 of that
    rounding. Alpha is dropped (as ``convert("RGB")`` does); palette images with a transparent
    colour go through RGBA so that Pillow applies it.
    """
    if im.mode in _WIDE_GRAY_MODES:
        wide = np.asarray(im)
        if im.mode == "I":  # 32-bit ints holding 16-bit values
            wide = np.clip(wide, 0, 65535)
        gray = (wide.astype(np.uint32) * 255 + 32767) // 65535
        im = Image.fromarray(gray.astype(np.uint8), "L")
    elif im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return im if im.mode == mode else im.convert(mode)


def _decode(path, mode, size, resize, max_pixels, Image, expected=None):
    """Decode one file into uint8 (H, W, C): upright, in `mode`, resized to `size` (H, W).

    With `size` None the image keeps its size, which must equal `expected` (W, H) when given.
    JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) still at least as large as the
    part of the image used, then resized with Pillow's antialiased bilinear filter.

    Returns
    -------
    pixels : ndarray, uint8 (H, W, C)
    original_size : (int, int)
        (H, W) of the upright image in the file.
    """
    with _open_checked(path, Image, max_pixels) as im:
        orientation = _orientation(im)
        turned = orientation in (5, 6, 7, 8)  # rotated by 90 degrees: width and height swap
        w, h = im.size[::-1] if turned else im.size
        if size is None and expected is not None and (w, h) != tuple(expected):
            raise DatasetError(
                f"{path}: image is {w}x{h} pixels, expected {expected[0]}x{expected[1]} (the "
                "size of the folder's first image); pass image_size=(H, W) (image_size in a "
                "config's [data]) to resize every image to one size")
        try:
            if size is not None:
                box, scaled, _ = _placement(w, h, size, resize)
                need_w = math.ceil(w * scaled[0] / (box[2] - box[0]))
                need_h = math.ceil(h * scaled[1] / (box[3] - box[1]))
                need = (max(1, need_h), max(1, need_w)) if turned else (max(1, need_w),
                                                                       max(1, need_h))
                im.draft(mode, need)  # JPEG only; other formats ignore it
            if orientation != 1:
                from PIL import ImageOps
                im = ImageOps.exif_transpose(im)
            im = _to_mode(im, mode, Image)
            if size is not None:
                box, scaled, offset = _placement(im.size[0], im.size[1], size, resize)
                out = im.resize(scaled, Image.BILINEAR, box=box)
                if scaled != (size[1], size[0]):
                    canvas = Image.new(mode, (size[1], size[0]))  # zeros: black bars
                    canvas.paste(out, offset)
                    out = canvas
                im = out
            arr = np.asarray(im)
        except (DatasetError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - truncated data, bad chunks, decoder errors
            raise DatasetError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") \
                from None
    return arr.reshape(arr.shape[0], arr.shape[1], -1), (h, w)


def load_image(path, mode="RGB", size=None, max_pixels=MAX_PIXELS, resize="stretch"):
    """Decode one image file, e.g. for prediction.

    Parameters
    ----------
    path : str or Path
        A PNG or JPEG file (any format Pillow reads).
    mode : {"RGB", "L"}
        Colour mode the image is converted to (3 or 1 channels).
    size : (int, int), optional
        (H, W) to resize to (antialiased bilinear); default: keep the file's size.
    max_pixels : int or None
        Refuse images with more pixels than this, from the header, before decoding; None lifts
        the limit (Pillow's own decompression-bomb limit still applies).
    resize : {"stretch", "shorter_side_then_center_crop", "pad"}
        How an image of another aspect ratio reaches `size` (see `ImageFolder`).

    Returns
    -------
    image : ndarray, uint8 (C, H, W)
    original_size : (int, int)
        (H, W) of the image in the file (upright, after its EXIF orientation), before resizing.

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
    size = check_image_size(size, "size")
    check_resize(resize)
    Image = _require_pillow()
    arr, original = _decode(path, mode, size, resize, max_pixels, Image)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)), original


def _decode_chunk(paths, mode, size, resize, max_pixels, expected):
    """Decode `paths` into uint8 (k, C, H, W); runs in a worker process (or in this one)."""
    Image = _require_pillow()
    h, w = size if size is not None else expected[::-1]
    out = np.empty((len(paths), _MODES[mode], h, w), np.uint8)
    for i, path in enumerate(paths):
        pixels, _ = _decode(path, mode, size, resize, max_pixels, Image, expected)
        out[i] = pixels.transpose(2, 0, 1)
    return out


def default_workers():
    """Decoding processes by default: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _process_context():
    """Worker processes are forked on Linux, as PyTorch's DataLoader does: they start at once
    and do not re-run the main script (a fork server or spawn would, so a script without an
    ``if __name__ == "__main__":`` guard would start over in every worker). The workers run
    only Pillow and numpy code, none of the parent's threads. Elsewhere they are spawned."""
    import multiprocessing
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _decoded_chunks(paths, mode, size, resize, max_pixels, expected, workers):
    """Yield (start, uint8 (k, C, H, W)) for consecutive chunks of `paths`, in order.

    Each worker process decodes a chunk of about `_CHUNK_BYTES`; at most two chunks per worker
    are decoded ahead of the consumer, so memory use does not grow with the number of images.
    """
    h, w = size if size is not None else expected[::-1]
    per_image = _MODES[mode] * h * w
    n = len(paths)
    chunk = max(1, min(_CHUNK_BYTES // per_image, math.ceil(n / (4 * max(workers, 1)))))
    starts = range(0, n, chunk)
    args = (mode, size, resize, max_pixels, expected)
    if workers <= 1 or n < _PROCESSES_FROM:
        for s in starts:
            yield s, _decode_chunk(paths[s:s + chunk], *args)
        return
    pool = ProcessPoolExecutor(workers, mp_context=_process_context())
    pending = collections.deque()
    todo = iter(starts)
    try:
        for s in todo:
            pending.append((s, pool.submit(_decode_chunk, paths[s:s + chunk], *args)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            s, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                last = paths[min(s + chunk, n) - 1]
                raise DatasetError(f"a decoding process died while decoding {paths[s]} ... "
                                   f"{last} (out of memory, or a crash in an image decoder); "
                                   "decode with workers=1 to find the file") from None
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decode_chunk, paths[nxt:nxt + chunk], *args)))
            yield s, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _first_size(path, max_pixels, Image):
    """(W, H) of the upright image in `path`, from its header."""
    with _open_checked(path, Image, max_pixels) as im:
        return im.size[::-1] if _orientation(im) in (5, 6, 7, 8) else im.size


def _progress_bar(total, progress):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="decoding images", unit="img", disable=not progress,
                leave=False)


def _physical_memory():
    """Bytes of RAM in this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def decode_images(paths, mode="RGB", workers=None, progress=False, max_pixels=MAX_PIXELS,
                  image_size=None, resize="shorter_side_then_center_crop"):
    """Decode image files into one uint8 array (N, C, H, W) in memory, in worker processes.

    Each file's size is read from its header and checked against `max_pixels` before it is
    decoded. Without `image_size` every image must have the first one's size; with it, each is
    resized as `resize` says (see `ImageFolder`). The whole array must fit in the machine's RAM
    (`ImageFolder` with its cache on writes to disk instead).

    Parameters
    ----------
    paths : list of str
    mode : {"RGB", "L"}
    workers : int, optional
        Decoding processes; default: the CPUs this process may use.
    progress : bool
    max_pixels : int or None
    image_size : int or (int, int), optional
    resize : str

    Returns
    -------
    images : ndarray, uint8 (N, C, H, W)

    Raises
    ------
    DatasetError
        A file cannot be read or decoded, is larger than `max_pixels`, or (without
        `image_size`) differs in size from the first (names the file); or the decoded images
        would not fit in memory.
    """
    Image = _require_pillow()
    size, expected = check_image_size(image_size), None
    check_resize(resize)
    if size is None:
        expected = _first_size(paths[0], max_pixels, Image)
    h, w = size if size is not None else expected[::-1]
    channels = _MODES[mode]
    nbytes = len(paths) * channels * h * w
    ram = _physical_memory()
    if ram is not None and nbytes > ram:
        raise DatasetError(
            f"{len(paths)} images of {w}x{h} pixels ({mode}, first: {paths[0]}) need "
            f"{nbytes / 2**30:.1f} GiB decoded, more than this machine's {ram / 2**30:.1f} GiB "
            "of memory; use a smaller image_size, or ImageFolder's cache (memory-mapped)")
    try:
        out = np.empty((len(paths), channels, h, w), np.uint8)
    except MemoryError:
        raise DatasetError(f"{len(paths)} images of {w}x{h} pixels ({mode}, first: {paths[0]}) "
                           f"need {nbytes / 2**30:.1f} GiB decoded: out of memory") from None
    with _progress_bar(len(paths), progress) as bar:
        for s, chunk in _decoded_chunks(paths, mode, size, resize, max_pixels, expected,
                                        workers or default_workers()):
            out[s:s + len(chunk)] = chunk
            bar.update(len(chunk))
    return out


class ImageFolder(ArrayDataset):
    """Images in class-per-subfolder layout (root/<class>/<image>.png|.jpg), decoded once, cached.

    Sizing: with `image_size` = (H, W) every image is brought to that size on load, so a folder
    of photos of any sizes trains as is; `resize` says how an image of another aspect ratio gets
    there:

    - ``"shorter_side_then_center_crop"`` (default): scaled until it covers H x W, then the
      middle cut out (torchvision's ``Resize`` + ``CenterCrop``);
    - ``"stretch"``: scaled to H x W, the aspect ratio changes;
    - ``"pad"``: scaled to fit inside H x W, the rest black (zeros).

    Resizing uses Pillow's antialiased bilinear filter; JPEGs are decoded at a reduced DCT scale
    (``Image.draft``) when that still leaves enough pixels. Without `image_size` images are not
    resized and must all have the first one's size. Every image is turned upright by its EXIF
    orientation; grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images are converted
    to `mode` (16-bit grayscale: value * 255 / 65535 rounded, not clipped).

    Decoding runs in `workers` processes (forked on Linux). With the cache on (the default)
    the decoded uint8 array is written to a ``.npy`` file in `cache_dir`, a chunk at a time,
    and always memory-mapped from there
    (``np.load(path, mmap_mode="r", allow_pickle=False)``), so neither decoding nor training
    holds the whole set in RAM: the OS page cache keeps what fits, and a DataLoader gathers each
    batch from the map. Later loads map the file without decoding. The cache file needs
    N * C * H * W bytes of disk (checked before decoding); it ends with its key, which covers
    the resolved root, colour mode, image size, resize mode, classes and each file's relative
    path, size, inode, mtime and ctime, so any change to the folder (even an edit in place with
    its mtime restored), or another folder with the same names, gives a new key, and a file
    copied under another key's name is refused. It is written atomically and read without
    pickle. With ``cache=False`` the array is decoded into memory and must fit in RAM.

    Size policy: each image's size is read from its header before it is decoded; one with more
    than `max_pixels` pixels (default 4096x4096) is refused with a DatasetError naming it, as is
    anything beyond Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).

    Validation split: with `validation` = f, the folder's images are split per class by
    `stratified_split(labels, f, split_seed)` and this dataset holds the `subset` "train" or
    "validation" part (each part has its own cache file).

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
    workers : int, optional
        Decoding processes for the first load (default: the CPUs this process may use);
        fewer than 256 images are decoded in this process.
    progress : bool, optional
        Progress bar while decoding; default: when there are more than 5,000 images.
    max_pixels : int or None
        The most pixels (width x height) an image may have; None lifts this limit (Pillow's own
        limit still applies).
    image_size : int or (int, int), optional
        (H, W) every image is resized to; an int n means (n, n).
    resize : {"shorter_side_then_center_crop", "stretch", "pad"}
        How images reach `image_size`.
    validation : float in (0, 1), optional
        Fraction of each class held out (see above).
    subset : {"train", "validation"}
        Which part of the split this dataset holds (with `validation`).
    split_seed : int
        Seed of the split.

    Attributes
    ----------
    images : ndarray, uint8 (N, C, H, W); read-only and memory-mapped when cached
    labels : ndarray, int64 (N,)
    classes : list of str
    files : list of str
        The image files, in the order of `images`.
    cache_path : Path or None
        The cache file used, if any.
    from_cache : bool
        Whether this load came from the cache.
    memory_mapped : bool
        Whether `images` is mapped from the cache file (always, when cached).

    Raises
    ------
    FileNotFoundError
        Missing root or class folder.
    DatasetError
        Empty class folder; an unreadable folder or file (e.g. a symlink loop), an undecodable
        image, an image larger than `max_pixels` or (without `image_size`) of a different size
        (each names the file); a cache that would not fit on its disk, or decoded images that
        would not fit in memory (``cache=False``).
    ValueError
        A bad `image_size`, `resize`, `mode`, `validation` or `subset`.
    ImportError
        Pillow is missing and nothing is cached.
    """

    def __init__(self, root, classes=None, mode="RGB", cache=True, cache_dir=None,
                 workers=None, progress=None, max_pixels=MAX_PIXELS, *, image_size=None,
                 resize="shorter_side_then_center_crop", validation=None, subset="train",
                 split_seed=0):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        size = check_image_size(image_size)
        check_resize(resize)
        if subset not in ("train", "validation"):
            raise ValueError(f"subset must be 'train' or 'validation', got {subset!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(
                workers, (int, np.integer)) or workers < 1):
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        self.root = Path(root)
        classes, files = scan_image_folder(self.root, classes)
        if validation is not None:
            kept, held = stratified_split([f.label for f in files], validation, split_seed)
            files = [files[i] for i in (kept if subset == "train" else held)]
        self.image_size, self.resize, self.validation = size, resize, validation
        self.subset = subset if validation is not None else None
        self.files = [f.path for f in files]
        labels = np.fromiter((f.label for f in files), np.int64, len(files))
        self.cache_path, self.from_cache, self.memory_mapped = None, False, False
        progress = len(files) > 5000 if progress is None else progress
        workers = workers or default_workers()
        if not files:  # a validation part of a folder with one image per class
            images = np.zeros((0, _MODES[mode], *(size or (0, 0))), np.uint8)
        elif cache:
            base = (Path(cache_dir) if cache_dir is not None
                    else default_cache_dir() / "image_folder")
            key = cache_key(self.root, classes, files, mode, size, resize)
            self.cache_path = base / f"{key[:40]}.npy"
            images = _read_cache(self.cache_path, key, len(files), _MODES[mode], size)
            self.from_cache = images is not None
            if images is None:
                remove_stale_temp_files(base, _CACHE_NAME)  # left by decodes that were killed
                _decode_to_cache(self.cache_path, key, self.files, mode, size, resize,
                                 max_pixels, workers, progress)
                images = _read_cache(self.cache_path, key, len(files), _MODES[mode], size)
                if images is None:  # pragma: no cover - the file was just written
                    raise DatasetError(f"{self.cache_path}: the image cache just written "
                                       "cannot be read back")
            self.memory_mapped = True
        else:
            images = decode_images(self.files, mode, workers, progress, max_pixels, size,
                                   resize)
        super().__init__(images, labels, classes)


def _decode_to_cache(path, key, paths, mode, size, resize, max_pixels, workers, progress):
    """Decode `paths` straight into the cache file at `path`, chunk by chunk, atomically."""
    Image = _require_pillow()
    expected = _first_size(paths[0], max_pixels, Image) if size is None else None
    h, w = size if size is not None else expected[::-1]
    shape = (len(paths), _MODES[mode], h, w)
    nbytes = math.prod(shape)
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise DatasetError(
            f"{len(paths)} images of {w}x{h} pixels ({mode}) need {nbytes / 2**30:.2f} GiB of "
            f"image cache in {folder}, which has {free / 2**30:.2f} GiB free; point "
            "$CNNFRAME_CACHE (or cache_dir) at a larger disk, or use a smaller image_size")

    def write(f):
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|u1", "fortran_order": False, "shape": shape})
        done = 0
        with _progress_bar(len(paths), progress) as bar:
            for start, chunk in _decoded_chunks(paths, mode, size, resize, max_pixels,
                                                expected, workers):
                assert start == done  # chunks arrive in order
                f.write(memoryview(np.ascontiguousarray(chunk)).cast("B"))
                done += len(chunk)
                bar.update(len(chunk))
        f.write(_CACHE_TRAILER + key.encode() + b"\n")

    atomic_write(path, write)


def _read_cache(path, key, n, channels, size):
    """The cache at `path` memory-mapped (read-only), if it holds n images of C channels (and
    of `size`) stored under `key`; else None."""
    trailer = _CACHE_TRAILER + key.encode() + b"\n"
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            if end < len(trailer):
                return None
            f.seek(end - len(trailer))
            if f.read(len(trailer)) != trailer:
                return None  # another key (or an old or foreign file) under this name
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError):
        return None  # unreadable cache: decode again and overwrite it
    if (not isinstance(images, np.memmap) or images.dtype != np.uint8 or images.ndim != 4
            or not images.flags.c_contiguous or images.shape[:2] != (n, channels)
            or (size is not None and images.shape[2:] != size)
            or images.offset + images.nbytes + len(trailer) != end):
        return None
    return images
