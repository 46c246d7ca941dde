"""ImageFolder with image_size: resize modes, file kinds, worker processes, the memory-mapped
cache (under a memory limit) and the stratified validation split (issue 23)."""
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from dataset_writers import write_mixed_image_folder

from cnnframe.data import DataLoader, DatasetError, ImageFolder, load_image
from cnnframe.data import image_folder
from cnnframe.data.image_folder import stratified_split

Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def bands_png(path):
    """A 40x20 PNG: columns 0-9 red, 10-29 green, 30-39 blue."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10], pixels[:, 10:30], pixels[:, 30:] = RED, GREEN, BLUE
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_shorter_side_then_center_crop_keeps_the_middle(tmp_path):
    image, original = load_image(bands_png(tmp_path / "a.png"), size=(10, 10),
                                 resize="shorter_side_then_center_crop")
    assert original == (20, 40) and image.shape == (3, 10, 10)
    # the middle 20x20 (all green) scaled by 1/2; the filter reaches 2 source pixels past the
    # box at its left and right edges only
    np.testing.assert_array_equal(image[:, :, 1:9], np.broadcast_to(
        np.array(GREEN, np.uint8)[:, None, None], (3, 10, 8)))


def test_stretch_keeps_everything_and_pad_adds_black_bars(tmp_path):
    path = bands_png(tmp_path / "a.png")
    stretched, _ = load_image(path, size=(10, 10), resize="stretch")
    assert stretched[:, :, 0].T.tolist() == [list(RED)] * 10
    assert stretched[:, :, -1].T.tolist() == [list(BLUE)] * 10
    assert stretched[:, :, 5].T.tolist() == [list(GREEN)] * 10
    padded, _ = load_image(path, size=(10, 10), resize="pad")  # 40x20 -> 10x5, rows 2..6
    assert not padded[:, :2].any() and not padded[:, 7:].any()
    assert padded[:, 2:7, 0].T.tolist() == [list(RED)] * 5
    assert padded[:, 2:7, -1].T.tolist() == [list(BLUE)] * 5


@pytest.mark.parametrize("resize", image_folder.RESIZE_MODES)
@pytest.mark.parametrize("size", [(16, 16), (12, 30), (40, 9)])
def test_every_mixed_file_comes_out_at_image_size(tmp_path, resize, size):
    paths = write_mixed_image_folder(tmp_path / "d", per_class=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Pillow's palette-transparency warning
        ds = ImageFolder(tmp_path / "d", image_size=size, resize=resize, cache=False)
    assert ds.images.shape == (len(paths), 3, *size)
    gray = ImageFolder(tmp_path / "d", image_size=size, resize=resize, cache=False, mode="L")
    assert gray.images.shape == (len(paths), 1, *size)


def test_special_files_decode_to_their_pixels(tmp_path):
    write_mixed_image_folder(tmp_path, per_class=1)
    folder = tmp_path / "cats"
    rgba = Image.open(folder / "rgba.png")
    image, _ = load_image(folder / "rgba.png")  # alpha dropped
    np.testing.assert_array_equal(image, np.asarray(rgba)[..., :3].transpose(2, 0, 1))
    palette = Image.open(folder / "palette.png")
    lut = np.asarray(palette.getpalette(), np.uint8).reshape(-1, 3)
    image, _ = load_image(folder / "palette.png")
    np.testing.assert_array_equal(image, lut[np.asarray(palette)].transpose(2, 0, 1))
    wide = np.asarray(Image.open(folder / "wide16.png")).astype(np.float64)
    image, _ = load_image(folder / "wide16.png", mode="L")
    np.testing.assert_array_equal(image[0], np.round(wide * 255 / 65535))
    # CMYK JPEG: converted back to RGB close to what was written (lossy)
    rgb = np.asarray(Image.open(folder / "rgba.png"))[..., :3].astype(int)
    image, _ = load_image(folder / "cmyk.jpg")
    assert Image.open(folder / "cmyk.jpg").mode == "CMYK"
    assert np.abs(image.transpose(1, 2, 0).astype(int) - rgb).mean() < 25


def test_exif_orientation_turns_the_image_upright(tmp_path):
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:5, :5] = RED  # top-left marker
    exif = Image.Image().getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    (tmp_path / "a").mkdir()
    Image.fromarray(pixels).save(tmp_path / "a" / "turned.png", exif=exif)
    upright = np.rot90(pixels, k=-1)  # clockwise: 30 high, 20 wide, marker top-right
    ds = ImageFolder(tmp_path, cache=False)
    np.testing.assert_array_equal(ds.images[0], upright.transpose(2, 0, 1))
    image, original = load_image(tmp_path / "a" / "turned.png", size=(15, 10))
    assert original == (30, 20) and image[0, 0, -1] > 200 and image[0, 0, 0] == 0


def test_jpeg_is_decoded_at_a_reduced_scale_close_to_a_full_decode(tmp_path, monkeypatch):
    yy, xx = np.mgrid[0:300, 0:400]
    pixels = np.stack([xx * 255 // 400, yy * 255 // 300, (xx + yy) % 256], -1).astype(np.uint8)
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "big.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    from PIL import JpegImagePlugin
    calls, draft = [], JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: calls.append(size) or draft(self, mode, size))
    image, _ = load_image(path, size=(32, 32), resize="shorter_side_then_center_crop")
    assert calls == [(43, 32)]  # covers 32x32 from the middle: 400x300 scaled by 32/300
    full = Image.open(path).convert("RGB").resize((32, 32), Image.BILINEAR,
                                                  box=(50, 0, 350, 300))
    assert np.abs(image.astype(int) - np.asarray(full).transpose(2, 0, 1)).mean() < 3


def test_too_large_or_corrupt_files_are_dataset_errors_naming_them(tmp_path):
    write_mixed_image_folder(tmp_path / "d", per_class=3)
    with pytest.raises(DatasetError, match=r"cats/000\.png: image is 120x90 = 10,800 pixels, "
                                           r"more than max_pixels=10,000"):
        ImageFolder(tmp_path / "d", image_size=8, max_pixels=10_000, cache=False)
    bad = tmp_path / "d" / "dogs" / "001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetError, match=rf"{bad}: cannot decode image"):
        ImageFolder(tmp_path / "d", image_size=8, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.fixture
def in_processes(monkeypatch):
    """Decode even a handful of images in worker processes, a few per task."""
    monkeypatch.setattr(image_folder, "_PROCESSES_FROM", 0)
    monkeypatch.setattr(image_folder, "_CHUNK_BYTES", 3 * 8 * 8 * 3)


def test_worker_processes_give_the_same_images(tmp_path, in_processes):
    write_mixed_image_folder(tmp_path / "d", per_class=6)
    one = ImageFolder(tmp_path / "d", image_size=8, cache=False, workers=1)
    two = ImageFolder(tmp_path / "d", image_size=8, cache_dir=tmp_path / "cache", workers=2)
    np.testing.assert_array_equal(one.images, two.images)
    bad = tmp_path / "d" / "dogs" / "003.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=rf"{bad}: cannot decode image"):
        ImageFolder(tmp_path / "d", image_size=8, cache_dir=tmp_path / "cache2", workers=2)
    assert not (tmp_path / "cache2").exists() or not any((tmp_path / "cache2").iterdir())


def test_cache_is_a_memory_mapped_npy_keyed_on_size_and_resize(tmp_path):
    write_mixed_image_folder(tmp_path / "d", per_class=3)
    cache = tmp_path / "cache"
    first = ImageFolder(tmp_path / "d", image_size=(12, 16), cache_dir=cache)
    assert first.memory_mapped and not first.from_cache and not first.images.flags.writeable
    np.testing.assert_array_equal(np.load(first.cache_path, allow_pickle=False), first.images)
    again = ImageFolder(tmp_path / "d", image_size=(12, 16), cache_dir=cache)
    assert again.from_cache and again.cache_path == first.cache_path
    others = [ImageFolder(tmp_path / "d", image_size=(16, 12), cache_dir=cache),
              ImageFolder(tmp_path / "d", image_size=(12, 16), resize="pad", cache_dir=cache)]
    assert len({first.cache_path, *(o.cache_path for o in others)}) == 3
    assert not any(o.from_cache for o in others)
    np.testing.assert_array_equal(first.images, ImageFolder(tmp_path / "d", image_size=(12, 16),
                                                            cache=False).images)


@pytest.mark.parametrize("counts, fraction", [((10, 10), 0.1), ((15, 3, 2, 1), 0.25),
                                              ((7, 40), 0.5)])
def test_stratified_split_holds_out_each_class(counts, fraction):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(0).shuffle(labels)
    kept, held = stratified_split(labels, fraction, seed=4)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(labels.size))
    for k, n in enumerate(counts):
        want = 0 if n == 1 else min(max(round(fraction * n), 1), n - 1)
        assert np.sum(labels[held] == k) == want
    again = stratified_split(labels, fraction, seed=4)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(stratified_split(labels, fraction, seed=5)[1], held)


def test_validation_subsets_partition_the_folder_with_their_own_caches(tmp_path):
    paths = write_mixed_image_folder(tmp_path / "d", per_class=10)
    kw = dict(image_size=8, cache_dir=tmp_path / "cache", validation=0.2, split_seed=1)
    train = ImageFolder(tmp_path / "d", subset="train", **kw)
    held = ImageFolder(tmp_path / "d", subset="validation", **kw)
    assert sorted(train.files + held.files) == sorted(map(str, paths))
    assert held.class_counts() == {"cats": 3, "dogs": 2}  # 15 and 10 images
    assert train.cache_path != held.cache_path
    whole = ImageFolder(tmp_path / "d", image_size=8, cache=False)
    index = {f: i for i, f in enumerate(whole.files)}
    np.testing.assert_array_equal(held.images, whole.images[[index[f] for f in held.files]])
    np.testing.assert_array_equal(held.labels, whole.labels[[index[f] for f in held.files]])
    with pytest.raises(ValueError, match="validation fraction must be in"):
        ImageFolder(tmp_path / "d", image_size=8, cache=False, validation=1.5)


@pytest.mark.parametrize("kw, message", [
    ({"image_size": (8, 0)}, "image_size must be an int or a pair"),
    ({"image_size": 8, "resize": "crop"}, "resize must be one of"),
    ({"subset": "test"}, "subset must be 'train' or 'validation'"),
    ({"workers": 0}, "workers must be an int >= 1"),
])
def test_bad_arguments_are_value_errors(tmp_path, kw, message):
    write_mixed_image_folder(tmp_path, per_class=1)
    with pytest.raises(ValueError, match=message):
        ImageFolder(tmp_path, cache=False, **kw)


# --- a cache larger than the memory the process may allocate ---

LIMITED = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from cnnframe.data import DataLoader, ImageFolder, image_folder

    def vm_data():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmData"))

    root, cache, size, headroom, limit = sys.argv[1:3] + [int(a) for a in sys.argv[3:6]]
    if limit:
        base = vm_data()
        resource.setrlimit(resource.RLIMIT_DATA, (base + headroom, resource.RLIM_INFINITY))
    image_folder._PROCESSES_FROM = 0  # decode in worker processes
    ds = ImageFolder(root, image_size=size, cache_dir=cache, workers=2, progress=False)
    loader = DataLoader(ds, 2, shuffle=True, seed=0,
                        transform=[{"type": "resize", "size": 8}, {"type": "to_float"}])
    means = [float(x.mean()) for _ in range(2) for x, _ in loader]
    try:
        np.array(ds.images)  # the whole set in memory: more than the limit allows
        copied = True
    except MemoryError:
        copied = False
    print(json.dumps({"n": len(ds), "mapped": ds.memory_mapped, "nbytes": ds.images.nbytes,
                      "means": means, "copied": copied}))
""")


def test_cache_larger_than_the_memory_limit_trains_memory_mapped(tmp_path):
    """Decoding and two epochs of batches under RLIMIT_DATA = what the process holds after its
    imports + 60% of the cache: the whole set in memory would exceed it (checked in the same
    process), the memory-mapped cache and the batches gathered from it do not.

    RLIMIT_DATA, not RLIMIT_AS: the address-space limit counts file mappings too, so under it
    no mapping of a file larger than the headroom can exist at all; RLIMIT_DATA counts the
    memory a process allocates (heap, anonymous mappings), which is what "larger than memory"
    is about."""
    rng = np.random.default_rng(0)
    for k in range(2):
        (tmp_path / "d" / f"c{k}").mkdir(parents=True)
        for i in range(60):
            pixels = rng.integers(0, 256, (18, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "d" / f"c{k}" / f"{i:02d}.jpg")
    size = 512  # 120 images x 3 x 512 x 512 = 90 MiB of cache
    cache_bytes = 120 * 3 * size * size
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(image_folder.__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    run = [sys.executable, "-c", LIMITED, str(tmp_path / "d"), str(tmp_path / "cache"),
           str(size), str(cache_bytes * 6 // 10)]
    limited = subprocess.run(run + ["1"], capture_output=True, text=True, env=env, timeout=300)
    assert limited.returncode == 0, limited.stderr
    out = json.loads(limited.stdout)
    assert out["n"] == 120 and out["mapped"] and out["nbytes"] == cache_bytes
    assert not out["copied"]  # the limit binds: the set does not fit under it
    # the cache written under the limit is complete: this process maps it and gets the same
    # batches
    ds = ImageFolder(tmp_path / "d", image_size=size, cache_dir=tmp_path / "cache")
    assert ds.from_cache
    loader = DataLoader(ds, 2, shuffle=True, seed=0,
                        transform=[{"type": "resize", "size": 8}, {"type": "to_float"}])
    assert [float(x.mean()) for _ in range(2) for x, _ in loader] == out["means"]
