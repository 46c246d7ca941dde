"""Batch norm and ReLU kernels against the numpy reference, finite differences and 1 vs 2 threads."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import cnnframe
import cnnframe.functional as F
import cnnframe.reference as R
from cnnframe.gradcheck import numeric_gradient
from cnnframe.registry import get_layer


# Every case on every instruction set this CPU runs (tests/conftest.py: isa).
pytestmark = pytest.mark.usefixtures("isa")


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def threading_mode(request, monkeypatch):
    """Run every case both on one thread and split over two (tiny calls run serially by default)."""
    if request.param == "parallel":
        monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    return request.param


TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

# Row lengths L = prod(shape[2:]) cover the scalar tail (< 8), 8-blocks and 32-blocks.
SHAPES = [(5, 3), (4, 3, 7), (3, 2, 37), (2, 4, 70), (3, 4, 5, 6), (2, 2, 1, 1), (1, 3, 2, 2),
          (4, 3, 11, 13)]


def layout(a, kind):
    if kind == "strided":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    return np.asfortranarray(a) if kind == "fortran" else a


def channel_data(rng, shape, dtype, offset=3.0):
    """Values with per-channel offsets (a one-pass variance would lose digits on them)."""
    col = (-1,) + (1,) * (len(shape) - 2)
    x = rng.standard_normal(shape) * 2 + rng.uniform(-offset, offset, shape[1]).reshape(col)
    return x.astype(dtype)


def params(rng, c, dtype):
    return rng.uniform(0.5, 2.0, c).astype(dtype), rng.uniform(-1, 1, c).astype(dtype)


def assert_close(actual, expected, dtype, what):
    tol = TOL[dtype]
    scale = max(1.0, float(np.abs(expected).max())) if np.size(expected) else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale,
                               err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_train_and_backward_match_reference(rng, shape, dtype, kind):
    c = shape[1]
    x = layout(channel_data(rng, shape, dtype), kind)
    w, b = params(rng, c, dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y, mean, invstd = F.batch_norm_train(x, w, b, 1e-3, running_mean=rm, running_var=rv,
                                         momentum=0.3)
    y_ref, mean_ref, invstd_ref = R.batch_norm_train(x, w, b, 1e-3, running_mean=rm_ref,
                                                     running_var=rv_ref, momentum=0.3)
    assert y.shape == x.shape and y.dtype == dtype and y.flags.c_contiguous
    assert mean.dtype == invstd.dtype == np.float64 and mean.shape == invstd.shape == (c,)
    assert_close(y, y_ref, dtype, "y")
    # the statistics are accumulated in double whatever the dtype
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(invstd, invstd_ref, rtol=1e-12)
    assert_close(rm, rm_ref, dtype, "running_mean")
    assert_close(rv, rv_ref, dtype, "running_var")

    g = layout(rng.standard_normal(shape).astype(dtype), kind)
    gx, gw, gb = F.batch_norm_backward(g, x, w, mean, invstd)
    gx_ref, gw_ref, gb_ref = R.batch_norm_backward(g, x, w, mean_ref, invstd_ref)
    assert gx.dtype == gw.dtype == gb.dtype == dtype and gw.shape == gb.shape == (c,)
    assert_close(gx, gx_ref, dtype, "grad_x")
    assert_close(gw, gw_ref, dtype, "grad_weight")
    assert_close(gb, gb_ref, dtype, "grad_bias")
    none, gw2, gb2 = F.batch_norm_backward(g, x, w, mean, invstd, need_grad_x=False)
    assert none is None
    np.testing.assert_array_equal(gw2, gw)
    np.testing.assert_array_equal(gb2, gb)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("shape", SHAPES + [(0, 3, 4, 4)])
def test_batch_norm_eval_and_backward_match_reference(rng, shape, dtype, kind):
    c = shape[1]
    x = layout(channel_data(rng, shape, dtype), kind)
    w, b = params(rng, c, dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    y = F.batch_norm_eval(x, w, b, rm, rv, 1e-5)
    assert y.shape == x.shape and y.dtype == dtype
    assert_close(y, R.batch_norm_eval(x, w, b, rm, rv, 1e-5), dtype, "y")
    mean, invstd = rm.astype(np.float64), 1 / np.sqrt(rv.astype(np.float64) + 1e-5)
    g = layout(rng.standard_normal(shape).astype(dtype), kind)
    got = F.batch_norm_backward(g, x, w, mean, invstd, training=False)
    expected = R.batch_norm_backward(g, x, w, mean, invstd, training=False)
    for a, e, what in zip(got, expected, ("grad_x", "grad_weight", "grad_bias")):
        assert a.dtype == dtype
        assert_close(a, e, dtype, what)


def test_weight_and_bias_default_to_one_and_zero(rng):
    x = channel_data(rng, (4, 3, 5), np.float64)
    ones, zeros = np.ones(3), np.zeros(3)
    y, mean, invstd = F.batch_norm_train(x)
    np.testing.assert_array_equal(y, F.batch_norm_train(x, ones, zeros)[0])
    np.testing.assert_array_equal(F.batch_norm_eval(x, None, None, mean, 1 / invstd**2),
                                  F.batch_norm_eval(x, ones, zeros, mean, 1 / invstd**2))
    g = rng.standard_normal(x.shape)
    for a, e in zip(F.batch_norm_backward(g, x, None, mean, invstd),
                    F.batch_norm_backward(g, x, ones, mean, invstd)):
        np.testing.assert_array_equal(a, e)


@given(n=st.integers(1, 5), c=st.integers(1, 4), length=st.integers(1, 80),
       seed=st.integers(0, 2**16))
def test_batch_norm_any_geometry_matches_reference(n, c, length, seed):
    rng = np.random.default_rng(seed)
    shape = (max(n, 2 if length == 1 else 1), c, length)
    x = channel_data(rng, shape, np.float64, offset=50)
    w, b = params(rng, c, np.float64)
    y, mean, invstd = F.batch_norm_train(x, w, b)
    y_ref, mean_ref, invstd_ref = R.batch_norm_train(x, w, b)
    assert_close(y, y_ref, np.float64, "y")
    g = rng.standard_normal(shape)
    for a, e in zip(F.batch_norm_backward(g, x, w, mean, invstd),
                    R.batch_norm_backward(g, x, w, mean_ref, invstd_ref)):
        assert_close(a, e, np.float64, "gradients")


def test_float32_statistics_are_accumulated_in_double(rng):
    # 128 * 32 * 32 values per channel far from zero: a float32 running sum would be off
    # by about 1e-3 of the mean, a one-pass variance by far more than the variance.
    x = (rng.standard_normal((128, 2, 32, 32)) + np.array([1e4, -3e3])[:, None, None]
         ).astype(np.float32)
    _, mean, invstd = F.batch_norm_train(x, eps=1e-12)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(1 / invstd**2, x64.var(axis=(0, 2, 3)), rtol=1e-9)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 2), (2, 3, 5), (2, 2, 3, 3)])
def test_batch_norm_gradients_match_finite_differences(rng, shape, training):
    c = shape[1]
    x = channel_data(rng, shape, np.float64)
    w, b = params(rng, c, np.float64)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    weights = rng.standard_normal(shape)  # loss = sum(y * weights), so grad_y = weights

    def loss():
        if training:
            y = F.batch_norm_train(x, w, b, 1e-3)[0]
        else:
            y = F.batch_norm_eval(x, w, b, rm, rv, 1e-3)
        return float((y * weights).sum())

    if training:
        _, mean, invstd = F.batch_norm_train(x, w, b, 1e-3)
    else:
        mean, invstd = rm, 1 / np.sqrt(rv + 1e-3)
    gx, gw, gb = F.batch_norm_backward(weights, x, w, mean, invstd, training)
    for analytic, arr, what in ((gx, x, "x"), (gw, w, "weight"), (gb, b, "bias")):
        np.testing.assert_allclose(analytic, numeric_gradient(loss, arr), rtol=1e-6, atol=1e-7,
                                   err_msg=what)


def test_results_do_not_depend_on_the_thread_count(rng, monkeypatch):
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)  # 2 threads even for this size
    shape = (7, 5, 301)  # blocks of rows that split channels unevenly between threads
    x = channel_data(rng, shape, np.float64, offset=100)
    w, b = params(rng, 5, np.float64)
    g = rng.standard_normal(shape)
    results = []
    for threads in (1, 2):
        cnnframe.set_num_threads(threads)
        try:
            rm, rv = np.zeros(5), np.ones(5)
            y, mean, invstd = F.batch_norm_train(x, w, b, running_mean=rm, running_var=rv)
            grads = F.batch_norm_backward(g, x, w, mean, invstd)
            eval_grads = F.batch_norm_backward(g, x, w, mean, invstd, training=False)
            y_eval = F.batch_norm_eval(x, w, b, rm, rv)
            r = F.relu(x)
            results.append([y, mean, invstd, rm, rv, *grads, *eval_grads, y_eval, r,
                            F.relu_backward(g, r)])
        finally:
            cnnframe.set_num_threads(2)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_fused_with_relu_is_bit_identical_to_the_two_ops(rng, shape, dtype, kind,
                                                                      training):
    """relu=True / relu_y: the same numbers as batch norm followed by relu and relu_backward
    followed by batch norm's backward, bit for bit (a fused model trains identically)."""
    c = shape[1]
    x = layout(channel_data(rng, shape, dtype, offset=0.5), kind)  # about half the outputs < 0
    w, b = params(rng, c, dtype)
    g = layout(rng.standard_normal(shape).astype(dtype), kind)
    if training:
        y, mean, invstd = F.batch_norm_train(x, w, b)
        z, mean_z, invstd_z = F.batch_norm_train(x, w, b, relu=True)
        np.testing.assert_array_equal(mean_z, mean)
        np.testing.assert_array_equal(invstd_z, invstd)
    else:
        rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
        y = F.batch_norm_eval(x, w, b, rm, rv)
        z = F.batch_norm_eval(x, w, b, rm, rv, relu=True)
        mean, invstd = rm.astype(np.float64), 1 / np.sqrt(rv.astype(np.float64) + 1e-5)
    np.testing.assert_array_equal(z, F.relu(y))
    assert 0 < np.count_nonzero(z) < z.size or z.size < 8
    want = F.batch_norm_backward(F.relu_backward(g, z), x, w, mean, invstd, training)
    got = F.batch_norm_backward(g, x, w, mean, invstd, training, relu_y=z)
    for a, e in zip(got, want):
        np.testing.assert_array_equal(a, e)
    _, gw, gb = F.batch_norm_backward(g, x, w, mean, invstd, training, False, relu_y=z)
    np.testing.assert_array_equal(gw, want[1])
    np.testing.assert_array_equal(gb, want[2])


def test_batch_norm_fused_relu_rejects_bad_arguments():
    x = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(TypeError, match="batch_norm_train: relu must be True or False, got 1"):
        F.batch_norm_train(x, relu=1)
    with pytest.raises(TypeError, match="batch_norm_eval: relu must be True or False"):
        F.batch_norm_eval(x, None, None, np.zeros(3, np.float32), np.ones(3, np.float32),
                          relu="no")
    with pytest.raises(ValueError, match=r"relu_y must have x's shape \(2, 3, 4, 4\), got "
                                         r"\(2, 3, 4\)"):
        F.batch_norm_backward(x, x, None, np.zeros(3), np.ones(3), relu_y=x[..., 0])
    with pytest.raises(TypeError, match="relu_y has dtype float64 but x has dtype float32"):
        F.batch_norm_backward(x, x, None, np.zeros(3), np.ones(3), relu_y=x.astype(np.float64))
    with pytest.raises(TypeError, match="relu_y must be a numpy ndarray, got list"):
        F.batch_norm_backward(x, x, None, np.zeros(3), np.ones(3), relu_y=x.tolist())
    z = np.ones_like(x)
    with pytest.raises(ValueError, match="must not overlap the inputs"):  # only relu_y
        F.batch_norm_backward(x, x.copy(), None, np.zeros(3), np.ones(3), relu_y=z, out=z)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (7,), (2, 40000), ()])
def test_relu_matches_reference(rng, shape, dtype, kind):
    x = np.asarray(rng.standard_normal(shape), dtype)
    x = layout(x, kind) if x.ndim else x
    y = F.relu(x)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_array_equal(y, R.relu(x))
    g = np.asarray(rng.standard_normal(shape), dtype)
    g = layout(g, kind) if g.ndim else g
    gx = F.relu_backward(g, y)
    assert gx.shape == x.shape and gx.dtype == dtype
    np.testing.assert_array_equal(gx, R.relu_backward(g, y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_special_values_as_numpy_maximum(dtype):
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45, 3.0, -3.0], dtype)
    x = np.tile(specials, 5000)  # large enough to run in parallel blocks too
    y = F.relu(x)
    expected = np.maximum(x, 0)
    np.testing.assert_array_equal(y, expected)  # NaN where x is NaN
    np.testing.assert_array_equal(np.signbit(y), np.signbit(expected))  # -0.0 -> +0.0
    g = np.full_like(x, 2.0)
    g[::7] = np.inf
    gx = F.relu_backward(g, y)
    np.testing.assert_array_equal(gx, np.where(y > 0, g, 0))
    assert not np.isnan(gx).any()  # NaN inputs get gradient 0, like x <= 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_receives_the_same_results(rng, dtype):
    x = channel_data(rng, (3, 4, 5, 5), dtype)
    w, b = params(rng, 4, dtype)
    y, mean, invstd = F.batch_norm_train(x, w, b)
    out = np.full_like(x, np.nan)
    assert F.batch_norm_train(x, w, b, out=out)[0] is out
    np.testing.assert_array_equal(out, y)
    rm, rv = mean.astype(dtype), (1 / invstd**2).astype(dtype)
    out = np.full_like(x, np.nan)
    assert F.batch_norm_eval(x, w, b, rm, rv, out=out) is out
    np.testing.assert_array_equal(out, F.batch_norm_eval(x, w, b, rm, rv))
    g = rng.standard_normal(x.shape).astype(dtype)
    out = np.full_like(x, np.nan)
    assert F.batch_norm_backward(g, x, w, mean, invstd, out=out)[0] is out
    np.testing.assert_array_equal(out, F.batch_norm_backward(g, x, w, mean, invstd)[0])
    out = np.full_like(x, np.nan)
    assert F.relu(x, out=out) is out
    np.testing.assert_array_equal(out, F.relu(x))
    r = F.relu(x)
    out = np.full_like(x, np.nan)
    assert F.relu_backward(g, r, out=out) is out
    np.testing.assert_array_equal(out, F.relu_backward(g, r))


# (op, argument that is made a view into out): every array argument of each op
BN_OUT_OVERLAPS = ([("batch_norm_train", a) for a in ("x", "weight", "bias", "running_mean",
                                                       "running_var")]
                   + [("batch_norm_eval", a) for a in ("x", "weight", "bias", "running_mean",
                                                        "running_var")]
                   + [("batch_norm_backward", a) for a in ("grad_y", "x", "weight", "mean",
                                                            "invstd", "relu_y")])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn,name", BN_OUT_OVERLAPS)
def test_batch_norm_out_overlapping_any_input_is_refused(rng, fn, name, dtype):
    """out may share no memory with any input: written first, it would change what the
    kernel (or the running-statistics update after it) reads.  Before this was checked,
    such calls returned errors of up to 0.8."""
    shape, c = (2, 3, 4, 4), 3
    out = np.empty(shape, dtype)
    x = channel_data(rng, shape, dtype)
    ones = np.ones(c, dtype)
    args = {"batch_norm_train": dict(x=x, weight=ones, bias=ones * 0, running_mean=ones * 0,
                                     running_var=ones.copy()),
            "batch_norm_eval": dict(x=x, weight=ones, bias=ones * 0, running_mean=ones * 0,
                                    running_var=ones.copy()),
            "batch_norm_backward": dict(grad_y=x.copy(), x=x, weight=ones, mean=ones * 0,
                                        invstd=ones.copy(), relu_y=F.relu(x))}[fn]
    if args[name].shape == shape:
        out[...] = args[name]
        args[name] = out
    else:  # a per-channel array stored inside out
        out.reshape(-1)[5:5 + c] = args[name]
        args[name] = out.reshape(-1)[5:5 + c]
    what = "grad_x" if fn == "batch_norm_backward" else "output"
    with pytest.raises(ValueError, match=rf"{fn}: out \(for the {what}\) must not overlap the "
                                         rf"inputs \(it overlaps {name}\)"):
        getattr(F, fn)(**args, out=out)


x4 = np.zeros((2, 3, 4, 4), np.float32)
c3 = np.ones(3, np.float32)

TRAIN_ERRORS = [  # (kwargs overriding a valid call, exception, message pattern)
    (dict(x=x4.tolist()), TypeError, "batch_norm_train: x must be a numpy ndarray, got list"),
    (dict(x=x4.astype(np.int64)), TypeError, "x must be float32 or float64, got int64"),
    (dict(x=x4.astype(np.float16)), TypeError, "x must be float32 or float64, got float16"),
    (dict(x=x4[0, 0, 0]), ValueError, r"x must have at least 2 dimensions .* got shape \(4,\)"),
    (dict(x=np.zeros((2, 0, 4), np.float32)), ValueError, r"x has shape \(2, 0, 4\).*channel"),
    (dict(x=np.zeros((1, 3), np.float32)), ValueError,
     r"x has shape \(1, 3\): training needs more than one value per channel"),
    (dict(weight=np.ones(4, np.float32)), ValueError,
     r"weight must have shape \(3,\) \(one value per channel of x\), got \(4,\)"),
    (dict(bias=np.zeros(3, np.float64)), TypeError,
     "bias has dtype float64 but x has dtype float32"),
    (dict(weight=[1.0, 1.0, 1.0]), TypeError, "weight must be a numpy ndarray, got list"),
    (dict(eps=0.0), ValueError, r"eps must be a finite number > 0.0, got 0.0"),
    (dict(eps=float("nan")), ValueError, "eps must be a finite number"),
    (dict(eps="1e-5"), TypeError, "eps must be a number, got '1e-5'"),
    (dict(momentum=1.5), ValueError, r"momentum must be a finite number in \[0.0, 1.0\]"),
    (dict(momentum=True), TypeError, "momentum must be a number, got True"),
    (dict(running_mean=np.zeros(3, np.float32)), ValueError,
     "give both running_mean and running_var, or neither"),
    (dict(running_mean=np.zeros(2, np.float32), running_var=c3), ValueError,
     r"running_mean must have shape \(3,\)"),
    (dict(running_mean=np.zeros(3), running_var=np.ones(3)), TypeError,
     "running_mean has dtype float64 but x has dtype float32"),
    (dict(running_mean=np.zeros(3, np.float32), running_var=np.broadcast_to(c3, (3,))),
     ValueError, "running_var must be writeable"),
    (dict(out=np.empty((2, 3, 4, 5), np.float32)), ValueError,
     r"out \(for the output\) must have shape \(2, 3, 4, 4\)"),
    (dict(out=x4), ValueError, "must not overlap the inputs"),
]


@pytest.mark.parametrize("override,exc,pattern", TRAIN_ERRORS)
def test_batch_norm_train_rejects(override, exc, pattern):
    args = dict(x=x4, weight=c3, bias=c3 * 0) | override
    with pytest.raises(exc, match=pattern):
        F.batch_norm_train(**args)


@pytest.mark.parametrize("override,exc,pattern", [
    (dict(x=x4.astype(np.int32)), TypeError, "batch_norm_eval: x must be float32 or float64"),
    (dict(running_mean=None), TypeError, "running_mean must be a numpy ndarray, got NoneType"),
    (dict(running_var=np.ones((3, 1), np.float32)), ValueError,
     r"running_var must have shape \(3,\) .*got \(3, 1\)"),
    (dict(eps=-1), ValueError, "eps must be a finite number > 0.0"),
])
def test_batch_norm_eval_rejects(override, exc, pattern):
    args = dict(x=x4, weight=c3, bias=c3 * 0, running_mean=c3 * 0, running_var=c3) | override
    with pytest.raises(exc, match=pattern):
        F.batch_norm_eval(**args)


@pytest.mark.parametrize("override,exc,pattern", [
    (dict(grad_y=x4[:, :2]), ValueError,
     r"grad_y must have x's shape \(2, 3, 4, 4\), got \(2, 2, 4, 4\)"),
    (dict(grad_y=x4.astype(np.float64)), TypeError,
     "grad_y has dtype float64 but x has dtype float32"),
    (dict(mean=np.zeros(4)), ValueError, r"mean must have shape \(3,\)"),
    (dict(invstd=None), TypeError, "invstd must be a numpy ndarray"),
    (dict(training="yes"), TypeError, "training must be True or False, got 'yes'"),
    (dict(need_grad_x=1), TypeError, "need_grad_x must be True or False, got 1"),
    (dict(out=np.empty((2, 3, 4, 4), np.float64)), ValueError,
     r"out \(for the grad_x\) must have shape \(2, 3, 4, 4\) and dtype float32"),
])
def test_batch_norm_backward_rejects(override, exc, pattern):
    args = dict(grad_y=x4.copy(), x=x4, weight=c3, mean=np.zeros(3), invstd=np.ones(3)) | override
    with pytest.raises(exc, match=pattern):
        F.batch_norm_backward(**args)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: F.relu([1.0, -1.0]), TypeError, "relu: x must be a numpy ndarray, got list"),
    (lambda: F.relu(np.arange(3)), TypeError, "relu: x must be float32 or float64, got int64"),
    (lambda: F.relu(x4, out=x4), ValueError, "must not overlap the inputs"),
    (lambda: F.relu_backward(x4, x4[0]), ValueError,
     r"grad_y must have y's shape \(3, 4, 4\), got \(2, 3, 4, 4\)"),
    (lambda: F.relu_backward(x4.astype(np.float64), x4), TypeError,
     "grad_y has dtype float64 but y has dtype float32"),
    (lambda: F.relu_backward(x4, x4.astype(bool)), TypeError, "y must be float32 or float64"),
])
def test_relu_rejects(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("name", ["batch_norm2d", "relu"])
def test_layer_fed_its_own_reused_output(rng, name):
    # a reused output buffer must never be written while it is also the input
    layer = get_layer(name)(3) if name == "batch_norm2d" else get_layer(name)()
    layer.reuse_buffers = True
    first = layer.forward(channel_data(rng, (4, 3, 5, 5), np.float32))
    kept = first.copy()
    second = layer.forward(first)
    np.testing.assert_array_equal(first, kept)
    expected = R.relu(kept) if name == "relu" else R.batch_norm_train(kept)[0]
    assert_close(second, expected, np.float32, "y")
    assert layer.backward(np.ones_like(kept)).shape == kept.shape
