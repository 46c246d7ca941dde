"""conv2d / conv2d_backward against the numpy reference and finite differences."""
import contextlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

import cnnframe
import cnnframe.functional as F
import cnnframe.functional.conv as conv_module
import cnnframe.reference as R
from cnnframe._config import active_isa
from cnnframe.testing.strategies import conv_geometries

@pytest.fixture(autouse=True, params=["serial", "parallel"])
def threading_mode(request, monkeypatch):
    """Run every case both on one thread and split over two (tiny calls run serially by default)."""
    if request.param == "parallel":
        monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    return request.param


# The algorithms below; "winograd" and "direct" on every instruction set this CPU runs
# (the others call no code that depends on it, or the same as "winograd").
ALGORITHMS = ["im2col", *(f"winograd-{isa}" for isa in cnnframe.available_isas()),
              "winograd2x2", *(f"direct-{isa}" for isa in cnnframe.available_isas())]


@pytest.fixture(autouse=True, params=ALGORITHMS)
def algorithm(request, monkeypatch):
    """Run every case with im2col only; with Winograd taking every 3x3 stride-1 undilated
    conv whatever its channel count: F(4x4, 3x3) for output sizes that are multiples of 4
    and F(2x2, 3x3) for other even ones ("winograd"), or F(2x2, 3x3) for every even output
    size ("winograd2x2"); and with the default choice, where the direct kernel takes the
    float32 stride-1 convs it is faster for ("direct").  A suffix "-isa" forces that
    instruction set (cnnframe.use_isa)."""
    name, _, isa = request.param.partition("-")
    with cnnframe.use_isa(isa) if isa else contextlib.nullcontext():
        yield _configure(name, monkeypatch)


def _configure(name, monkeypatch):
    monkeypatch.setattr(conv_module, "DIRECT", name == "direct")
    if name == "direct":
        return name
    if name.startswith("winograd"):
        f43 = 0 if name == "winograd" else 10**9
        monkeypatch.setattr(conv_module, "WINOGRAD_MIN_CHANNELS", 1)
        monkeypatch.setattr(conv_module, "WINOGRAD_MIN_PIXELS", 0)
        monkeypatch.setattr(conv_module, "WINOGRAD43_MIN_PIXELS", f43)
        monkeypatch.setattr(conv_module, "GRAD_WEIGHT_WINOGRAD_MIN_PIXELS", 0)
        monkeypatch.setattr(conv_module, "GRAD_WEIGHT_WINOGRAD43_MIN_PIXELS", f43)
        monkeypatch.setattr(conv_module, "GRAD_WEIGHT_IM2COL_MIN_PAIRS", 10**9)
    else:
        monkeypatch.setattr(conv_module, "WINOGRAD_MIN_CHANNELS", 10**9)
    return name


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
def test_conv_matches_reference(rng, xs, ws, kw, dtype, layout):
    x, w = make(rng, xs, dtype, layout), make(rng, ws, dtype, layout)
    b = make(rng, (ws[0],), dtype)
    y = F.conv2d(x, w, b, **kw)
    assert y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, R.conv2d(x, w, b, **kw), **TOL[dtype])
    gy = make(rng, y.shape, dtype, layout)
    for got, want in zip(F.conv2d_backward(x, w, gy, **kw), R.conv2d_backward(x, w, gy, **kw)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("block_bytes", [64, 4096, 1 << 19])
@pytest.mark.parametrize("threads", [1, 2])
def test_blockings_agree(rng, monkeypatch, block_bytes, threads):
    """Row tiles of one image, several images per block and whole images give one answer."""
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", block_bytes)
    cnnframe.set_num_threads(threads)
    try:
        for xs, ws, kw in [((5, 3, 20, 18), (4, 3, 3, 3), dict(padding=1)),
                           ((7, 4, 5, 6), (6, 2, 2, 3), dict(groups=2, stride=(1, 2)))]:
            x, w = make(rng, xs, np.float64), make(rng, ws, np.float64)
            b = make(rng, (ws[0],), np.float64)
            y = F.conv2d(x, w, b, **kw)
            np.testing.assert_allclose(y, R.conv2d(x, w, b, **kw), rtol=1e-10, atol=1e-10)
            gy = make(rng, y.shape, np.float64)
            for got, want in zip(F.conv2d_backward(x, w, gy, **kw),
                                 R.conv2d_backward(x, w, gy, **kw)):
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    finally:
        cnnframe.set_num_threads(2)


@given(geom=conv_geometries(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**31 - 1))
def test_conv_random_geometry_matches_reference(geom, dtype, seed):
    xs, ws, kw = geom.input_shape, geom.weight_shape, geom.functional_kwargs()
    rng = np.random.default_rng(seed)
    x, w, b = make(rng, xs, dtype), make(rng, ws, dtype), make(rng, (ws[0],), dtype)
    y = F.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, R.conv2d(x, w, b, **kw), **TOL[dtype])
    gy = make(rng, y.shape, dtype)
    for got, want in zip(F.conv2d_backward(x, w, gy, **kw), R.conv2d_backward(x, w, gy, **kw)):
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
def test_conv_gradients_match_finite_differences(geom, seed):
    """Project the output on a random R: L = sum(R * conv(x, w, b)); check dL/dx, dL/dw, dL/db."""
    xs, ws, kw = geom.input_shape, geom.weight_shape, geom.functional_kwargs()
    rng = np.random.default_rng(seed)
    x, w, b = make(rng, xs, np.float64), make(rng, ws, np.float64), make(rng, (ws[0],), np.float64)
    proj = rng.standard_normal(F.conv2d(x, w, b, **kw).shape)
    gx, gw, gb = F.conv2d_backward(x, w, proj, **kw)
    assert directional_error(lambda a: np.sum(proj * F.conv2d(a, w, b, **kw)), x, gx, rng) < 1e-6
    assert directional_error(lambda a: np.sum(proj * F.conv2d(x, a, b, **kw)), w, gw, rng) < 1e-6
    assert directional_error(lambda a: np.sum(proj * F.conv2d(x, w, a, **kw)), b, gb, rng) < 1e-6


def test_zero_size_batch(rng):
    x = np.zeros((0, 3, 8, 8), np.float32)
    w = make(rng, (4, 3, 3, 3), np.float32)
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (0, 4, 8, 8)
    gx, gw, gb = F.conv2d_backward(x, w, np.zeros_like(y), padding=1)
    assert gx.shape == x.shape and not gw.any() and not gb.any()


def test_byteswapped_input(rng):
    x, w = make(rng, (2, 3, 6, 6), np.float64), make(rng, (2, 3, 3, 3), np.float64)
    y = F.conv2d(x.astype(">f8"), w.astype(">f8"))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, R.conv2d(x, w), rtol=1e-12)


def test_skipping_grad_x_gives_same_weight_grads(rng):
    x, w = make(rng, (3, 2, 7, 7), np.float64), make(rng, (4, 2, 3, 3), np.float64)
    gy = make(rng, (3, 4, 5, 5), np.float64)
    full = F.conv2d_backward(x, w, gy)
    gx, gw, gb = F.conv2d_backward(x, w, gy, need_grad_x=False)
    assert gx is None
    np.testing.assert_array_equal(gw, full[1])
    np.testing.assert_array_equal(gb, full[2])


def test_scratch_limit_raises_memory_error(rng):
    x, w = make(rng, (1, 3, 40, 40), np.float32), make(rng, (2, 3, 3, 3), np.float32)
    F.set_scratch_limit(1024)
    try:
        with pytest.raises(MemoryError, match="MiB"):
            F.conv2d(x, w)
    finally:
        F.set_scratch_limit(1 << 30)
    assert F.conv2d(x, w).shape == (1, 2, 38, 38)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_thread_count(rng, monkeypatch, dtype):
    """1 and 2 threads sum the same partitions in the same order: bit-identical results."""
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    for size in (9, 10, 12):  # odd: im2col; in the Winograd modes 10: F(2x2), 12: F(4x4)
        x, w = make(rng, (19, 6, size, size), dtype), make(rng, (8, 3, 3, 3), dtype)
        gy = make(rng, (19, 8, size, size), dtype)
        runs = []
        for threads in (1, 2, 1):
            cnnframe.set_num_threads(threads)
            runs.append((F.conv2d(x, w, padding=1, groups=2),
                         *F.conv2d_backward(x, w, gy, padding=1, groups=2)))
        cnnframe.set_num_threads(2)
        for first, other in zip(runs[0], runs[1]):
            np.testing.assert_array_equal(first, other)
        for first, again in zip(runs[0], runs[2]):
            np.testing.assert_array_equal(first, again)


def test_winograd_is_used_where_it_applies(monkeypatch):
    """The dispatch rule itself: 3x3, stride 1, no dilation, wide enough; F(4x4, 3x3) for output
    sizes that are multiples of 4 (>= 64 pixels), F(2x2, 3x3) for other even ones (>= 256)."""
    calls = []
    real = conv_module._winograd_conv3x3
    monkeypatch.setattr(conv_module, "_winograd_conv3x3",
                        lambda *a, **k: calls.append(k["tile"]) or real(*a, **k))
    monkeypatch.setattr(conv_module, "DIRECT", False)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_CHANNELS", 16)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_PIXELS", 256)
    monkeypatch.setattr(conv_module, "WINOGRAD43_MIN_PIXELS", 64)
    for x_hw, w_shape, kw, used in [((16, 16), (16, 16, 3, 3), dict(padding=1), 4),
                                    ((16, 18), (16, 16, 3, 3), dict(padding=(1, 0)), 4),  # 16x16
                                    ((16, 20), (16, 16, 3, 3), dict(padding=1), 4),
                                    ((16, 18), (16, 16, 3, 3), dict(padding=1), 2),  # 18 columns
                                    ((17, 16), (16, 16, 3, 3), dict(padding=1), 0),  # 17 rows
                                    ((8, 8), (16, 16, 3, 3), dict(padding=1), 4),    # 64 pixels
                                    ((4, 8), (16, 16, 3, 3), dict(padding=1), 0),    # 32 pixels
                                    ((10, 10), (16, 16, 3, 3), dict(padding=1), 0),  # 100, even
                                    ((16, 16), (16, 16, 3, 3), dict(padding=1, stride=2), 0),
                                    ((16, 16), (16, 16, 3, 3), dict(padding=2, dilation=2), 0),
                                    ((16, 16), (16, 16, 5, 5), dict(padding=2), 0),
                                    ((16, 16), (8, 16, 3, 3), dict(padding=1), 0)]:  # narrow
        calls.clear()
        F.conv2d(np.zeros((1, 16, *x_hw), np.float32), np.zeros(w_shape, np.float32), **kw)
        assert calls == ([used] if used else []), (x_hw, w_shape, kw)


@pytest.mark.parametrize("need_grad_x", [True, False])
def test_winograd_weight_gradient_is_used_where_it_applies(monkeypatch, need_grad_x):
    """The weight gradient's own rule: Winograd for 3x3 stride-1 convs with 16+ channels and
    even outputs of 16+ pixels, F(4x4, 3x3) from 1024 pixels (multiples of 4), F(2x2, 3x3)
    below; not for C*F >= 32768 on maps of up to 256 pixels, and not when grad_x goes
    through im2col (which then computes both)."""
    calls = []
    real = conv_module._winograd_grad_weight3x3
    monkeypatch.setattr(conv_module, "_winograd_grad_weight3x3",
                        lambda *a, **k: calls.append(k["tile"]) or real(*a, **k))
    monkeypatch.setattr(conv_module, "DIRECT", False)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_CHANNELS", 16)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_PIXELS", 256)
    monkeypatch.setattr(conv_module, "WINOGRAD43_MIN_PIXELS", 64)
    monkeypatch.setattr(conv_module, "GRAD_WEIGHT_WINOGRAD_MIN_PIXELS", 16)
    monkeypatch.setattr(conv_module, "GRAD_WEIGHT_WINOGRAD43_MIN_PIXELS", 1024)
    monkeypatch.setattr(conv_module, "GRAD_WEIGHT_IM2COL_MIN_PAIRS", 32768)
    rng = np.random.default_rng(5)
    for x_hw, w_shape, kw, tile in [((16, 16), (16, 16, 3, 3), dict(padding=1), 2),
                                    ((16, 18), (16, 16, 3, 3), dict(padding=(1, 0)), 2),
                                    ((32, 32), (16, 16, 3, 3), dict(padding=1), 4),
                                    ((32, 30), (16, 16, 3, 3), dict(padding=1), 2),  # 30 columns
                                    ((17, 16), (16, 16, 3, 3), dict(padding=1), 0),
                                    ((8, 8), (16, 16, 3, 3), dict(padding=1), 2),
                                    # grad_x of a 4x8 map goes through im2col, which then
                                    # computes grad_weight too
                                    ((4, 8), (16, 16, 3, 3), dict(padding=1),
                                     0 if need_grad_x else 2),
                                    ((2, 2), (16, 16, 3, 3), dict(padding=1), 0),    # 4 pixels
                                    ((16, 16), (16, 16, 5, 5), dict(padding=2), 0),
                                    ((4, 4), (256, 128, 3, 3), dict(padding=1), 0),  # wide
                                    ((4, 4), (128, 128, 3, 3), dict(padding=1),
                                     0 if need_grad_x else 2)]:
        calls.clear()
        c = w_shape[1]
        x = rng.standard_normal((2, c, *x_hw))
        w = rng.standard_normal(w_shape)
        y = F.conv2d(x, w, **kw)
        gy = rng.standard_normal(y.shape)
        got = F.conv2d_backward(x, w, gy, need_grad_x=need_grad_x, **kw)
        want = R.conv2d_backward(x, w, gy, **kw)
        assert calls == ([tile] if tile else []), (x_hw, w_shape, kw)
        for name, a, b in zip(("grad_x", "grad_weight", "grad_bias"), got, want):
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max(),
                                           err_msg=name)




def test_direct_kernel_takes_what_it_is_faster_for(monkeypatch):
    """Default dispatch: float32 stride-1 5x5 convs and 3x3 convs on small maps or with few
    channels go direct, both forward and for grad_x; wide 3x3 ones on 32x32 maps stay
    Winograd, on AVX2 from 16x16 maps and 32 channels up too; float64 and strided convs
    never go direct, nor does anything on the generic path (the active instruction set:
    `algorithm` forces each in turn)."""
    isa = active_isa()
    monkeypatch.setattr(conv_module, "DIRECT", True)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_CHANNELS", 16)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_PIXELS", 256)
    monkeypatch.setattr(conv_module, "WINOGRAD43_MIN_PIXELS", 64)
    forward, grad_x = [], []
    real_f, real_x = conv_module.direct_conv2d, conv_module.direct_conv2d_grad_x
    monkeypatch.setattr(conv_module, "direct_conv2d",
                        lambda *a, **k: forward.append(a[1].shape) or real_f(*a, **k))
    monkeypatch.setattr(conv_module, "direct_conv2d_grad_x",
                        lambda *a, **k: grad_x.append(a[1].shape) or real_x(*a, **k))
    rng = np.random.default_rng(9)
    for x_shape, w_shape, kw, dtype, used in [  # used: the instruction sets that go direct
            ((2, 32, 32, 32), (32, 32, 5, 5), dict(padding=2), np.float32, "avx512 avx2"),
            ((2, 3, 32, 32), (32, 3, 3, 3), dict(padding=1), np.float32, "avx512 avx2"),
            ((2, 32, 16, 16), (64, 32, 3, 3), dict(padding=1), np.float32, "avx512 avx2"),
            ((2, 32, 32, 32), (32, 32, 3, 3), dict(padding=1), np.float32, "avx512"),
            ((2, 64, 16, 16), (128, 64, 3, 3), dict(padding=1), np.float32, "avx512"),
            ((2, 64, 32, 32), (64, 64, 3, 3), dict(padding=1), np.float32, ""),  # Winograd
            ((2, 32, 32, 32), (32, 32, 5, 5), dict(padding=2), np.float64, ""),
            ((2, 32, 32, 32), (32, 32, 5, 5), dict(padding=2, stride=2), np.float32, "")]:
        forward.clear()
        grad_x.clear()
        x, w = make(rng, x_shape, dtype), make(rng, w_shape, dtype)
        y = F.conv2d(x, w, **kw)
        gy = make(rng, y.shape, dtype)
        got = F.conv2d_backward(x, w, gy, **kw)
        used = isa in used.split()
        assert bool(forward) == used and bool(grad_x) == used, (x_shape, w_shape, kw, dtype, isa)
        for a, b in zip((y, *got), (R.conv2d(x, w, **kw), *R.conv2d_backward(x, w, gy, **kw))):
            np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"],
                                       atol=TOL[dtype]["atol"] * np.abs(b).max())


def test_direct_weight_gradient_takes_what_it_is_faster_for(monkeypatch):
    """Default dispatch: the direct weight gradient for float32 stride-1 convs with few input
    channels or 25+ taps, with or without grad_x; Winograd for 3x3 where it applies and
    im2col for very wide 3x3 on small maps; never for float64, strides or groups, nor on the
    generic path (the active instruction set: `algorithm` forces each in turn)."""
    monkeypatch.setattr(conv_module, "DIRECT", True)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_CHANNELS", 16)
    calls = []
    real = conv_module.direct_conv2d_grad_weight
    monkeypatch.setattr(conv_module, "direct_conv2d_grad_weight",
                        lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    rng = np.random.default_rng(10)
    for x_shape, w_shape, kw, dtype, used in [
            ((2, 32, 16, 16), (32, 32, 5, 5), dict(padding=2), np.float32, True),
            ((2, 3, 32, 32), (32, 3, 3, 3), dict(padding=1), np.float32, True),
            ((2, 8, 20, 20), (16, 8, 7, 7), dict(padding=3), np.float32, True),
            ((2, 64, 8, 8), (128, 64, 3, 3), dict(padding=1), np.float32, False),  # Winograd
            ((2, 128, 8, 8), (256, 128, 3, 3), dict(padding=1), np.float32, False),  # im2col
            ((2, 32, 32, 32), (32, 32, 3, 3), dict(padding=1), np.float32, False),  # Winograd
            ((2, 32, 16, 16), (32, 32, 5, 5), dict(padding=2), np.float64, False),
            ((2, 3, 32, 32), (32, 3, 3, 3), dict(padding=1, stride=2), np.float32, False),
            ((2, 4, 16, 16), (8, 2, 5, 5), dict(padding=2, groups=2), np.float32, False)]:
        x, w = make(rng, x_shape, dtype), make(rng, w_shape, dtype)
        gy = make(rng, F.conv2d(x, w, **kw).shape, dtype)
        want = R.conv2d_backward(x, w, gy, **kw)
        used = used and active_isa() != "generic"
        for need_grad_x in (True, False):
            calls.clear()
            got = F.conv2d_backward(x, w, gy, need_grad_x=need_grad_x, **kw)
            assert bool(calls) == used, (x_shape, w_shape, kw, dtype, need_grad_x)
            assert (got[0] is None) != need_grad_x
            for a, b in zip(got, want):
                if a is not None:
                    np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"],
                                               atol=TOL[dtype]["atol"] * np.abs(b).max())
