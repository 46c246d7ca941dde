"""interpolate (nearest, bilinear) and adaptive pooling against the loop references."""
import numpy as np
import pytest

import cnnframe.reference as R
from cnnframe.functional.adaptive_pool import (adaptive_avg_pool2d, adaptive_avg_pool2d_backward,
                                               adaptive_max_pool2d, adaptive_max_pool2d_backward)
from cnnframe.functional.upsample import interpolate, interpolate_backward


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def threading_mode(request, monkeypatch):
    if request.param == "parallel":
        monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    return request.param


TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-13, atol=1e-13)}

# interpolate's arguments: integer and fractional scales (up and down), explicit sizes,
# align_corners both ways, recompute_scale_factor.
RESIZES = [
    dict(scale_factor=2), dict(scale_factor=3), dict(scale_factor=[1.5, 0.5]),
    dict(size=[7, 3]), dict(size=4), dict(size=[2, 9]),
    dict(scale_factor=2, mode="bilinear"), dict(scale_factor=[1.7, 2.3], mode="bilinear"),
    dict(scale_factor=0.6, mode="bilinear"), dict(size=[9, 4], mode="bilinear"),
    dict(size=[9, 4], mode="bilinear", align_corners=True),
    dict(size=[1, 6], mode="bilinear", align_corners=True),
    dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True),
    dict(scale_factor=1.7, recompute_scale_factor=True),
    dict(size=[5, 4], mode="bilinear"),   # the input's own size: a copy
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("args", RESIZES, ids=[str(a) for a in RESIZES])
def test_interpolate_and_backward_match_reference(rng, args, dtype):
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    y = interpolate(x, **args)
    y_ref = R.interpolate(x, **args)
    assert y.shape == y_ref.shape and y.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = interpolate_backward(g, x.shape, **args)
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, R.interpolate_backward(g, x.shape, **args), **TOL[dtype])


def test_nearest_times_two_repeats_pixels_and_bilinear_keeps_constants(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(interpolate(x, scale_factor=2),
                                  x.repeat(2, axis=2).repeat(2, axis=3))
    g = rng.standard_normal((2, 3, 8, 10))
    np.testing.assert_allclose(interpolate_backward(g, x.shape, scale_factor=2),
                               g.reshape(2, 3, 4, 2, 5, 2).sum(axis=(3, 5)), rtol=1e-14)
    const = np.full((1, 2, 3, 4), 2.5)
    for corners in (False, True):
        np.testing.assert_allclose(interpolate(const, size=[7, 5], mode="bilinear",
                                               align_corners=corners), 2.5, rtol=1e-15)
    # align_corners maps corner pixels onto corner pixels
    y = interpolate(x, size=[7, 9], mode="bilinear", align_corners=True)
    np.testing.assert_allclose(y[:, :, [0, 0, -1, -1], [0, -1, 0, -1]],
                               x[:, :, [0, 0, -1, -1], [0, -1, 0, -1]], rtol=1e-14)


SHAPES = [(2, 3, 8, 8), (2, 2, 7, 5), (1, 1, 3, 10), (2, 1, 1, 1)]
OUT_SIZES = [1, 3, [4, 2], [2, None], [None, 7], 10]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("output_size", OUT_SIZES, ids=[str(o) for o in OUT_SIZES])
def test_adaptive_pools_match_reference(rng, shape, output_size, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    hw = [output_size] * 2 if not isinstance(output_size, list) else output_size
    oh, ow = (s if s is not None else n for s, n in zip(hw, shape[2:]))
    y = adaptive_avg_pool2d(x, output_size)
    assert y.shape == shape[:2] + (oh, ow)
    np.testing.assert_allclose(y, R.adaptive_avg_pool2d(x, (oh, ow)), **TOL[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(adaptive_avg_pool2d_backward(g, x.shape),
                               R.adaptive_avg_pool2d_backward(g, x.shape), **TOL[dtype])
    ym, argmax = adaptive_max_pool2d(x, output_size)
    ym_ref, argmax_ref = R.adaptive_max_pool2d(x, (oh, ow))
    np.testing.assert_array_equal(ym, ym_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    gx = adaptive_max_pool2d_backward(g, argmax, x.shape)
    expected = np.zeros(x.shape)
    for idx in np.ndindex(g.shape):
        n, c = idx[:2]
        h, w = divmod(int(argmax[idx]), x.shape[3])
        expected[n, c, h, w] += g[idx]
    np.testing.assert_allclose(gx, expected, **TOL[dtype])


def test_adaptive_avg_of_a_divisible_size_is_block_means_and_1_is_global(rng):
    x = rng.standard_normal((2, 3, 6, 8))
    np.testing.assert_allclose(adaptive_avg_pool2d(x, [3, 2]),
                               x.reshape(2, 3, 3, 2, 2, 4).mean(axis=(3, 5)), rtol=1e-14)
    np.testing.assert_allclose(adaptive_avg_pool2d(x, 1)[:, :, 0, 0], x.mean(axis=(2, 3)),
                               rtol=1e-14)


def test_adaptive_max_propagates_nan_and_takes_the_first_of_ties():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    y, argmax = adaptive_max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 5
    assert (y[0, 0].ravel()[1:] == 0).all()
    assert argmax[0, 0, 0, 1] == 2 and argmax[0, 0, 1, 0] == 8   # first zero of each window


@pytest.mark.parametrize("call,exc,match", [
    (lambda x: interpolate(x), ValueError, "give exactly one of size and scale_factor"),
    (lambda x: interpolate(x, size=3, scale_factor=2), ValueError, "exactly one of"),
    (lambda x: interpolate(x, size=3, mode="bicubic"), ValueError, "mode must be one of"),
    (lambda x: interpolate(x, size=3, align_corners=True), ValueError,
     "align_corners can only be set with mode 'bilinear'"),
    (lambda x: interpolate(x, scale_factor=0.1), ValueError, "makes an empty output"),
    (lambda x: interpolate(x, scale_factor=-1.0), ValueError, "scale_factor must be finite"),
    (lambda x: interpolate(x, size=[2, 0]), ValueError, "size must be >= 1"),
    (lambda x: interpolate(x, size=2.5), TypeError, "size must be an int or a pair"),
    (lambda x: interpolate(x[0], size=2), ValueError, "x must have 4 dimensions"),
    (lambda x: interpolate_backward(x, x.shape, size=5), ValueError,
     "grad_y must have the output shape"),
    (lambda x: adaptive_avg_pool2d(x, 0), ValueError, "output_size must be >= 1"),
    (lambda x: adaptive_avg_pool2d(x, [2, 2, 2]), ValueError, "output_size must be an int or a"),
    (lambda x: adaptive_max_pool2d(x, "2"), TypeError, "output_size must be an int"),
    (lambda x: adaptive_avg_pool2d_backward(x, (2, 4, 3, 3)), ValueError,
     r"grad_y must have shape \(2, 4, OH, OW\)"),
])
def test_bad_arguments_are_refused_naming_them(rng, call, exc, match):
    x = rng.standard_normal((2, 3, 4, 4))
    with pytest.raises(exc, match=match):
        call(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c,h,w,kh,kw", [(2, 3, 4, 5, 2, 2), (1, 2, 3, 1, 3, 2), (3, 1, 1, 4, 1, 3),
                                           (2, 40, 7, 6, 2, 2)])
def test_depth_to_space_interleaves_planes_and_space_to_depth_undoes_it(rng, n, c, h, w, kh, kw,
                                                                        dtype):
    from cnnframe_ext import resample as K
    z = rng.standard_normal((n, c * kh * kw, h, w)).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    y = np.full((n, c, h * kh, w * kw), np.nan, dtype)
    K.depth_to_space(z, bias, y, 2)
    # y[n, c, i*kh + a, j*kw + b] = z[n, (c*kh + a)*kw + b, i, j] + bias[c], by index
    expected = z.reshape(n, c, kh, kw, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(y.shape)
    np.testing.assert_array_equal(y, expected + bias[:, None, None])
    K.depth_to_space(z, np.empty(0, dtype), y, 1)
    np.testing.assert_array_equal(y, expected)
    back = np.full_like(z, np.nan)
    K.space_to_depth(y, back, 2)
    np.testing.assert_array_equal(back, z)
