"""Max, average and global average pooling against the reference and finite differences."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import cnnframe.functional as F
import cnnframe.reference as R
from cnnframe.testing.strategies import distinct_values, pool_geometries

# Every case on every instruction set this CPU runs (tests/conftest.py: isa).
pytestmark = pytest.mark.usefixtures("isa")


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,p,out", [(65536, 32768, 2), (46341, 23170, 1)])
def test_avg_pool_divisor_of_huge_windows(dtype, k, p, out):
    """Windows of k*k >= 2**31 cells: one pixel of 1 in each, the rest padding, so each
    output is 1 / k**2 and each of its grad_y reaches the pixel divided by k**2.  (The
    divisor once overflowed an int: inf for 65536**2, negative for 46341**2.)"""
    x = np.ones((1, 1, 1, 1), dtype)
    y = F.avg_pool2d(x, k, 1, p)
    assert y.shape == (1, 1, out, out)
    np.testing.assert_allclose(y, np.full(y.shape, 1 / k**2), rtol=1e-6)
    grad_x = F.avg_pool2d_backward(np.ones_like(y), x.shape, k, 1, p)
    np.testing.assert_allclose(grad_x, [[[[out * out / k**2]]]], rtol=1e-6)


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
    shape, kw = geom.input_shape, geom.functional_kwargs()
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
    shape, kw = geom.input_shape, geom.functional_kwargs()
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


# --- Vectorised kernels (windows inside the plane; 2x2 stride 2 its own) vs generic loops ---

import cnnframe  # noqa: E402
import cnnframe.functional.pooling as pooling_module  # noqa: E402

# Values with many ties (signed zeros among them) and NaNs of distinct bit patterns, so a
# kernel that kept a later maximum, or a later NaN, gives different bits.
_NAN_BITS = {np.float32: (0x7FC00001, 0x7FC00002, 0xFFC00003),
             np.float64: (0x7FF8000000000001, 0x7FF8000000000002, 0xFFF8000000000003)}


def tie_and_nan_values(rng, shape, dtype, nans=True):
    """Draws from {-inf, -1, -0.0, 0.0, 1, 2, inf} (and three distinct NaNs)."""
    pool = np.array([-np.inf, -1.0, -0.0, 0.0, 1.0, 2.0, np.inf], dtype)
    if nans:
        uint = np.uint32 if dtype == np.float32 else np.uint64
        pool = np.concatenate([pool, np.array(_NAN_BITS[dtype], uint).view(dtype)])
    return pool[rng.integers(0, len(pool), shape)]


def bits(a):
    """An array's exact bits, for comparisons that tell -0.0 from 0.0 and NaNs apart."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else
                  np.uint64 if a.dtype == np.float64 else a.dtype)


def generic(fn, *args, **kwargs):
    """fn run with the vectorised kernels switched off (the generic loops)."""
    saved = pooling_module.VECTORISED
    pooling_module.VECTORISED = False
    try:
        return fn(*args, **kwargs)
    finally:
        pooling_module.VECTORISED = saved


VECTORISED_CASES = [  # (x shape, kwargs): rows of 1..19 windows, odd sizes dropping a last row/col
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((1, 2, 9, 11), dict(kernel_size=2)),              # floor: last row and column dropped
    ((1, 2, 2, 2), dict(kernel_size=2)),               # one window per row (scalar rows)
    ((2, 1, 6, 7), dict(kernel_size=2)),               # 3 windows per row
    ((1, 2, 10, 19), dict(kernel_size=2)),             # 9: a vector and an overlapping one
    ((1, 1, 4, 38), dict(kernel_size=2, stride=2)),    # 19
    ((2, 2, 9, 9), dict(kernel_size=3)),               # 3x3 stride 3
    ((1, 2, 13, 20), dict(kernel_size=3)),             # floor with 3x3
    ((2, 2, 7, 9), dict(kernel_size=(3, 2), stride=(3, 2))),
    ((1, 2, 9, 10), dict(kernel_size=3, stride=1)),    # overlapping windows
    ((1, 2, 9, 12), dict(kernel_size=(2, 3), stride=(1, 2))),
    ((2, 1, 5, 5), dict(kernel_size=(1, 2), stride=(1, 1))),
    # padded: the windows inside the plane vectorised, the border ring generic
    ((2, 2, 16, 16), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 15, 21), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 9, 14), dict(kernel_size=(5, 3), stride=1, padding=(2, 1))),
    ((1, 1, 6, 30), dict(kernel_size=(2, 4), stride=(1, 3), padding=(1, 2))),
    ((2, 1, 3, 3), dict(kernel_size=3, stride=1, padding=1)),    # one window inside
    ((1, 2, 2, 3), dict(kernel_size=2, stride=1, padding=1)),    # none inside: all border
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("shape,kw", VECTORISED_CASES)
def test_vectorised_max_pool_matches_generic_and_reference_bit_for_bit(rng, shape, kw, dtype,
                                                                        kind):
    """Ties go to the first maximum in row-major window order, a NaN to the first NaN."""
    x = layout(tie_and_nan_values(rng, shape, dtype), kind)
    y, argmax = F.max_pool2d(x, **kw)
    y_gen, argmax_gen = generic(F.max_pool2d, x, **kw)
    y_ref, argmax_ref = R.max_pool2d(x, **kw)
    np.testing.assert_array_equal(bits(y), bits(y_gen))
    np.testing.assert_array_equal(argmax, argmax_gen)
    np.testing.assert_array_equal(bits(y), bits(y_ref))
    np.testing.assert_array_equal(argmax, argmax_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_max_pool_nan_and_tie_rules(dtype):
    """The rules spelt out on one 2x2 window per case (not only agreement with the loop)."""
    nan1, nan2, _ = np.array(_NAN_BITS[dtype], np.uint32 if dtype == np.float32
                             else np.uint64).view(dtype)
    windows = [  # (2x2 window, index of the winner in row-major order)
        ([[1, 3], [3, 2]], 1),          # tie: the first 3
        ([[-0.0, 0.0], [0.0, -1]], 0),  # -0.0 == 0.0: the first zero
        ([[1, nan1], [5, nan2]], 1),    # the first NaN, even before a larger number
        ([[nan2, 7], [nan1, 1]], 0),
        ([[-np.inf] * 2, [-np.inf, -np.inf]], 0),
        ([[1, 2], [3, 4]], 3),
    ]
    x = np.zeros((1, 1, 2, 2 * len(windows)), dtype)
    for k, (win, _) in enumerate(windows):
        x[0, 0, :, 2 * k:2 * k + 2] = win
    y, argmax = F.max_pool2d(x, 2)
    for k, (_, winner) in enumerate(windows):
        r, c = divmod(winner, 2)
        assert argmax[0, 0, 0, k] == r * x.shape[3] + 2 * k + c
        assert bits(y[0, 0, 0, k]) == bits(x[0, 0, r, 2 * k + c])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 9, 11), (2, 1, 6, 7), (1, 2, 10, 19),
                                   (1, 2, 3, 2)])
def test_vectorised_avg_pool_2x2_matches_generic_bit_for_bit(rng, shape, dtype):
    x = layout(rng.standard_normal(shape).astype(dtype), "strided")
    x[..., 0, 0] = -0.0  # 0 + -0.0 is +0.0: the generic loop's sum starts from zero
    y = F.avg_pool2d(x, 2)
    np.testing.assert_array_equal(bits(y), bits(generic(F.avg_pool2d, x, 2)))
    np.testing.assert_allclose(y, R.avg_pool2d(x, 2), **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    gy[..., 0, 0] = -0.0
    gx = F.avg_pool2d_backward(gy, x.shape, 2)
    np.testing.assert_array_equal(bits(gx), bits(generic(F.avg_pool2d_backward, gy, x.shape, 2)))
    np.testing.assert_allclose(gx, R.avg_pool2d_backward(gy, x.shape, 2), **TOL[dtype])
    # a dropped last row / column gets zero gradient
    assert not gx[..., 2 * y.shape[2]:, :].any() and not gx[..., :, 2 * y.shape[3]:].any()


@st.composite
def wide_pool_geometries(draw):
    """Like pool_geometries, with rows up to ~30 windows (several vectors and a remainder)."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = max(1, kh - 2 * ph) + draw(st.integers(0, 12))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, 30))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return shape, dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw))


@given(geom=wide_pool_geometries(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31 - 1))
def test_vectorised_random_geometry(geom, dtype, seed):
    shape, kw = geom
    x = tie_and_nan_values(np.random.default_rng(seed), shape, dtype)
    y, argmax = F.max_pool2d(x, **kw)
    y_gen, argmax_gen = generic(F.max_pool2d, x, **kw)
    np.testing.assert_array_equal(bits(y), bits(y_gen))
    np.testing.assert_array_equal(argmax, argmax_gen)
    np.testing.assert_array_equal(argmax, R.max_pool2d(x, **kw)[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pools_do_not_depend_on_thread_count(rng, monkeypatch, dtype):
    """Every output element comes from one thread: 1 and 2 threads give the same bits."""
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    x = tie_and_nan_values(rng, (5, 7, 13, 18), dtype)
    gy = rng.standard_normal((5, 7, 6, 9)).astype(dtype)
    threads = cnnframe.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            cnnframe.set_num_threads(n)
            y, argmax = F.max_pool2d(x, 2)
            runs.append([y, argmax, F.max_pool2d_backward(gy, argmax, x.shape),
                         *F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 2),
                         F.avg_pool2d_backward(gy, x.shape, 2)])
    finally:
        cnnframe.set_num_threads(threads)
    for one, two in zip(*runs):
        np.testing.assert_array_equal(bits(one), bits(two))


def test_max_pool_backward_rejects_indices_outside_the_plane_in_any_plane(rng):
    x = rng.standard_normal((3, 4, 6, 6))
    y, argmax = F.max_pool2d(x, 2)
    for value in (-1, 36, 2**40):
        bad = argmax.copy()
        bad[2, 3, 2, 1] = value  # the last plane, which the other thread handles
        with pytest.raises(ValueError, match=r"indices outside \[0, 36\)"):
            F.max_pool2d_backward(y, bad, x.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_backward_sums_overlapping_windows(rng, dtype):
    """3x3 stride-1 windows share maxima: their gradients add up at one pixel."""
    x = layout(tie_and_nan_values(rng, (2, 3, 7, 8), dtype, nans=False), "fortran")
    y, argmax = F.max_pool2d(x, 3, stride=1)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(F.max_pool2d_backward(gy, argmax, x.shape),
                               R.max_pool2d_backward(gy, argmax, x.shape), **TOL[dtype])
