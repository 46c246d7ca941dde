"""examples/feature_maps.py --quick: pictures written, feature-map numbers recomputed here."""
import json
import struct

import numpy as np
import pytest

SCRIPT = "feature_maps.py"
pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def relu1_maps(model_file, input_png):
    """conv1 (as configured in the saved model) + ReLU by explicit window sums in numpy."""
    with np.load(model_file, allow_pickle=False) as z:
        cfg = json.loads(bytes(z["__cnnframe_config__"]).decode())
        w, b = z["conv1.weight"].astype(np.float64), z["conv1.bias"].astype(np.float64)
    conv1 = next(n for n in cfg["nodes"] if n["name"] == "conv1")["config"]
    with Image.open(input_png) as im:
        x = np.asarray(im.convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255
    p = conv1["padding"]
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    h = x.shape[1] + 2 * p - k + 1
    out = np.empty((w.shape[0], h, h))
    for i in range(h):
        for j in range(h):
            window = xp[:, i:i + k, j:j + k]
            out[:, i, j] = np.tensordot(w, window, axes=3) + b
    return np.maximum(out, 0)


def check_pictures(out, printed, folder, tag):
    # Filter grids: 16 RGB tiles of 64 px in a 4x4 grid plus the 24 px title band.
    for name in ("conv1_filters", "conv1_change"):
        assert png_size(folder / f"{tag}_{name}.png") == (4 * 64, 4 * 64 + 24)
    # Feature maps: the input + 16 maps = 17 tiles of 64 px, ceil(sqrt(17)) = 5 per row.
    assert png_size(folder / f"{tag}_relu1_maps.png") == (5 * 64, 4 * 64 + 24)
    for name in ("conv1_filters", "conv1_change", "relu1_maps"):
        with Image.open(folder / f"{tag}_{name}.png") as im:
            im.load()
            assert np.asarray(im).std() > 0, "blank picture"
    maps = relu1_maps(folder / f"{tag}_model.cnnf", folder / f"{tag}_input.png")
    table = printed(out, f"{tag} relu1 feature maps (channel, max, mean, fraction > 0)")
    table = table.reshape(16, 4)
    np.testing.assert_array_equal(table[:, 0], np.arange(16))
    np.testing.assert_allclose(table[:, 1], maps.max(axis=(1, 2)), atol=2e-4)
    np.testing.assert_allclose(table[:, 2], maps.mean(axis=(1, 2)), atol=2e-4)
    np.testing.assert_allclose(table[:, 3], (maps > 1e-6).mean(axis=(1, 2)), atol=2e-3)
    silent = int(np.sum(maps.max(axis=(1, 2)) <= 1e-6))
    assert f"silent maps (all zero after ReLU): {silent} of 16" in out


def test_shapes_pictures_and_cifar_skipped(run_example, printed, tmp_path):
    folder = tmp_path / "out"
    out = run_example(SCRIPT, "--quick", "--out", folder, "--cifar-root", tmp_path / "absent")
    check_pictures(out, printed, folder, "shapes")
    assert "CIFAR-10: skipped, no JPEG copy at" in out
    assert not list(folder.glob("cifar10_*"))
    assert not list(folder.glob(".*")), "temporary files left behind"


def test_cifar_branch_on_a_tiny_jpeg_tree(run_example, printed, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar10-jpeg"
    for split, n in (("train", 3), ("test", 1)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i:04d}.jpg", quality=75)
    folder = tmp_path / "out"
    out = run_example(SCRIPT, "--quick", "--out", folder, "--cifar-root", root,
                      env={"CNNFRAME_CACHE": str(tmp_path / "cache")})
    assert "CIFAR-10: training on 30 images" in out
    check_pictures(out, printed, folder, "cifar10")
