"""conv2d / conv2d_backward against the numpy reference and finite differences."""
import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import cnnframe
import cnnframe.functional as F
import cnnframe.functional.conv as conv_module
import cnnframe.reference as R
from cnnframe.functional import conv_dispatch
from cnnframe.functional._args import conv_geometry
from cnnframe.testing.strategies import conv_geometries


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def threading_mode(request, monkeypatch):
    """Run every case both on one thread and split over two (tiny calls run serially by default)."""
    if request.param == "parallel":
        monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    return request.param


# The test modes below; "winograd" and "auto" on every instruction set this CPU runs
# (the others call no code that depends on it, or the same as "winograd").
MODES = ["im2col", *(f"winograd-{isa}" for isa in cnnframe.available_isas()),
         "winograd2", *(f"auto-{isa}" for isa in cnnframe.available_isas())]


class Algorithm:
    """conv2d and conv2d_backward with one test mode's ``algorithm`` argument.

    "im2col" and "auto" pass that name; "winograd" (F(4x4, 3x3) for output sizes that are
    multiples of 4, F(2x2, 3x3) for other even ones) and "winograd2" (F(2x2, 3x3) for every
    even size) pass it for every pass Winograd can compute, whatever the channel count,
    and "im2col" for the others.
    """

    def __init__(self, mode):
        self.mode = mode

    def _pick(self, pass_, x, w, kw):
        if not self.mode.startswith("winograd"):
            return self.mode
        g = conv_geometry(x.shape, w.shape, **kw)
        return self.mode if conv_dispatch.supports(self.mode, pass_, g, x.dtype) else "im2col"

    def conv2d(self, x, w, b=None, **kw):
        return F.conv2d(x, w, b, algorithm=self._pick("forward", x, w, kw), **kw)

    def conv2d_backward(self, x, w, gy, need_grad_x=True, **kw):
        algorithm = {p: self._pick(p, x, w, kw) for p in ("grad_x", "grad_weight")}
        return F.conv2d_backward(x, w, gy, need_grad_x=need_grad_x, algorithm=algorithm, **kw)


@pytest.fixture(params=MODES)
def algo(request):
    """Each test mode, with its instruction set (suffix "-isa") forced by cnnframe.use_isa."""
    mode, _, isa = request.param.partition("-")
    with cnnframe.use_isa(isa) if isa else contextlib.nullcontext():
        yield Algorithm(mode)


# hypothesis tests take the `algo` fixture: it does not change between examples
FIXTURES_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def make(rng, shape, dtype, layout="contiguous"):
    """A random array in the given memory layout (contiguous, strided view, Fortran order)."""
    a = rng.standard_normal(shape).astype(dtype)
    if layout == "strided":
        big = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "fortran":
        return np.asfortranarray(a)
    return a


CASES = [  # (x shape, weight shape, kwargs)
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding=1)),
    ((3, 4, 10, 6), (6, 4, 3, 3), dict(padding=(2, 0))),                # Winograd: even outputs
    ((2, 4, 7, 9), (4, 2, 3, 3), dict(padding=(1, 2), groups=2)),        # Winograd fwd, im2col grad_x
    ((9, 2, 4, 4), (3, 2, 3, 3), dict(padding=1)),                      # several images per block
    ((3, 4, 7, 9), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    ((2, 4, 6, 6), (4, 1, 3, 3), dict(padding=1, groups=4)),            # depthwise
    ((2, 5, 5, 5), (3, 5, 1, 1), dict()),                               # 1x1
    ((1, 2, 11, 4), (2, 2, 5, 3), dict(stride=3, padding=2, dilation=1)),
    ((4, 3, 12, 10), (5, 3, 3, 3), dict(stride=2, padding=1)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("xs,ws,kw", CASES)
def test_conv_matches_reference(algo, rng, xs, ws, kw, dtype, layout):
    x, w = make(rng, xs, dtype, layout), make(rng, ws, dtype, layout)
    b = make(rng, (ws[0],), dtype)
    y = algo.conv2d(x, w, b, **kw)
    assert y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, R.conv2d(x, w, b, **kw), **TOL[dtype])
    gy = make(rng, y.shape, dtype, layout)
    grads = algo.conv2d_backward(x, w, gy, **kw)
    for got, want in zip(grads, R.conv2d_backward(x, w, gy, **kw)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("block_bytes", [64, 4096, 1 << 19])
@pytest.mark.parametrize("threads", [1, 2])
def test_blockings_agree(rng, monkeypatch, block_bytes, threads):
    """im2col + GEMM: row tiles of one image, several images per block and whole images
    give one answer."""
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", block_bytes)
    cnnframe.set_num_threads(threads)
    try:
        for xs, ws, kw in [((5, 3, 20, 18), (4, 3, 3, 3), dict(padding=1)),
                           ((7, 4, 5, 6), (6, 2, 2, 3), dict(groups=2, stride=(1, 2)))]:
            x, w = make(rng, xs, np.float64), make(rng, ws, np.float64)
            b = make(rng, (ws[0],), np.float64)
            y = F.conv2d(x, w, b, algorithm="im2col", **kw)
            np.testing.assert_allclose(y, R.conv2d(x, w, b, **kw), rtol=1e-10, atol=1e-10)
            gy = make(rng, y.shape, np.float64)
            for got, want in zip(F.conv2d_backward(x, w, gy, algorithm="im2col", **kw),
                                 R.conv2d_backward(x, w, gy, **kw)):
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    finally:
        cnnframe.set_num_threads(2)


@given(geom=conv_geometries(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31 - 1))
@FIXTURES_OK
def test_conv_random_geometry_matches_reference(algo, geom, dtype, seed):
    xs, ws, kw = geom.input_shape, geom.weight_shape, geom.functional_kwargs()
    rng = np.random.default_rng(seed)
    x, w, b = make(rng, xs, dtype), make(rng, ws, dtype), make(rng, (ws[0],), dtype)
    y = algo.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, R.conv2d(x, w, b, **kw), **TOL[dtype])
    gy = make(rng, y.shape, dtype)
    for got, want in zip(algo.conv2d_backward(x, w, gy, **kw), R.conv2d_backward(x, w, gy, **kw)):
        np.testing.assert_allclose(got, want, **TOL[dtype])


def directional_error(f, arg, grad, rng, eps=1e-3):
    """Relative error between <grad, v> and the central difference of f along a random v.

    conv2d is linear in each argument, so the central difference has no truncation
    error at any step; a larger step only shrinks the rounding error it divides.
    """
    v = rng.standard_normal(arg.shape)
    numeric = (f(arg + eps * v) - f(arg - eps * v)) / (2 * eps)
    analytic = float(np.sum(grad * v))
    return abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-12)


@given(geom=conv_geometries(), seed=st.integers(0, 2**31 - 1))
@FIXTURES_OK
def test_conv_gradients_match_finite_differences(algo, geom, seed):
    """Project the output on a random R: L = sum(R * conv(x, w, b)); check dL/dx, dL/dw, dL/db."""
    xs, ws, kw = geom.input_shape, geom.weight_shape, geom.functional_kwargs()
    rng = np.random.default_rng(seed)
    x, w, b = make(rng, xs, np.float64), make(rng, ws, np.float64), make(rng, (ws[0],), np.float64)
    proj = rng.standard_normal(algo.conv2d(x, w, b, **kw).shape)
    gx, gw, gb = algo.conv2d_backward(x, w, proj, **kw)
    assert directional_error(lambda a: np.sum(proj * algo.conv2d(a, w, b, **kw)), x, gx, rng) < 1e-6
    assert directional_error(lambda a: np.sum(proj * algo.conv2d(x, a, b, **kw)), w, gw, rng) < 1e-6
    assert directional_error(lambda a: np.sum(proj * algo.conv2d(x, w, a, **kw)), b, gb, rng) < 1e-6


def test_zero_size_batch(algo, rng):
    x = np.zeros((0, 3, 8, 8), np.float32)
    w = make(rng, (4, 3, 3, 3), np.float32)
    y = algo.conv2d(x, w, padding=1)
    assert y.shape == (0, 4, 8, 8)
    gx, gw, gb = algo.conv2d_backward(x, w, np.zeros_like(y), padding=1)
    assert gx.shape == x.shape and not gw.any() and not gb.any()


def test_byteswapped_input(algo, rng):
    x, w = make(rng, (2, 3, 6, 6), np.float64), make(rng, (2, 3, 3, 3), np.float64)
    y = algo.conv2d(x.astype(">f8"), w.astype(">f8"))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, R.conv2d(x, w), rtol=1e-12)


def test_skipping_grad_x_gives_same_weight_grads(algo, rng):
    x, w = make(rng, (3, 2, 7, 7), np.float64), make(rng, (4, 2, 3, 3), np.float64)
    gy = make(rng, (3, 4, 5, 5), np.float64)
    full = algo.conv2d_backward(x, w, gy)
    gx, gw, gb = algo.conv2d_backward(x, w, gy, need_grad_x=False)
    assert gx is None
    np.testing.assert_array_equal(gw, full[1])
    np.testing.assert_array_equal(gb, full[2])


def test_scratch_limit_raises_memory_error(algo, rng):
    x, w = make(rng, (1, 3, 40, 40), np.float32), make(rng, (2, 3, 3, 3), np.float32)
    F.set_scratch_limit(1024)
    try:
        with pytest.raises(MemoryError, match="MiB"):
            algo.conv2d(x, w)
    finally:
        F.set_scratch_limit(1 << 30)
    assert algo.conv2d(x, w).shape == (1, 2, 38, 38)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_thread_count(algo, rng, monkeypatch, dtype):
    """1 and 2 threads sum the same partitions in the same order: bit-identical results."""
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    for size in (9, 10, 12):  # odd: im2col; in the Winograd modes 10: F(2x2), 12: F(4x4)
        x, w = make(rng, (19, 6, size, size), dtype), make(rng, (8, 3, 3, 3), dtype)
        gy = make(rng, (19, 8, size, size), dtype)
        runs = []
        for threads in (1, 2, 1):
            cnnframe.set_num_threads(threads)
            runs.append((algo.conv2d(x, w, padding=1, groups=2),
                         *algo.conv2d_backward(x, w, gy, padding=1, groups=2)))
        cnnframe.set_num_threads(2)
        for first, other in zip(runs[0], runs[1]):
            np.testing.assert_array_equal(first, other)
        for first, again in zip(runs[0], runs[2]):
            np.testing.assert_array_equal(first, again)
