"""direct_conv2d (stride-1 direct convolution) against the numpy reference."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cnnframe
import cnnframe.reference as R
from cnnframe.functional import _direct
from cnnframe.functional._args import conv_geometry
from cnnframe.functional._direct import direct_conv2d, direct_conv2d_grad_x, direct_plan
from cnnframe.functional.conv import PARTS, _transposed_kernel
from cnnframe.functional.conv_dispatch import TILES, tiles
from cnnframe_ext import direct as _kernel
from hypothesis_budget import scaled

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}
# Every test on every instruction set this CPU runs (tests/conftest.py: isa).
pytestmark = pytest.mark.usefixtures("isa")


def geom(x, weight_shape, padding):
    """The ConvGeometry of the stride-1 conv of x (or its shape) with that weight shape."""
    return conv_geometry(getattr(x, "shape", x), weight_shape, padding=padding)


def arrays(rng, n, c, h, w, f, kh, kw, dtype, with_bias=True):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype) if with_bias else None
    return x, weight, bias


@st.composite
def direct_geometries(draw):
    """(N, C, H, W), (F, C, KH, KW), (ph, pw) of a valid stride-1 conv, output >= 1 x 1."""
    kh, kw = draw(st.sampled_from([1, 3, 5, 7])), draw(st.sampled_from([1, 3, 5, 7]))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    h = max(1, kh - 2 * ph) + draw(st.integers(0, 6))
    w = draw(st.integers(max(1, kw - 2 * pw), 40))
    n, c, f = draw(st.integers(0, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 30))
    return (n, c, h, w), (f, c, kh, kw), (ph, pw)


@settings(max_examples=scaled(150))
@given(geometry=direct_geometries(), dtype=st.sampled_from([np.float32, np.float64]),
       with_bias=st.booleans(), seed=st.integers(0, 2**31))
def test_matches_reference(geometry, dtype, with_bias, seed):
    (n, c, h, w), (f, _, kh, kw), padding = geometry
    x, weight, bias = arrays(np.random.default_rng(seed), n, c, h, w, f, kh, kw, dtype, with_bias)
    y = direct_conv2d(x, weight, bias, geom(x, weight.shape, padding))
    assert y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, R.conv2d(x, weight, bias, padding=padding), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", [(3, 5), (3, 3), (5, 5)])
@pytest.mark.parametrize("rows", [1, 2, 5, 100])
def test_every_tile_and_band(rng, rows, kernel, dtype):
    """Every micro-kernel of the instruction set, with bands of 1, 2, 5 rows and whole maps,
    for any kernel size and the unrolled 3x3 and 5x5; F and the pixel count are not
    multiples of the tile, so channel and pixel tails are covered."""
    x, weight, bias = arrays(rng, 2, 3, 11, 19, 13, *kernel, dtype)
    oh = 11 + 2 - kernel[0] + 1
    want = R.conv2d(x, weight, bias, padding=(1, 2))
    for tile in tiles():
        y = direct_conv2d(x, weight, bias, geom(x, weight.shape, (1, 2)),
                          plan=(max(1, min(rows, oh)), *tile))
        np.testing.assert_allclose(y, want, err_msg=str(tile), **TOL[dtype])


@pytest.mark.parametrize("shape,k,p", [((2, 3, 32, 32), 3, 1), ((2, 8, 8, 8), 3, 1),
                                       ((1, 4, 9, 33), 5, 2), ((3, 2, 16, 16), 7, 3)])
@pytest.mark.parametrize("f", [16, 23])
def test_benchmark_like_shapes(rng, shape, k, p, f):
    """Shapes the default plan picks its large tiles for (widths 8, 16, 32, 33)."""
    x, weight, bias = arrays(rng, *shape, f, k, k, np.float32)
    y = direct_conv2d(x, weight, bias, geom(x, weight.shape, p))
    np.testing.assert_allclose(y, R.conv2d(x, weight, bias, padding=p), **TOL[np.float32])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_bit_identical(rng, monkeypatch, dtype):
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    monkeypatch.setattr(_direct, "BAND_BYTES", 4096)  # several bands per image, too
    x, weight, bias = arrays(rng, 3, 5, 12, 21, 14, 3, 3, dtype)
    before = cnnframe.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            cnnframe.set_num_threads(threads)
            results.append(direct_conv2d(x, weight, bias, geom(x, weight.shape, 1)))
    finally:
        cnnframe.set_num_threads(before)
    assert np.array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], R.conv2d(x, weight, bias, padding=1), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,p", [(3, 1), (5, 2), (3, 0), (5, 4)])
def test_grad_x_by_transposed_kernel(rng, k, p, dtype):
    """The input gradient of a stride-1 conv is a direct conv of grad_y with the flipped,
    transposed kernel and padding K - 1 - p."""
    x, weight, _ = arrays(rng, 2, 6, 10, 13, 9, k, k, dtype)
    grad_y = rng.standard_normal(R.conv2d(x, weight, padding=p).shape).astype(dtype)
    w_t = _transposed_kernel(weight, 1)
    grad_x = direct_conv2d(grad_y, w_t, None, geom(grad_y, w_t.shape, k - 1 - p))
    assert grad_x.shape == x.shape
    np.testing.assert_allclose(grad_x, R.conv2d_backward(x, weight, grad_y, padding=p)[0],
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,padding", [((3, 3), (1, 1)), ((5, 5), (2, 2)), ((3, 5), (0, 4)),
                                            ((7, 1), (3, 0)), ((1, 1), (0, 0))])
@pytest.mark.parametrize("f", [5, 17])
def test_grad_x_helper(rng, kernel, padding, f, dtype):
    """direct_conv2d_grad_x packs the flipped, transposed kernel itself."""
    kh, kw = kernel
    x, weight, _ = arrays(rng, 2, 6, 9, 12, f, kh, kw, dtype)
    grad_y = rng.standard_normal(R.conv2d(x, weight, padding=padding).shape).astype(dtype)
    out = np.empty_like(x)
    grad_x = direct_conv2d_grad_x(grad_y, weight, geom(x, weight.shape, padding), out=out)
    assert grad_x is out
    want = R.conv2d_backward(x, weight, grad_y, padding=padding)[0]
    np.testing.assert_allclose(grad_x, want, **TOL[dtype])
    # bit-identical to building the transposed kernel first
    w_t = _transposed_kernel(weight, 1)
    assert np.array_equal(grad_x, direct_conv2d(grad_y, w_t, None, geom(
        grad_y, w_t.shape, (kh - 1 - padding[0], kw - 1 - padding[1]))))


def test_grad_x_helper_refuses_large_padding(rng):
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    grad_y = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"padding \(3, 3\) must be at most"):
        direct_conv2d_grad_x(grad_y, weight, geom((1, 3, 4, 4), weight.shape, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,padding", [((3, 3), (3, 4)), ((1, 1), (2, 2)), ((5, 3), (6, 0))])
def test_padding_beyond_kernel(rng, kernel, padding, dtype):
    """Padding wider than the kernel reach: whole rows and columns of zeros in the output."""
    x, weight, bias = arrays(rng, 2, 3, 4, 3, 7, *kernel, dtype)
    y = direct_conv2d(x, weight, bias, geom(x, weight.shape, padding))
    np.testing.assert_allclose(y, R.conv2d(x, weight, bias, padding=padding), **TOL[dtype])


def test_writes_into_out(rng):
    x, weight, bias = arrays(rng, 2, 3, 8, 8, 5, 3, 3, np.float32)
    out = np.full((2, 5, 8, 8), np.nan, np.float32)
    assert direct_conv2d(x, weight, bias, geom(x, weight.shape, 1), out=out) is out
    np.testing.assert_allclose(out, R.conv2d(x, weight, bias, padding=1), **TOL[np.float32])


def test_unknown_tile_refused(rng):
    x, weight, bias = arrays(rng, 1, 1, 4, 4, 1, 1, 1, np.float32)
    with pytest.raises(ValueError, match="FB=5, V=5"):
        direct_conv2d(x, weight, bias, geom(x, weight.shape, 0), plan=(1, 5, 5))


def test_plan_is_valid():
    for shape, w_shape in [((128, 3, 32, 32), (32, 3, 3, 3)), ((1, 512, 224, 224), (7, 512, 7, 7))]:
        rows, fb, v = direct_plan(geom(shape, w_shape, 1), np.float32)
        assert (fb, v) in tiles() and 1 <= rows <= shape[2]


def test_plan_splits_small_batches_into_bands():
    """One image on two threads: two bands, one per thread."""
    assert direct_plan(geom((1, 16, 8, 8), (32, 16, 3, 3), 1), np.float32, threads=2)[0] == 4
    assert direct_plan(geom((2, 16, 8, 8), (32, 16, 3, 3), 1), np.float32, threads=2)[0] == 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plans_bit_identical(rng, dtype):
    """Bands and strips never change a result, nor does the choice among the micro-kernels
    of an instruction set: every output element is the same sequence of (on x86-64 AVX2
    and AVX-512: fused) multiply-adds, whatever the vector width.  Checked for every
    micro-kernel of each instruction set this CPU runs, which all agree with the
    reference; for the unrolled 3x3 and 5x5 kernels and any other size."""
    for k, p in ((3, 1), (5, 2), (3, 2)):
        x, weight, bias = arrays(rng, 2, 4, 13, 21, 30, k, k + (k == 3 and p == 2), dtype)
        g = geom(x, weight.shape, p)
        by_tile = {tile: [direct_conv2d(x, weight, bias, g, plan=(rows, *tile))
                          for rows in (1, 4, 5, 13)] for tile in tiles()}
        first = next(iter(by_tile.values()))[0]
        for tile, ys in by_tile.items():
            for y in ys:
                assert np.array_equal(y, first), (tile, k)
        np.testing.assert_allclose(first, R.conv2d(x, weight, bias, padding=p), **TOL[dtype])


def test_tiles_are_the_kernels_of_the_active_instruction_set(isa):
    """tiles() lists exactly the micro-kernels the active instruction set has; the weight
    gradient runs on all (conv_dispatch's tables take it except on the generic path)."""
    candidates = {tile for level in TILES.values() for tile in level} | {(5, 5), (1, 1)}
    assert tiles() == TILES[isa]
    assert {tile for tile in candidates if _kernel.has_tile(*tile)} == set(TILES[isa])
    assert _kernel.has_grad_weight()


def test_plan_prefers_the_measured_tile_on_avx2(isa):
    """AVX2: (6, 1) (12 accumulators) for 64 and 128 channels despite a little padding,
    (4, 1) for 16 and 32 (see TILE_SPEED); AVX-512 and generic as before."""
    if isa != "avx2":
        assert _direct._tile(32, 1024, 16) == {"avx512": (16, 1), "generic": (2, 1)}[isa]
        return
    for f, tile in ((16, 4), (32, 4), (64, 6), (128, 6), (6, 6), (4, 4), (3, 4)):
        assert _direct._tile(f, 1024, 16) == (tile, 1), f


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("rows", [1, 3, 64])
@pytest.mark.parametrize("pad", ["same", "valid", "full"])
def test_band_copies(rng, k, rows, pad):
    """The band copies for every width 1..20: 'same' convs (output width == input width)
    copy whole shifted planes, the others go row by row through a padded row."""
    p = {"same": k // 2, "valid": 0, "full": k - 1}[pad]
    for width in range(max(1, k - 2 * p), 21):
        x, weight, bias = arrays(rng, 1, 2, 6 + k, width, 3, k, k, np.float32)
        y = direct_conv2d(x, weight, bias, geom(x, weight.shape, p),
                          plan=(min(rows, 6 + 2 * p + 1), *tiles()[0]))
        np.testing.assert_allclose(y, R.conv2d(x, weight, bias, padding=p), **TOL[np.float32])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
def test_scratch_at_any_alignment(rng, stride, dtype):
    """The band copies start on a 64-byte line wherever the scratch row starts (dc_aligned):
    the same bits at every offset, and nothing written outside band_scratch() elements."""
    x, weight, _ = arrays(rng, 2, 3, 13, 19, 5, 5, 5, dtype, with_bias=False)
    want = R.conv2d(x, weight, stride=stride, padding=2)
    fb, v = tiles()[0]
    packed = _direct._packed_weight(weight, fb)
    bias = np.zeros(packed.shape[0] * fb, dtype)
    n = _kernel.band_scratch(x.itemsize, 3, 5, 5, 3, want.shape[3], v, taps=stride != 1)
    results = []
    for offset in range(64 // x.itemsize):
        big = np.full(offset + n + 64, 1234.5, dtype)
        y = np.empty_like(want)
        _kernel.direct_conv2d(x, packed, bias, y, big[offset:offset + n].reshape(1, n), 2, 2,
                              3, v, 1, sh=stride, sw=stride)
        assert (big[:offset] == 1234.5).all() and (big[offset + n:] == 1234.5).all(), offset
        results.append(y)
    np.testing.assert_allclose(results[0], want, **TOL[dtype])
    assert all(np.array_equal(y, results[0]) for y in results)


# ------------------------------------------------------------------ weight gradient


def grad_weight_case(rng, n, c, h, w, f, kh, kw, padding):
    x, weight, _ = arrays(rng, n, c, h, w, f, kh, kw, np.float32, with_bias=False)
    y = R.conv2d(x, weight, padding=padding)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    _, want_w, want_b = R.conv2d_backward(x.astype(np.float64), weight.astype(np.float64),
                                          grad_y.astype(np.float64), padding=padding)
    return x, grad_y, weight.shape, want_w, want_b


@settings(max_examples=scaled(100))
@given(geometry=direct_geometries(), seed=st.integers(0, 2**31))
def test_grad_weight_matches_reference(geometry, seed):
    (n, c, h, w), (f, _, kh, kw), padding = geometry
    x, grad_y, w_shape, want_w, want_b = grad_weight_case(np.random.default_rng(seed), n, c, h,
                                                          w, f, kh, kw, padding)
    got_w, got_b = _direct.direct_conv2d_grad_weight(x, grad_y, geom(x, w_shape, padding),
                                                     PARTS)
    assert got_w.shape == w_shape and got_w.dtype == np.float32 and got_b.shape == (f,)
    np.testing.assert_allclose(got_w, want_w, **TOL[np.float32])
    np.testing.assert_allclose(got_b, want_b, **TOL[np.float32])


@pytest.mark.parametrize("kernel,padding", [((5, 5), (2, 2)), ((3, 3), (1, 1)), ((7, 7), (3, 3)),
                                            ((1, 1), (0, 0)), ((3, 5), (0, 4)), ((5, 3), (6, 1)),
                                            ((9, 2), (1, 0))])
@pytest.mark.parametrize("f", [1, 6, 32])
@pytest.mark.parametrize("band_bytes", [1 << 20, 2048])
def test_grad_weight_tiles_bands_and_tails(rng, monkeypatch, kernel, padding, f, band_bytes):
    """Every channel-tile and kernel-row count (F = 1, 6, 32 by 4s; KH up to 9 by 5s), widths
    that leave masked tails (13 x 21 pixels), paddings beyond the kernel, one or many bands."""
    monkeypatch.setattr(_direct, "BAND_BYTES", band_bytes)
    x, grad_y, w_shape, want_w, want_b = grad_weight_case(rng, 3, 5, 13, 21, f, *kernel, padding)
    got_w, got_b = _direct.direct_conv2d_grad_weight(x, grad_y, geom(x, w_shape, padding),
                                                     PARTS)
    np.testing.assert_allclose(got_w, want_w, **TOL[np.float32])
    np.testing.assert_allclose(got_b, want_b, **TOL[np.float32])


def test_grad_weight_threads_bit_identical(rng, monkeypatch):
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    monkeypatch.setattr(_direct, "BAND_BYTES", 4096)
    x, grad_y, w_shape, want_w, _ = grad_weight_case(rng, 11, 4, 12, 19, 9, 5, 5, 2)
    before = cnnframe.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            cnnframe.set_num_threads(threads)
            results.append(_direct.direct_conv2d_grad_weight(x, grad_y, geom(x, w_shape, 2),
                                                             PARTS))
    finally:
        cnnframe.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(*results))
    np.testing.assert_allclose(results[0][0], want_w, **TOL[np.float32])


@pytest.mark.parametrize("stride", [1, 2])
def test_grad_weight_scratch_at_any_alignment(rng, stride):
    """The weight gradient's copies of grad_y and x start on 64-byte lines wherever the
    scratch row starts: the same bits at every offset, nothing written outside
    band_scratch(..., grad_channels=F) elements, and a shorter scratch is refused."""
    x = rng.standard_normal((2, 3, 13, 19)).astype(np.float32)
    y = R.conv2d(x, np.zeros((6, 3, 5, 5), np.float32), stride=stride, padding=2)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    oh, ow = y.shape[2:]
    n = _kernel.band_scratch(4, 3, 5, 5, 4, ow, 1, taps=stride != 1, grad_channels=6)
    grad_w, grad_b = np.empty((1, 6 * 3 * 25), np.float32), np.empty((1, 6), np.float32)
    results = []
    for offset in range(16):
        big = np.full(offset + n + 16, 1234.5, np.float32)
        _kernel.direct_conv2d_grad_weight(x, grad_y, grad_w, grad_b,
                                          big[offset:offset + n].reshape(1, n), 5, 5, 2, 2, 4,
                                          1, stride, stride)
        assert (big[:offset] == 1234.5).all() and (big[offset + n:] == 1234.5).all(), offset
        results.append(grad_w.copy())
    _, want_w, _ = R.conv2d_backward(x.astype(np.float64), np.zeros((6, 3, 5, 5)),
                                     grad_y.astype(np.float64), stride=stride, padding=2)
    np.testing.assert_allclose(results[0].reshape(want_w.shape), want_w, **TOL[np.float32])
    assert all(np.array_equal(w, results[0]) for w in results)
    with pytest.raises(ValueError, match="grad_channels=6"):
        _kernel.direct_conv2d_grad_weight(x, grad_y, grad_w, grad_b,
                                          np.empty((1, n - 1), np.float32), 5, 5, 2, 2, 4, 1,
                                          stride, stride)


def test_grad_weight_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    grad_w, grad_b = _direct.direct_conv2d_grad_weight(x, np.zeros((0, 4, 8, 8), np.float32),
                                                       geom(x, (4, 3, 3, 3), 1), PARTS)
    assert not grad_w.any() and grad_w.shape == (4, 3, 3, 3) and not grad_b.any()
