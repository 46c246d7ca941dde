import io
import os
import re
import shutil
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from cnnframe.data import DatasetError, ImageFolder
from cnnframe.data import image_folder
from cnnframe.data.cifar import find_cifar10_image_folder
from cnnframe.data.image_folder import load_image, scan_image_folder

Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")
# A real class-per-folder CIFAR-10 copy, when $CNNFRAME_DATA (the data root the Makefile and the
# README use) holds one: $CNNFRAME_DATA itself, or its cifar10-jpeg/ or cifar10/ subfolder.
SHARED = (find_cifar10_image_folder(os.environ["CNNFRAME_DATA"])
          if os.environ.get("CNNFRAME_DATA") else None)
needs_shared_copy = pytest.mark.skipif(
    SHARED is None, reason="set CNNFRAME_DATA to a directory holding a class-per-folder CIFAR-10 "
    "copy (train/<class>/*.jpg, test/<class>/*.jpg) to run this test")
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def write_folder(root, counts, size=(8, 6), ext=".png", seed=0, mode="RGB", **save_options):
    """root/<class>/<i><ext> random images; returns {path: HWC uint8 array}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            path = root / name / f"{i:03d}{ext}"
            Image.fromarray(arr, mode).save(path, **save_options)
            written[path] = arr
    return written


def cache_files(cache):
    return sorted(p.name for p in Path(cache).iterdir()) if Path(cache).exists() else []


def test_png_folder_decodes_exactly_in_class_order(tmp_path):
    written = write_folder(tmp_path / "split", {"b_cls": 2, "a_cls": 3, "c_cls": 1})
    ds = ImageFolder(tmp_path / "split", cache_dir=tmp_path / "cache")
    assert ds.classes == ["a_cls", "b_cls", "c_cls"]
    assert ds.images.shape == (6, 3, 6, 8) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1, 2])
    for path, image in zip(ds.files, ds.images):
        np.testing.assert_array_equal(image, written[Path(path)].transpose(2, 0, 1))
    assert not ds.from_cache


def test_jpeg_and_explicit_class_order(tmp_path):
    written = write_folder(tmp_path, {"x": 2, "y": 2}, ext=".jpg")
    ds = ImageFolder(tmp_path, classes=["y", "x"], cache=False)
    assert ds.classes == ["y", "x"]
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1])
    # JPEG is lossy: decoded pixels are close to (not equal to) the originals on average
    for path, image in zip(ds.files, ds.images):
        diff = np.abs(image.astype(int) - written[Path(path)].transpose(2, 0, 1).astype(int))
        assert diff.mean() < 60


def test_grayscale_mode(tmp_path):
    write_folder(tmp_path, {"a": 1, "b": 1}, mode="L")
    ds = ImageFolder(tmp_path, mode="L", cache=False)
    assert ds.images.shape == (2, 1, 6, 8)
    rgb = ImageFolder(tmp_path, cache=False)
    assert rgb.images.shape == (2, 3, 6, 8)
    np.testing.assert_array_equal(rgb.images[:, 0], ds.images[:, 0])  # gray -> R = G = B


def test_second_load_comes_from_cache(tmp_path):
    write_folder(tmp_path / "d", {"a": 3, "b": 2})
    first = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    second = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert second.from_cache and second.cache_path == first.cache_path
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert cache_files(tmp_path / "cache") == [first.cache_path.name]


def test_cache_default_dir_from_environment(tmp_path, monkeypatch):
    write_folder(tmp_path / "d", {"a": 1})
    monkeypatch.setenv("CNNFRAME_CACHE", str(tmp_path / "envcache"))
    ds = ImageFolder(tmp_path / "d")
    assert ds.cache_path.parent == tmp_path / "envcache" / "image_folder"
    assert ds.cache_path.is_file()


def test_changed_file_invalidates_cache(tmp_path):
    written = write_folder(tmp_path / "d", {"a": 2, "b": 2})
    first = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    path = next(iter(written))
    new = np.full_like(written[path], 7)
    Image.fromarray(new).save(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert not second.from_cache and second.cache_path != first.cache_path
    np.testing.assert_array_equal(second.images[0], new.transpose(2, 0, 1))
    # adding a file changes the key too
    Image.fromarray(new).save(tmp_path / "d" / "b" / "new.png")
    third = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert not third.from_cache and len(third) == 5


def overwrite_cache(path, array, key=None, allow_pickle=False):
    """Replace the cache file at `path` (a new file, as the cache's own writes do: the old one
    may be memory-mapped) by `array` as .npy followed by the trailer of `key` (default: its own
    key; b"" for none)."""
    if key is None:
        with open(path, "rb") as f:
            key = f.read()[-65:-1]
    trailer = b"\ncnnframe image cache\n" + key + b"\n" if key else b""
    with open(f"{path}.new", "wb") as f:
        np.save(f, array, allow_pickle=allow_pickle)
        f.write(trailer)
    os.replace(f"{path}.new", path)


@pytest.mark.parametrize("array, key", [
    (np.array([{"x": 1}], dtype=object), None),  # would need pickle to load
    (np.zeros((5, 3, 6, 8), np.uint8), None),  # the wrong number of images
    (np.zeros((2, 3, 6, 8), np.uint8), b""),  # a plain .npy: no key to verify
    (np.zeros((2, 3, 6, 8), np.uint8), b"0" * 64),  # another key
    (np.zeros((2, 3, 6, 8), np.float32), None),  # not uint8
], ids=["object-array", "wrong-shape", "no-key", "other-key", "float"])
def test_unsafe_or_wrong_cache_is_ignored_and_replaced(tmp_path, array, key):
    write_folder(tmp_path / "d", {"a": 2})
    ds = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    overwrite_cache(ds.cache_path, array, key, allow_pickle=array.dtype == object)
    again = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert not again.from_cache
    np.testing.assert_array_equal(again.images, ds.images)
    # the bad cache was rewritten
    assert ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache").from_cache
    assert cache_files(tmp_path / "cache") == [ds.cache_path.name]


def test_wrong_image_size_names_file_and_leaves_no_cache(tmp_path):
    write_folder(tmp_path / "d", {"a": 3, "b": 3})
    bad = tmp_path / "d" / "b" / "001.png"
    Image.fromarray(np.zeros((6, 9, 3), np.uint8)).save(bad)
    with pytest.raises(DatasetError, match=rf"{bad}: image is 9x6 pixels, expected 8x6"):
        ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def test_corrupt_image_names_file_and_leaves_no_cache(tmp_path):
    write_folder(tmp_path / "d", {"a": 2})
    bad = tmp_path / "d" / "a" / "001.png"
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.raises(DatasetError, match=rf"{bad}: cannot decode"):
        ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def test_empty_class_folder(tmp_path):
    write_folder(tmp_path, {"a": 2})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'empty'}: empty class folder"):
        ImageFolder(tmp_path, cache=False)


def test_missing_root_and_no_classes(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no class subfolders"):
        ImageFolder(tmp_path)
    write_folder(tmp_path, {"a": 1})
    with pytest.raises(FileNotFoundError, match="class folder 'zzz'"):
        ImageFolder(tmp_path, classes=["a", "zzz"])


def test_non_image_and_hidden_files_are_ignored(tmp_path):
    write_folder(tmp_path, {"a": 2})
    (tmp_path / "a" / "README.txt").write_text("x")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"junk")
    assert len(ImageFolder(tmp_path, cache=False)) == 2


def test_missing_pillow_is_a_clear_error_but_cache_still_loads(tmp_path, monkeypatch):
    write_folder(tmp_path / "d", {"a": 2})
    cached = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    again = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert again.from_cache
    np.testing.assert_array_equal(again.images, cached.images)
    with pytest.raises(ImportError, match="pip install Pillow"):
        ImageFolder(tmp_path / "d", cache=False)


@needs_shared_copy
@pytest.mark.parametrize("split, per_class", [("train", 5000), ("test", 1000)])
def test_shared_cifar10_jpeg_layout(split, per_class):
    classes, files = scan_image_folder(SHARED / split)
    assert classes == CIFAR_CLASSES  # sorted folder names are CIFAR-10's label order
    counts = np.bincount([f[1] for f in files], minlength=10)
    np.testing.assert_array_equal(counts, [per_class] * 10)


@needs_shared_copy
def test_shared_cifar10_jpeg_sample_decodes(tmp_path):
    # decode two images per class (a small copy of the tree), not all 60,000
    for name in CIFAR_CLASSES:
        (tmp_path / name).mkdir()
        for src in sorted((SHARED / "test" / name).iterdir())[:2]:
            (tmp_path / name / src.name).symlink_to(src)
    ds = ImageFolder(tmp_path, cache=False)
    assert ds.images.shape == (20, 3, 32, 32) and ds.classes == CIFAR_CLASSES
    assert 20 < ds.images.mean() < 235 and ds.images.std() > 10


# --- hostile and unusual files (issue 15, items 11, 12 and 16) ---

def png_bytes(width, height, bit_depth=8, color_type=0, rows=None):
    """A PNG written by hand: IHDR, one IDAT of `rows` (filter byte 0 per row), IEND.

    rows : ndarray (H, W * samples) of ints, stored big-endian at `bit_depth`; None gives an
    empty IDAT, i.e. only a header declaring `width` x `height`.
    """
    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data)))
    raw = b""
    if rows is not None:
        dtype = ">u2" if bit_depth == 16 else np.uint8
        raw = b"".join(b"\0" + np.asarray(row).astype(dtype).tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


# a 65535x65535 PNG in 65 bytes: beyond Pillow's decompression-bomb limit
BOMB = png_bytes(65535, 65535)
# 5000x5000: under Pillow's limit, over the default max_pixels (4096x4096)
LARGE = png_bytes(5000, 5000)


@pytest.mark.parametrize("data, message", [(BOMB, "too large to decode safely"),
                                           (LARGE, "5000x5000 = 25,000,000 pixels, more than "
                                                   "max_pixels=16,777,216")],
                         ids=["bomb", "large"])
@pytest.mark.parametrize("position", ["first", "later"])
def test_huge_image_is_a_dataset_error_naming_it(tmp_path, data, message, position):
    write_folder(tmp_path / "d", {"a": 2, "b": 2})
    bad = tmp_path / "d" / ("a/000.png" if position == "first" else "b/001.png")
    bad.write_bytes(data)
    with pytest.raises(DatasetError, match=re.escape(f"{bad}: image is ") + ".*" + message):
        ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def test_max_pixels_is_configurable(tmp_path):
    write_folder(tmp_path / "d", {"a": 2}, size=(80, 60))
    with pytest.raises(DatasetError, match=r"000\.png: image is 80x60 = 4,800 pixels, more than "
                                           r"max_pixels=4,799"):
        ImageFolder(tmp_path / "d", cache=False, max_pixels=4799)
    assert len(ImageFolder(tmp_path / "d", cache=False, max_pixels=4800)) == 2
    assert len(ImageFolder(tmp_path / "d", cache=False, max_pixels=None)) == 2


def test_images_that_would_not_fit_in_memory_are_refused_before_decoding(tmp_path, monkeypatch):
    # without the cache the decoded array lives in RAM; with it, it is memory-mapped
    write_folder(tmp_path / "d", {"a": 3}, size=(8, 6))
    monkeypatch.setattr(image_folder, "_physical_memory", lambda: 3 * 3 * 6 * 8 - 1)
    with pytest.raises(DatasetError, match=r"3 images of 8x6 pixels .* more than this machine"):
        ImageFolder(tmp_path / "d", cache=False)
    cached = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert cached.memory_mapped and len(cached) == 3
    monkeypatch.setattr(image_folder, "_physical_memory", lambda: 3 * 3 * 6 * 8)
    assert len(ImageFolder(tmp_path / "d", cache=False)) == 3


def test_cache_that_would_not_fit_on_its_disk_is_refused_before_decoding(tmp_path, monkeypatch):
    write_folder(tmp_path / "d", {"a": 3}, size=(8, 6))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(image_folder.shutil, "disk_usage",
                        lambda path: usage._replace(free=3 * 3 * 6 * 8 - 1))
    with pytest.raises(DatasetError, match=rf"need 0.00 GiB of image cache in {tmp_path / 'cache'}"
                                           r", which has 0.00 GiB free"):
        ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []
    monkeypatch.setattr(image_folder.shutil, "disk_usage",
                        lambda path: usage._replace(free=3 * 3 * 6 * 8))
    assert len(ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")) == 3


@pytest.mark.parametrize("where", ["image", "class folder"])
def test_symlink_loop_is_a_dataset_error_naming_it(tmp_path, where):
    write_folder(tmp_path / "d", {"a": 2})
    loop = tmp_path / "d" / ("a/loop.png" if where == "image" else "loop")
    loop.symlink_to(loop.name)  # points at itself
    with pytest.raises(DatasetError, match=re.escape(f"{loop}: cannot read (Too many levels")):
        ImageFolder(tmp_path / "d", cache=False)


def same_size_pngs(root, seeds, size=(8, 6)):
    """write_folder at each seed with stored (uncompressed) PNGs: the file sizes do not depend
    on the pixels, so files with other pixels keep their size."""
    return [write_folder(root if len(seeds) == 1 else root / f"r{seed}", {"a": 2, "b": 1},
                         size=size, seed=seed, compress_level=0) for seed in seeds]


def wait_for_clock_tick(tmp_path, after_ns):
    """Return once a new file's ctime is later than `after_ns` (file clocks tick coarsely)."""
    probe = tmp_path / "clock-probe"
    for _ in range(1000):
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > after_ns:
            return
        time.sleep(0.001)
    raise AssertionError("the file system clock did not advance in 1 s")


def test_pixels_changed_in_place_with_mtime_restored_are_not_served_stale(tmp_path):
    [written] = same_size_pngs(tmp_path / "d", [0])
    first = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    path = Path(first.files[0])
    before = path.stat()
    wait_for_clock_tick(tmp_path, before.st_ctime_ns)
    new = 255 - written[path]
    data = io.BytesIO()
    Image.fromarray(new).save(data, "PNG", compress_level=0)
    with open(path, "r+b") as f:  # rewritten in place: same inode
        f.write(data.getvalue())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    second = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert not second.from_cache
    np.testing.assert_array_equal(second.images[0], new.transpose(2, 0, 1))


def test_second_root_with_same_names_sizes_and_mtimes_gets_its_own_images(tmp_path):
    first, second = same_size_pngs(tmp_path, [0, 1])
    for a, b in zip(first, second):
        st = a.stat()
        os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (b.name, b.stat().st_size, b.stat().st_mtime_ns) == \
            (a.name, st.st_size, st.st_mtime_ns)
    one = ImageFolder(tmp_path / "r0", cache_dir=tmp_path / "cache")
    two = ImageFolder(tmp_path / "r1", cache_dir=tmp_path / "cache")
    assert not two.from_cache and two.cache_path != one.cache_path
    for path, image in zip(two.files, two.images):
        np.testing.assert_array_equal(image, second[Path(path)].transpose(2, 0, 1))
    # a cache file copied under the other root's name is refused: the key inside is checked
    # (copied to a new file: two.images maps the old one, which must not change under it)
    shutil.copyfile(one.cache_path, tmp_path / "copy.npy")
    os.replace(tmp_path / "copy.npy", two.cache_path)
    again = ImageFolder(tmp_path / "r1", cache_dir=tmp_path / "cache")
    assert not again.from_cache
    np.testing.assert_array_equal(again.images, two.images)


def exact_8_bit(values):
    """16-bit values scaled to 8 bits: value * 255 / 65535, rounded."""
    return np.round(np.asarray(values, np.float64) * 255 / 65535).astype(np.uint8)


WIDE = np.array([[0, 1, 128, 129, 257, 1000, 32767], [32768, 40000, 50000, 60000, 65000,
                                                      65534, 65535]], np.uint16)


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    path = tmp_path / "d" / "a" / "wide.png"
    Image.fromarray(WIDE).save(path)  # uint16 -> Pillow mode I;16 -> 16-bit PNG
    assert Image.open(path).mode.startswith("I")
    gray = ImageFolder(tmp_path / "d", mode="L", cache=False).images[0, 0]
    np.testing.assert_array_equal(gray, exact_8_bit(WIDE))
    rgb = ImageFolder(tmp_path / "d", mode="RGB", cache=False).images[0]
    np.testing.assert_array_equal(rgb, np.stack([exact_8_bit(WIDE)] * 3))
    image, _ = load_image(path, mode="L")
    np.testing.assert_array_equal(image[0], exact_8_bit(WIDE))


@pytest.mark.parametrize("color_type, samples", [(2, 3), (6, 4)], ids=["RGB", "RGBA"])
def test_16_bit_colour_png_is_scaled(tmp_path, color_type, samples):
    # Pillow decodes 16-bit colour PNGs by keeping the high byte: within 1 of exact rounding
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, (5, 7, samples)).astype(np.uint16)
    values[0, 0] = 65535
    path = tmp_path / "wide.png"
    path.write_bytes(png_bytes(7, 5, 16, color_type, values.reshape(5, -1)))
    image, _ = load_image(path, mode="RGB")
    diff = image.astype(int) - exact_8_bit(values[..., :3]).transpose(2, 0, 1).astype(int)
    assert np.abs(diff).max() <= 1 and image[:, 0, 0].tolist() == [255, 255, 255]


# --- load_image: one file, e.g. for `cnnframe predict` ---

def test_load_image_reads_converts_and_resizes(tmp_path):
    written = write_folder(tmp_path, {"a": 1}, size=(8, 6))
    [(path, pixels)] = written.items()
    image, original = load_image(path)
    assert original == (6, 8) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, pixels.transpose(2, 0, 1))
    gray, _ = load_image(path, mode="L")
    np.testing.assert_array_equal(gray[0], np.asarray(Image.fromarray(pixels).convert("L")))
    small, original = load_image(path, size=(3, 4))
    assert small.shape == (3, 3, 4) and original == (6, 8)
    expected = np.asarray(Image.fromarray(pixels).resize((4, 3), Image.BILINEAR))
    np.testing.assert_array_equal(small, expected.transpose(2, 0, 1))


@pytest.mark.parametrize("case, message", [
    ("missing", "image file does not exist"),
    ("directory", "is a directory, not an image file"),
    ("text", "cannot decode image"),
    ("truncated", "cannot decode image"),
    ("bomb", "image is too large to decode safely"),
    ("large", "more than max_pixels"),
    ("loop", "cannot decode image"),
])
def test_load_image_failures_are_dataset_errors_naming_the_file(tmp_path, case, message):
    path = tmp_path / f"{case}.png"
    if case == "directory":
        path.mkdir()
    elif case == "text":
        path.write_text("not an image")
    elif case == "truncated":
        write_folder(tmp_path, {"a": 1})
        path.write_bytes((tmp_path / "a" / "000.png").read_bytes()[:60])
    elif case in ("bomb", "large"):
        path.write_bytes(BOMB if case == "bomb" else LARGE)
    elif case == "loop":
        path.symlink_to(path.name)
    with pytest.raises(DatasetError, match=re.escape(f"{path}: ") + ".*" + message):
        load_image(path)
