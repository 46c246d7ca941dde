"""cnnframe.viz: filter / feature-map grids written as PNGs of the documented size."""
import math
import struct
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from cnnframe import viz  # noqa: E402
from cnnframe.functional import conv2d  # noqa: E402

TITLE = 24


def png_size(path):
    """(width, height) read from the PNG signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def expected_size(n_tiles, tile_px, ncols=None, title=False):
    ncols = ncols or math.ceil(math.sqrt(n_tiles))
    ncols = min(ncols, n_tiles)
    nrows = -(-n_tiles // ncols)
    return ncols * tile_px, nrows * tile_px + (TITLE if title else 0)


@pytest.mark.parametrize("n", [1, 2, 5, 16, 17])
@pytest.mark.parametrize("title", [None, "conv1"])
def test_rgb_filter_png_size(tmp_path, rng, n, title):
    path = viz.save_filters(rng.normal(size=(n, 3, 5, 5)), tmp_path / "f.png", tile_px=20,
                            title=title)
    assert path == tmp_path / "f.png"
    assert png_size(path) == expected_size(n, 20, title=bool(title))
    with Image.open(path) as im:
        im.load()
        assert im.size == png_size(path)


@pytest.mark.parametrize("f,c,ncols,expected_cols", [(6, 4, None, 4), (5, 1, None, 3),
                                                     (4, 20, None, 9), (3, 2, 5, 5)])
def test_single_channel_tiles_layout(tmp_path, rng, f, c, ncols, expected_cols):
    path = viz.save_filters(rng.normal(size=(f, c, 3, 3)), tmp_path / "g.png", tile_px=16,
                            ncols=ncols)
    n_tiles = f * c
    cols = min(expected_cols, n_tiles)
    assert png_size(path) == (cols * 16, -(-n_tiles // cols) * 16)


def test_filter_colours_show_the_weights(tmp_path):
    # Gray mode: filter 0 all +1, filter 1 all -1 -> red and blue under the RdBu_r scale.
    w = np.stack([np.ones((1, 4, 4)), -np.ones((1, 4, 4))])
    path = viz.save_filters(w, tmp_path / "sign.png", tile_px=40, ncols=2)
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    pos, neg = rgb[20, 20], rgb[20, 60]
    assert pos[0] > pos[2] + 50 and neg[2] > neg[0] + 50
    # RGB mode: a filter whose red channel is largest everywhere draws red-dominant pixels.
    w = np.zeros((1, 3, 4, 4))
    w[0, 0] = 1.0
    w[0, 0, 0, 0] = 0.5  # some spread so the per-filter scaling is not degenerate
    path = viz.save_filters(w, tmp_path / "red.png", tile_px=40)
    with Image.open(path) as im:
        r, g, b = np.asarray(im.convert("RGB")).astype(int)[25, 25]
    assert r > 200 and g < 60 and b < 60


def test_feature_maps_with_input_tile(tmp_path, rng):
    maps = rng.normal(size=(1, 7, 10, 10))
    path = viz.save_feature_maps(maps, tmp_path / "m.png", image=rng.random((3, 12, 12)),
                                 tile_px=30, title="maps")
    assert png_size(path) == expected_size(8, 30, title=True)
    path = viz.save_feature_maps(maps[0], tmp_path / "m2.png", tile_px=30, max_tiles=4)
    assert png_size(path) == expected_size(4, 30)


def test_feature_maps_of_a_layer_are_its_forward_output(rng):
    from cnnframe.layers import Conv2d
    layer = Conv2d(2, 5, 3, seed=0)
    x = rng.normal(size=(2, 9, 9)).astype(np.float32)
    maps = viz.feature_maps(layer, x)
    expected = conv2d(x[None], layer.params["weight"], layer.params["bias"])[0]
    np.testing.assert_allclose(maps, expected, rtol=1e-6)
    assert maps.shape == (5, 7, 7)


def test_write_is_atomic(tmp_path, rng, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    fig = viz.filter_grid(rng.normal(size=(2, 1, 3, 3)))

    def broken_savefig(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        viz.save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    monkeypatch.undo()
    viz.save_figure(fig, target)
    assert png_size(target)[0] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    viz.save_figure(fig, tmp_path / "new" / "dir" / "x.png")  # parents are created
    assert (tmp_path / "new" / "dir" / "x.png").exists()


def test_layer_object_accepted(tmp_path):
    class FakeConv:
        params = {"weight": np.ones((2, 3, 3, 3))}
    assert png_size(viz.save_filters(FakeConv(), tmp_path / "l.png", tile_px=10)) == (20, 10)

    class NoWeight:
        params = {"bias": np.ones(2)}
    with pytest.raises(ValueError, match="no 'weight'"):
        viz.filter_grid(NoWeight())


@pytest.mark.parametrize("call, match", [
    (lambda: viz.filter_grid(np.ones((2, 3, 3))), "shape"),
    (lambda: viz.filter_grid(np.ones((2, 1, 3, 3)), rgb=True), "3 input channels"),
    (lambda: viz.filter_grid(np.ones((2, 1, 3, 3)), tile_px=0), "tile_px"),
    (lambda: viz.feature_map_grid(np.ones((2, 2, 3, 3))), "shape"),
    (lambda: viz.feature_map_grid(np.ones((2, 3, 3)), image=np.ones((5, 4, 4, 4))), "image"),
    (lambda: viz.grid_shape(0), "at least one"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install cnnframe\[plot\]"):
        viz.filter_grid(np.ones((1, 1, 2, 2)))


def test_feature_maps_of_a_model_node(rng):
    import cnnframe
    cfg = {"input_shape": [2, 8, 8], "seed": 3, "layers": [
        {"type": "conv2d", "name": "conv1", "in_channels": 2, "out_channels": 4,
         "kernel_size": 3, "padding": 1},
        {"type": "relu", "name": "relu1"},
        {"type": "max_pool2d", "name": "pool1", "kernel_size": 2},
        {"type": "flatten", "name": "flat"}]}
    model = cnnframe.Model.from_config(cfg)
    x = rng.normal(size=(2, 8, 8))  # float64: converted to the model's float32
    w, b = model.nodes["conv1"].params["weight"], model.nodes["conv1"].params["bias"]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    conv = np.array([[[np.sum(xp[:, i:i + 3, j:j + 3] * w[f]) + b[f] for j in range(8)]
                      for i in range(8)] for f in range(4)])
    np.testing.assert_allclose(viz.feature_maps(model, x, "conv1"), conv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(viz.feature_maps(model, x[None], node="relu1"),
                               np.maximum(conv, 0), rtol=1e-4, atol=1e-5)
    pooled = viz.feature_maps(model, x, "pool1")
    assert pooled.shape == (4, 4, 4)
    with pytest.raises(ValueError, match="not feature maps"):
        viz.feature_maps(model, x, "flat")
    with pytest.raises(ValueError, match="unknown node"):
        viz.feature_maps(model, x, "conv9")
    with pytest.raises(ValueError, match="node="):
        viz.feature_maps(model, x)
    with pytest.raises(ValueError, match="one image"):
        viz.feature_maps(model, np.zeros((2, 2, 8, 8)), "conv1")
