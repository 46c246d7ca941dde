"""GELU, SiLU, Hardswish, ELU and PReLU against the numpy reference and their formulas."""
import math

import numpy as np
import pytest

import cnnframe.reference as R
from cnnframe.functional import activations as FA


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def threading_mode(request, monkeypatch):
    if request.param == "parallel":
        monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    return request.param


# atol: 1 + tanh(u), 1 - tanh(u)**2 and 1 + erf(u) cancel for large |u| (in PyTorch too;
# float32 computes in float, as PyTorch does)
TOL = {np.float32: dict(rtol=1e-6, atol=5e-6), np.float64: dict(rtol=1e-13, atol=1e-13)}

# name -> (forward, backward, reference forward, reference backward, extra args)
OPS = {
    "gelu": (FA.gelu, FA.gelu_backward, R.gelu, R.gelu_backward, ()),
    "gelu_tanh": (FA.gelu, FA.gelu_backward, R.gelu, R.gelu_backward, ("tanh",)),
    "silu": (FA.silu, FA.silu_backward, R.silu, R.silu_backward, ()),
    "hardswish": (FA.hardswish, FA.hardswish_backward, R.hardswish, R.hardswish_backward, ()),
    "elu": (FA.elu, FA.elu_backward, R.elu, R.elu_backward, (0.7,)),
}


def inputs(rng, shape, dtype, kind):
    """Values over the interesting ranges (kinks at +-3 and 0, saturation) in a layout."""
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    if kind == "strided":
        return np.repeat(x, 2, axis=-1)[..., ::2]
    return np.asfortranarray(x) if kind == "fortran" else x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5), (40000,), (0, 3)])
@pytest.mark.parametrize("op", sorted(OPS))
def test_forward_and_backward_match_reference(isa, rng, op, shape, dtype, kind):
    fwd, bwd, ref_fwd, ref_bwd, extra = OPS[op]
    x = inputs(rng, shape, dtype, kind)
    g = rng.standard_normal(shape).astype(dtype)
    y = fwd(x, *extra)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_allclose(y, ref_fwd(x, *extra), **TOL[dtype])
    gx = bwd(g, x, *extra)
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, ref_bwd(g, x, *extra), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", sorted(OPS))
def test_special_values_follow_pytorch(isa, op, dtype):
    # PyTorch 2.13's CPU results for inf, -inf and NaN, from its vectorised kernels (every
    # tensor of 8 or more values; its scalar ones give hardswish' and elu' of NaN = 1)
    inf, nan = np.inf, np.nan
    expected = {"gelu": ([inf, nan, nan], [nan, nan, nan]),
                "gelu_tanh": ([inf, nan, nan], [nan, nan, nan]),
                "silu": ([inf, nan, nan], [nan, nan, nan]),
                "hardswish": ([inf, nan, nan], [1, 0, nan]),
                "elu": ([inf, -0.7, nan], [1, 0, nan])}
    fwd, bwd, _, _, extra = OPS[op]
    x = np.array([inf, -inf, nan], dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(fwd(x, *extra), np.array(expected[op][0], dtype))
        np.testing.assert_array_equal(bwd(np.ones_like(x), x, *extra),
                                      np.array(expected[op][1], dtype))


@pytest.mark.parametrize("op", sorted(OPS))
def test_results_do_not_depend_on_thread_count(isa, op, monkeypatch):
    import cnnframe
    fwd, bwd, _, _, extra = OPS[op]
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(100_003) * 4).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr("cnnframe._threads._num_threads", threads)
        results.append((fwd(x, *extra), bwd(g, x, *extra)))
    for y, gx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(gx, results[0][1])
    assert cnnframe.get_num_threads() == 3


def test_formulas_at_known_points():
    x = np.array([-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(FA.gelu(x), x * 0.5 * (1 + np.array([math.erf(v / math.sqrt(2))
                                                                    for v in x])), rtol=1e-15)
    np.testing.assert_allclose(FA.silu(x), x / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(FA.hardswish(x), [0, 0, -1 / 3, 0, 2 / 3, 3, 4], rtol=1e-15)
    np.testing.assert_allclose(FA.elu(x, 2.0), np.where(x > 0, x, 2 * np.expm1(x)), rtol=1e-15)
    # PyTorch's one-sided choices at the kinks: hardswish' = 0 below -3, x/3 + 1/2 on
    # [-3, 3]; elu' = alpha at 0
    np.testing.assert_allclose(FA.hardswish_backward(np.ones(7), x),
                               [0, -0.5, 1 / 6, 0.5, 5 / 6, 1.5, 1], rtol=1e-15)
    assert FA.elu_backward(np.ones(1), np.zeros(1), 2.0)[0] == 2.0


def test_extreme_inputs_stay_finite():
    x = np.array([-1e4, -100.0, 100.0, 1e4], np.float32)
    for op, (fwd, bwd, _, _, extra) in OPS.items():
        y, gx = fwd(x, *extra), bwd(np.ones_like(x), x, *extra)
        assert np.isfinite(y).all() and np.isfinite(gx).all(), op
    np.testing.assert_array_equal(FA.silu(x)[[0, 3]], [0, 1e4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,channels", [((3, 4, 5, 5), 4), ((3, 4, 5, 5), 1), ((6, 2), 2),
                                            ((5,), 1), ((2, 3, 7), 3), ((16, 4, 30, 30), 4),
                                            ((0, 2), 2)])
def test_prelu_matches_reference(rng, shape, channels, dtype):
    x = inputs(rng, shape, dtype, "contiguous")
    w = rng.uniform(-0.5, 0.5, channels).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_allclose(FA.prelu(x, w), R.prelu(x, w), **TOL[dtype])
    gx, gw = FA.prelu_backward(g, x, w)
    gx_ref, gw_ref = R.prelu_backward(g, x, w)
    np.testing.assert_allclose(gx, gx_ref, **TOL[dtype])
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert gw.shape == w.shape and gw.dtype == dtype
    assert FA.prelu_backward(g, x, w, need_grad_x=False)[0] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (2, 70, 30, 30), (0, 3, 2, 2)])
def test_scale_planes_multiplies_each_plane_by_its_factor(rng, shape, dtype):
    x = inputs(rng, shape, dtype, "contiguous")
    scale = (rng.uniform(0, 2, shape[:2]) * (rng.random(shape[:2]) > 0.3)).astype(dtype)
    y = FA.scale_planes(x, scale)
    np.testing.assert_array_equal(y, x * scale.reshape(scale.shape + (1,) * (x.ndim - 2)))
    assert y.dtype == dtype


def test_out_is_written():
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    out = np.empty_like(x)
    assert FA.silu(x, out=out) is out
    gout = np.empty_like(x)
    assert FA.gelu_backward(np.ones_like(x), x, out=gout) is gout


@pytest.mark.parametrize("call,exc,match", [
    (lambda x: FA.gelu(x, "exact"), ValueError, "approximate must be 'none' or 'tanh'"),
    (lambda x: FA.silu(x.tolist()), TypeError, "x must be a numpy ndarray"),
    (lambda x: FA.elu(x.astype(np.int64)), TypeError, "x must be float32 or float64"),
    (lambda x: FA.elu(x, float("nan")), ValueError, "alpha must be a finite number"),
    (lambda x: FA.silu_backward(x[:, :2], x), ValueError, "grad_y must have x's shape"),
    (lambda x: FA.gelu_backward(x.astype(np.float32), x), TypeError, "grad_y has dtype float32"),
    (lambda x: FA.prelu(x, np.ones(3)), ValueError, "weight has 3 values, one per channel"),
    (lambda x: FA.prelu(x, np.ones((1, 1))), ValueError, r"weight must have shape \(1,\) or"),
    (lambda x: FA.silu(x, out=np.empty((2, 2))), ValueError, "out .* must have shape"),
    (lambda x: FA.scale_planes(x, np.ones(2)), ValueError, r"scale must have shape \(2, 4\)"),
    (lambda x: FA.scale_planes(x[0], np.ones(2)), ValueError, r"x must have shape \(N, C, ...\)"),
])
def test_bad_arguments_are_refused_naming_them(call, exc, match):
    x = np.linspace(-1, 1, 8).reshape(2, 4)
    with pytest.raises(exc, match=match):
        call(x)
