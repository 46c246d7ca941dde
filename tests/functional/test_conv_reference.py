"""cnnframe.reference's conv2d checked independently: naive loops and numbers worked by hand.

Every other conv test compares with cnnframe/reference.py, which is itself an im2col
implementation.  Here the reference (and cnnframe.functional) meet
- `naive_conv2d` / `naive_conv2d_backward`: the defining sums written as plain
  Python loops over every output element and every kernel tap (no im2col, no
  reshaping tricks), on random small geometries, and
- hand-derived cases for stride, dilation, groups and asymmetric padding, whose
  expected numbers are worked out in the comments.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import cnnframe.functional as F
import cnnframe.reference as R
from cnnframe.testing import strategies as cst


def _geometry(x_shape, w_shape, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = (np.broadcast_to(v, 2) for v in (stride, padding, dilation))
    h, w = x_shape[2:]
    kh, kw = w_shape[2:]
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return (sh, sw), (ph, pw), (dh, dw), (oh, ow)


def _taps(x_shape, w_shape, stride, padding, dilation, groups):
    """Every (x index, weight index, y index) product of the conv, one at a time.

    y[b, o, i, j] += weight[o, ci, a, e] * x[b, group(o) * C/groups + ci,
                                             i*sh - ph + a*dh, j*sw - pw + e*dw]
    for taps that fall inside x (padding is zeros, so the others add nothing).
    """
    n, _, h, w = x_shape
    f, cg, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _geometry(x_shape, w_shape, stride, padding,
                                                       dilation)
    per_group = f // groups
    for b in range(n):
        for o in range(f):
            first_channel = (o // per_group) * cg
            for i in range(oh):
                for j in range(ow):
                    for ci in range(cg):
                        for a in range(kh):
                            for e in range(kw):
                                r, c = i * sh - ph + a * dh, j * sw - pw + e * dw
                                if 0 <= r < h and 0 <= c < w:
                                    yield ((b, first_channel + ci, r, c), (o, ci, a, e),
                                           (b, o, i, j))


def naive_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d by its definition (see `_taps`), accumulated in float64."""
    oh, ow = _geometry(x.shape, weight.shape, stride, padding, dilation)[3]
    y = np.zeros((x.shape[0], weight.shape[0], oh, ow))
    for xi, wi, yi in _taps(x.shape, weight.shape, stride, padding, dilation, groups):
        y[yi] += float(weight[wi]) * float(x[xi])
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape(1, -1, 1, 1)
    return y


def naive_conv2d_backward(x, weight, grad_y, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_weight, grad_bias): each product of the forward sum, differentiated."""
    grad_x, grad_w = np.zeros(x.shape), np.zeros(weight.shape)
    for xi, wi, yi in _taps(x.shape, weight.shape, stride, padding, dilation, groups):
        grad_x[xi] += float(weight[wi]) * float(grad_y[yi])
        grad_w[wi] += float(x[xi]) * float(grad_y[yi])
    return grad_x, grad_w, np.asarray(grad_y, np.float64).sum(axis=(0, 2, 3))


# ----------------------------------------------------------------- random geometries

@given(geom=cst.conv_geometries(max_batch=2, max_channels=4, max_size=6, max_kernel=3),
       with_bias=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_reference_matches_naive_loops(geom, with_bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(geom.input_shape)
    weight = rng.standard_normal(geom.weight_shape)
    bias = rng.standard_normal(geom.out_channels) if with_bias else None
    kw = geom.functional_kwargs()
    want = naive_conv2d(x, weight, bias, **kw)
    assert want.shape == geom.output_shape
    np.testing.assert_allclose(R.conv2d(x, weight, bias, **kw), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F.conv2d(x, weight, bias, **kw), want, rtol=1e-10, atol=1e-10)
    grad_y = rng.standard_normal(want.shape)
    wants = naive_conv2d_backward(x, weight, grad_y, **kw)
    for name, ref, fn, naive in zip(("grad_x", "grad_weight", "grad_bias"),
                                    R.conv2d_backward(x, weight, grad_y, **kw),
                                    F.conv2d_backward(x, weight, grad_y, **kw), wants):
        np.testing.assert_allclose(ref, naive, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(fn, naive, rtol=1e-10, atol=1e-10, err_msg=name)


def test_naive_loops_see_every_tap_once():
    """The naive sum itself: with all-ones inputs each output counts its taps inside x."""
    x, weight = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    # padding 1: the 4 x 4 windows of a 5 x 5 padded map; corners see 1 pixel, edges 2,
    # the middle 4
    want = [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]
    np.testing.assert_array_equal(naive_conv2d(x, weight, padding=1)[0, 0], want)


# ----------------------------------------------------------------- hand-derived cases

def _row(values):
    """A (1, 1, 1, len) array holding one row."""
    return np.array(values, np.float64).reshape(1, 1, 1, -1)


# Each case: x, weight, kwargs, grad_y, and y, grad_x, grad_weight, grad_bias worked by hand.
HAND_CASES = {
    # x = [1 2 3 4 5], w = [1 10], stride 2: windows start at 0 and 2 (the 5 is dropped)
    #   y = [1 + 2*10, 3 + 4*10] = [21, 43]
    # grad_y = [1 2]: grad_x = [1*1, 1*10, 2*1, 2*10, 0] (nothing reads x[4])
    #   grad_w = [1*1 + 2*3, 1*2 + 2*4] = [7, 10], grad_b = 1 + 2
    "stride": (_row([1, 2, 3, 4, 5]), _row([1, 10]), dict(stride=2), _row([1, 2]),
               _row([21, 43]), _row([1, 10, 2, 20, 0]), _row([7, 10]), [3]),
    # x = [1 2 3 4 5], w = [1 10], dilation 2: taps j and j + 2, three outputs
    #   y = [1 + 3*10, 2 + 4*10, 3 + 5*10] = [31, 42, 53]
    # grad_y = [1 2 3]: grad_x[0] = 1, [1] = 2, [2] = 1*10 + 3*1, [3] = 2*10, [4] = 3*10
    #   grad_w = [1*1 + 2*2 + 3*3, 1*3 + 2*4 + 3*5] = [14, 26], grad_b = 6
    "dilation": (_row([1, 2, 3, 4, 5]), _row([1, 10]), dict(dilation=2), _row([1, 2, 3]),
                 _row([31, 42, 53]), _row([1, 2, 13, 20, 30]), _row([14, 26]), [6]),
    # 4 input channels [1 2 3 4] of one pixel, 2 groups, 1x1 weights: output 0 reads
    # channels 0, 1 with [1 10], output 1 reads channels 2, 3 with [100 1000]
    #   y = [1*1 + 2*10, 3*100 + 4*1000] = [21, 4300]   (ungrouped would mix all four)
    # grad_y = [1 2]: grad_x = [1*1, 1*10, 2*100, 2*1000]
    #   grad_w = [[1*1, 1*2], [2*3, 2*4]], grad_b = [1, 2]
    "groups": (np.array([1, 2, 3, 4], np.float64).reshape(1, 4, 1, 1),
               np.array([[1, 10], [100, 1000]], np.float64).reshape(2, 2, 1, 1),
               dict(groups=2), np.array([1, 2], np.float64).reshape(1, 2, 1, 1),
               np.array([21, 4300], np.float64).reshape(1, 2, 1, 1),
               np.array([1, 10, 200, 2000], np.float64).reshape(1, 4, 1, 1),
               np.array([[1, 2], [6, 8]], np.float64).reshape(2, 2, 1, 1), [1, 2]),
    # x = [[1 2], [3 4]], w = [[1 10], [100 1000]], padding (1, 0): a zero row above and
    # below, none at the sides; padded x = [[0 0], [1 2], [3 4], [0 0]], 3 x 1 windows
    #   y = [0*1 + 0*10 + 1*100 + 2*1000, 1*1 + 2*10 + 3*100 + 4*1000, 3*1 + 4*10 + 0 + 0]
    #     = [2100, 4321, 43]
    # grad_y = [1 2 3]: x[0, 0] is tap (1, 0) of window 0 and (0, 0) of window 1:
    #   1*100 + 2*1 = 102; x[0, 1]: 1*1000 + 2*10 = 1020; x[1, 0]: 2*100 + 3*1 = 203;
    #   x[1, 1]: 2*1000 + 3*10 = 2030
    #   grad_w[0] = 1*[0 0] + 2*[1 2] + 3*[3 4] = [11 16],
    #   grad_w[1] = 1*[1 2] + 2*[3 4] + 3*[0 0] = [7 10], grad_b = 6
    "asymmetric_padding": (np.array([[1, 2], [3, 4]], np.float64).reshape(1, 1, 2, 2),
                           np.array([[1, 10], [100, 1000]], np.float64).reshape(1, 1, 2, 2),
                           dict(padding=(1, 0)), np.array([1, 2, 3], np.float64).reshape(1, 1, 3, 1),
                           np.array([2100, 4321, 43], np.float64).reshape(1, 1, 3, 1),
                           np.array([[102, 1020], [203, 2030]], np.float64).reshape(1, 1, 2, 2),
                           np.array([[11, 16], [7, 10]], np.float64).reshape(1, 1, 2, 2), [6]),
    # the same x and w, padding (0, 1): zero columns left and right, 1 x 3 windows
    #   padded x = [[0 1 2 0], [0 3 4 0]]
    #   y = [0 + 1*10 + 0 + 3*1000, 1*1 + 2*10 + 3*100 + 4*1000, 2*1 + 0 + 4*100 + 0]
    #     = [3010, 4321, 402]
    # grad_y = [1 2 3]: x[0, 0] is tap (0, 1) of window 0 and (0, 0) of window 1:
    #   1*10 + 2*1 = 12; x[0, 1]: 2*10 + 3*1 = 23; x[1, 0]: 1*1000 + 2*100 = 1200;
    #   x[1, 1]: 2*1000 + 3*100 = 2300
    #   grad_w[0, 0] = 1*0 + 2*1 + 3*2 = 8, grad_w[0, 1] = 1*1 + 2*2 + 3*0 = 5,
    #   grad_w[1, 0] = 1*0 + 2*3 + 3*4 = 18, grad_w[1, 1] = 1*3 + 2*4 + 3*0 = 11
    "asymmetric_padding_transposed": (
        np.array([[1, 2], [3, 4]], np.float64).reshape(1, 1, 2, 2),
        np.array([[1, 10], [100, 1000]], np.float64).reshape(1, 1, 2, 2),
        dict(padding=(0, 1)), np.array([1, 2, 3], np.float64).reshape(1, 1, 1, 3),
        np.array([3010, 4321, 402], np.float64).reshape(1, 1, 1, 3),
        np.array([[12, 23], [1200, 2300]], np.float64).reshape(1, 1, 2, 2),
        np.array([[8, 5], [18, 11]], np.float64).reshape(1, 1, 2, 2), [6]),
}

IMPLEMENTATIONS = {
    "naive": (naive_conv2d, naive_conv2d_backward),
    "reference": (R.conv2d, R.conv2d_backward),
    "functional": (F.conv2d, F.conv2d_backward),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("case", sorted(HAND_CASES))
def test_hand_derived_case(case, implementation, dtype):
    x, weight, kw, grad_y, y, grad_x, grad_weight, grad_bias = HAND_CASES[case]
    forward, backward = IMPLEMENTATIONS[implementation]
    x, weight, grad_y = (a.astype(dtype) for a in (x, weight, grad_y))
    # small integers: every sum is exact in float32 as well
    np.testing.assert_array_equal(forward(x, weight, **kw), y)
    got = backward(x, weight, grad_y, **kw)
    for name, g, want in zip(("grad_x", "grad_weight", "grad_bias"), got,
                             (grad_x, grad_weight, grad_bias)):
        np.testing.assert_array_equal(g, np.asarray(want, np.float64), err_msg=name)
