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


def make_jpeg_tree(root):
    """A class-per-folder CIFAR-10 copy: 3 train and 1 test random 32x32 JPEGs per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 1)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i:04d}.jpg", quality=75)
    return root


def test_cifar_branch_on_a_tiny_jpeg_tree_from_cnnframe_data(run_example, printed, tmp_path):
    make_jpeg_tree(tmp_path / "data" / "cifar10-jpeg")
    folder = tmp_path / "out"
    out = run_example(SCRIPT, "--quick", "--out", folder,
                      env={"CNNFRAME_CACHE": str(tmp_path / "cache"),
                           "CNNFRAME_DATA": str(tmp_path / "data")})
    assert "CIFAR-10: training on 30 images" in out
    check_pictures(out, printed, folder, "cifar10")


@pytest.fixture(scope="module")
def feature_maps():
    """examples/feature_maps.py as a module."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "examples" / SCRIPT
    spec = importlib.util.spec_from_file_location("feature_maps_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cifar_copy_comes_from_the_flag_then_cnnframe_data_then_the_fallback(
        feature_maps, tmp_path):
    find = feature_maps.find_cifar_copy
    flag = make_jpeg_tree(tmp_path / "flag")
    env = make_jpeg_tree(tmp_path / "env" / "cifar10-jpeg")
    fallback = make_jpeg_tree(tmp_path / "fallback")
    environ = {"CNNFRAME_DATA": str(tmp_path / "env")}
    assert find(flag, environ, fallback) == (flag, None)
    assert find(None, environ, fallback) == (env, None)
    assert find(None, {}, fallback) == (fallback, None)


def test_no_cifar_copy_says_where_it_looked_and_how_to_give_one(feature_maps, tmp_path):
    find = feature_maps.find_cifar_copy
    folder, why = find(None, {}, tmp_path / "absent")
    assert folder is None and "$CNNFRAME_DATA is not set" in why and "--cifar-root" in why
    (tmp_path / "empty").mkdir()
    folder, why = find(None, {"CNNFRAME_DATA": str(tmp_path / "empty")}, tmp_path / "absent")
    assert folder is None and f"no JPEG copy at {tmp_path / 'empty'}" in why
