"""Depthwise convolution (groups == C, M filters per channel): conv2d and conv2d_backward
against the reference on every instruction-set path, for the kernel sizes, strides,
paddings, dilations and channel multipliers that depthwise layers use."""
import numpy as np
import pytest

import cnnframe
import cnnframe.functional as F
import cnnframe.reference as R
from cnnframe.functional import depthwise
from cnnframe.functional._args import conv_geometry
from cnnframe.functional.conv_dispatch import choose_algorithm

# (N, C, H, W, multiplier M, kernel, stride, padding, dilation)
CASES = [
    (2, 3, 7, 9, 1, 3, 1, 1, 1),      # MobileNet 3x3, odd sizes
    (2, 4, 8, 8, 2, 3, 2, 1, 1),      # stride 2, channel multiplier 2
    (1, 2, 9, 7, 3, 5, 1, 2, 1),      # 5x5, multiplier 3
    (2, 3, 10, 11, 1, 3, 2, 0, 2),    # dilated, unpadded, stride 2
    (1, 2, 6, 6, 1, 1, 2, 0, 1),      # 1x1 stride 2
    (2, 2, 11, 9, 2, 5, 2, 2, 1),     # 5x5 stride 2
    (3, 5, 4, 4, 1, 3, 1, 3, 1),      # padding wider than the kernel reach
    (1, 2, 1, 1, 1, 1, 1, 0, 1),      # a single pixel
    (1, 2, 3, 75, 1, 3, 1, 1, 1),     # rows of several 4-vector blocks, then a tail
    (1, 2, 5, 141, 2, 5, 2, 2, 1),    # the same at stride 2, 5x5
    (2, 3, 12, 13, 1, 7, 2, 3, 1),    # 7x7 stride 2 (the generic tap loops)
    (1, 2, 9, 8, 2, 4, 3, 1, 2),      # even kernel, stride 3, dilated
]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _arrays(case, dtype, seed=0):
    n, c, h, w, m, k, s, p, d = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((c * m, 1, k, k)).astype(dtype)
    bias = rng.standard_normal(c * m).astype(dtype)
    return x, weight, bias, dict(stride=s, padding=p, dilation=d, groups=c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_depthwise_matches_reference(isa, case, dtype):
    x, weight, bias, geo = _arrays(case, dtype)
    assert depthwise.depthwise_applies(x.shape, weight.shape, geo["groups"])
    y = F.conv2d(x, weight, bias, **geo)
    y_ref = R.conv2d(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64),
                     **geo)
    np.testing.assert_allclose(y, y_ref, rtol=TOL[dtype], atol=TOL[dtype])
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx, gw, gb = F.conv2d_backward(x, weight, gy, **geo)
    rx, rw, rb = R.conv2d_backward(x.astype(np.float64), weight.astype(np.float64),
                                   gy.astype(np.float64), **geo)
    for got, want in ((gx, rx), (gw, rw), (gb, rb)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * 10)


@pytest.mark.parametrize("case", CASES[:3] + CASES[9:10], ids=str)
def test_depthwise_is_bit_identical_across_thread_counts(isa, case):
    x, weight, bias, geo = _arrays(case, np.float32, seed=2)
    gy = np.random.default_rng(3).standard_normal(F.conv2d(x, weight, bias, **geo).shape)
    gy = gy.astype(np.float32)
    results = []
    before = cnnframe.get_num_threads()
    try:
        for threads in (1, 2):
            cnnframe.set_num_threads(threads)
            results.append((F.conv2d(x, weight, bias, **geo),
                            *F.conv2d_backward(x, weight, gy, **geo)))
    finally:
        cnnframe.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_depthwise_skips_grad_x_when_not_needed():
    x, weight, bias, geo = _arrays(CASES[1], np.float64)
    gy = np.ones(F.conv2d(x, weight, bias, **geo).shape)
    gx, gw, _ = F.conv2d_backward(x, weight, gy, need_grad_x=False, **geo)
    assert gx is None
    np.testing.assert_allclose(gw, R.conv2d_backward(x, weight, gy, **geo)[1], rtol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, groups", [
    ((1, 4, 8, 8), (4, 2, 3, 3), 2),     # two channels per group
    ((1, 4, 8, 8), (4, 4, 3, 3), 1),     # dense
    ((1, 1, 8, 8), (4, 1, 3, 3), 1),     # dense, C = 1
])
def test_only_depthwise_convs_take_the_depthwise_kernel(x_shape, w_shape, groups):
    assert not depthwise.depthwise_applies(x_shape, w_shape, groups)
    x, w = np.ones(x_shape), np.ones(w_shape)
    with pytest.raises(ValueError, match="algorithm='depthwise' cannot compute.*groups == C"):
        F.conv2d(x, w, groups=groups, algorithm="depthwise")
    for pass_ in ("forward", "grad_x", "grad_weight"):
        g = conv_geometry(x_shape, w_shape, groups=groups)
        assert choose_algorithm(pass_, g, np.float32) != "depthwise"


@pytest.mark.parametrize("isa_name", ["avx512", "avx2", "generic"])
def test_every_table_takes_the_depthwise_kernel_for_depthwise_convs(isa_name):
    g = conv_geometry((8, 16, 16, 16), (32, 1, 3, 3), stride=2, padding=1, groups=16)
    for pass_ in ("forward", "grad_x", "grad_weight"):
        assert choose_algorithm(pass_, g, np.float32, isa_name) == "depthwise"


def test_depthwise_matches_im2col_when_forced():
    x, weight, bias, geo = _arrays(CASES[1], np.float64)
    y = F.conv2d(x, weight, bias, **geo, algorithm="depthwise")
    np.testing.assert_allclose(y, F.conv2d(x, weight, bias, **geo, algorithm="im2col"),
                               rtol=1e-12, atol=1e-12)
    gy = np.random.default_rng(5).standard_normal(y.shape)
    mixed = F.conv2d_backward(x, weight, gy, **geo,
                              algorithm={"grad_x": "im2col", "grad_weight": "depthwise"})
    plain = F.conv2d_backward(x, weight, gy, **geo, algorithm="im2col")
    for a, b in zip(mixed, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_conv2d_takes_the_depthwise_kernel(monkeypatch):
    """conv2d and conv2d_backward route a depthwise call to the depthwise kernels."""
    calls = []
    for name in ("depthwise_forward", "depthwise_backward"):
        kernel = getattr(depthwise._kernel, name)
        monkeypatch.setattr(depthwise._kernel, name,
                            lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    x, weight, bias, geo = _arrays(CASES[0], np.float32)
    y = F.conv2d(x, weight, bias, **geo)
    F.conv2d_backward(x, weight, np.ones_like(y), **geo)
    assert calls == ["depthwise_forward", "depthwise_backward"]


# ---- non-finite values: the kernel skips products that are zero for finite values (taps on
# padding, the zeros between spread-out grad_y values); conv2d then routes to im2col so that
# 0 * inf = NaN comes out where the reference has it.

@pytest.mark.parametrize("stride, padding", [((1, 2), (1, 0)), ((1, 2), (0, 1)), (2, 1), (1, 1)])
def test_non_finite_weights_and_gradients_propagate_like_the_reference(stride, padding, rng):
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    w[0, 0, 1, 1] = np.nan
    w[2, 0, 0, 2] = np.inf
    kw = dict(stride=stride, padding=padding, groups=3)
    with np.errstate(all="ignore"):
        y = F.conv2d(x, w, **kw)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gy[1, 1, 0, 0] = np.inf
        for got, want in zip((y, *F.conv2d_backward(x, w, gy, **kw)),
                             (R.conv2d(x, w, **kw), *R.conv2d_backward(x, w, gy, **kw))):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)
