"""Max, average and global average pooling against the reference and finite differences."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import cnnframe.functional as F
import cnnframe.reference as R

from kernel_strategies import distinct_values, pool_geometries

@pytest.fixture(autouse=True, params=["serial", "parallel"])
def threading_mode(request, monkeypatch):
    """Run every case both on one thread and split over two (tiny calls run serially by default)."""
    if request.param == "parallel":
        monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    return request.param


TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}

CASES = [  # (x shape, kwargs)
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 3, 6, 5), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0))),
    ((3, 1, 5, 5), dict(kernel_size=5)),
    ((2, 2, 4, 4), dict(kernel_size=1, stride=1)),
]


def layout(a, kind):
    if kind == "strided":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    return np.asfortranarray(a) if kind == "fortran" else a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("shape,kw", CASES)
def test_max_pool_matches_reference(rng, shape, kw, dtype, kind):
    x = layout(distinct_values(rng, shape, dtype), kind)
    y, argmax = F.max_pool2d(x, **kw)
    y_ref, argmax_ref = R.max_pool2d(x, **kw)
    assert y.dtype == dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    gy = layout(rng.standard_normal(y.shape).astype(dtype), kind)
    np.testing.assert_allclose(F.max_pool2d_backward(gy, argmax, x.shape),
                               R.max_pool2d_backward(gy, argmax_ref, x.shape), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("shape,kw", CASES)
def test_avg_pool_matches_reference(rng, shape, kw, dtype, kind):
    x = layout(rng.standard_normal(shape).astype(dtype), kind)
    y = F.avg_pool2d(x, **kw)
    np.testing.assert_allclose(y, R.avg_pool2d(x, **kw), **TOL[dtype])
    gy = layout(rng.standard_normal(y.shape).astype(dtype), kind)
    np.testing.assert_allclose(F.avg_pool2d_backward(gy, x.shape, **kw),
                               R.avg_pool2d_backward(gy, x.shape, **kw), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool(rng, dtype):
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    y = F.global_avg_pool2d(x)
    assert y.shape == (3, 4) and y.dtype == dtype
    np.testing.assert_allclose(y, R.global_avg_pool2d(x), **TOL[dtype])
    gy = rng.standard_normal((3, 4)).astype(dtype)
    np.testing.assert_allclose(F.global_avg_pool2d_backward(gy, x.shape),
                               R.global_avg_pool2d_backward(gy, x.shape), **TOL[dtype])


def test_avg_pool_counts_padding_in_divisor():
    # A corner window of a 3x3 pool with padding 1 holds 4 real ones and 5 padded zeros.
    y = F.avg_pool2d(np.ones((1, 1, 4, 4)), 3, stride=1, padding=1)
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert y[0, 0, 1, 1] == pytest.approx(1.0)


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 2, 2))  # every real value below the zero a padded cell would hold
    y, argmax = F.max_pool2d(x, 2, stride=1, padding=1)
    assert (y == -1).all() and argmax.min() >= 0


def test_max_pool_propagates_nan():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    y, _ = F.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1:, :]).any()


@given(geom=pool_geometries(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31 - 1))
def test_pools_random_geometry(geom, dtype, seed):
    shape, kw = geom
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, shape, dtype)
    y, argmax = F.max_pool2d(x, **kw)
    y_ref, argmax_ref = R.max_pool2d(x, **kw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    np.testing.assert_allclose(F.avg_pool2d(x, **kw), R.avg_pool2d(x, **kw), **TOL[dtype])


def directional_error(f, arg, grad, rng, eps=1e-6):
    v = rng.standard_normal(arg.shape)
    numeric = (f(arg + eps * v) - f(arg - eps * v)) / (2 * eps)
    analytic = float(np.sum(grad * v))
    return abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-12)


@given(geom=pool_geometries(), seed=st.integers(0, 2**31 - 1))
def test_pool_gradients_match_finite_differences(geom, seed):
    """Away from ties (distinct values spaced far above eps), max-pool is locally linear."""
    shape, kw = geom
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, shape, np.float64)
    y, argmax = F.max_pool2d(x, **kw)
    proj = rng.standard_normal(y.shape)
    gx = F.max_pool2d_backward(proj, argmax, x.shape)
    # distinct values are >= 1/size apart, far more than the eps * |v| perturbation
    assert directional_error(lambda a: np.sum(proj * F.max_pool2d(a, **kw)[0]), x, gx, rng) < 1e-6
    gx = F.avg_pool2d_backward(proj, x.shape, **kw)
    assert directional_error(lambda a: np.sum(proj * F.avg_pool2d(a, **kw)), x, gx, rng) < 1e-6
    proj = rng.standard_normal(shape[:2])
    gx = F.global_avg_pool2d_backward(proj, shape)
    assert directional_error(lambda a: np.sum(proj * F.global_avg_pool2d(a)), x, gx, rng) < 1e-6


def test_zero_size_batch():
    x = np.zeros((0, 3, 4, 4), np.float32)
    y, argmax = F.max_pool2d(x, 2)
    assert y.shape == argmax.shape == (0, 3, 2, 2)
    assert F.max_pool2d_backward(y, argmax, x.shape).shape == x.shape
    assert F.avg_pool2d_backward(F.avg_pool2d(x, 2), x.shape, 2).shape == x.shape
    assert F.global_avg_pool2d(x).shape == (0, 3)
