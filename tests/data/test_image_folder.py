import os
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnframe.data import DatasetError, ImageFolder
from cnnframe.data.image_folder import scan_image_folder

Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")
SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cifar10-jpeg"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def write_folder(root, counts, size=(8, 6), ext=".png", seed=0, mode="RGB"):
    """root/<class>/<i><ext> random images; returns {path: HWC uint8 array}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            path = root / name / f"{i:03d}{ext}"
            Image.fromarray(arr, mode).save(path)
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


def test_unsafe_or_wrong_cache_is_ignored_and_replaced(tmp_path):
    write_folder(tmp_path / "d", {"a": 2})
    ds = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    # an object-array .npy (which would need pickle) in place of the cache: not loaded
    np.save(ds.cache_path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    again = ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert not again.from_cache
    np.testing.assert_array_equal(again.images, ds.images)
    # a cache of the wrong shape is ignored as well; in both cases it is rewritten
    np.save(ds.cache_path, np.zeros((5, 3, 6, 8), np.uint8))
    assert not ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache").from_cache
    assert ImageFolder(tmp_path / "d", cache_dir=tmp_path / "cache").from_cache


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


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared CIFAR-10 JPEG copy not found at {SHARED}")
@pytest.mark.parametrize("split, per_class", [("train", 5000), ("test", 1000)])
def test_shared_cifar10_jpeg_layout(split, per_class):
    classes, files = scan_image_folder(SHARED / split)
    assert classes == CIFAR_CLASSES  # sorted folder names are CIFAR-10's label order
    counts = np.bincount([f[1] for f in files], minlength=10)
    np.testing.assert_array_equal(counts, [per_class] * 10)


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared CIFAR-10 JPEG copy not found at {SHARED}")
def test_shared_cifar10_jpeg_sample_decodes(tmp_path):
    # decode two images per class (a small copy of the tree), not all 60,000
    for name in CIFAR_CLASSES:
        (tmp_path / name).mkdir()
        for src in sorted((SHARED / "test" / name).iterdir())[:2]:
            (tmp_path / name / src.name).symlink_to(src)
    ds = ImageFolder(tmp_path, cache=False)
    assert ds.images.shape == (20, 3, 32, 32) and ds.classes == CIFAR_CLASSES
    assert 20 < ds.images.mean() < 235 and ds.images.std() > 10
