"""Group, layer and instance norm kernels against the numpy reference, on 1 and 2 threads."""
import numpy as np
import pytest

import cnnframe
import cnnframe.reference as R
from cnnframe.functional import norms as FN


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def threading_mode(request, monkeypatch):
    """Run every case both on one thread and split over two (tiny calls run serially by default)."""
    if request.param == "parallel":
        monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    return request.param


TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def assert_close(actual, expected, dtype, what):
    tol = TOL[dtype]
    scale = max(1.0, float(np.abs(expected).max())) if np.size(expected) else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale,
                               err_msg=what)


def layout(a, kind):
    """The same values as a C-contiguous, a strided or a Fortran-ordered array."""
    if kind == "strided":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    return np.asfortranarray(a) if kind == "fortran" else a


def data(rng, shape, dtype, offset=3.0):
    """Values with per-sample offsets (a one-pass variance would lose digits on them)."""
    x = rng.standard_normal(shape) * 2 + rng.uniform(-offset, offset, (shape[0],) + (1,) * (
        len(shape) - 1))
    return x.astype(dtype)


# (N, C, *) shapes and group counts: row lengths below, at and above the kernels' 4- and
# 8-value blocks, one-value planes, an empty batch.
GROUP_CASES = [((2, 4, 3, 3), 2), ((3, 6, 5), 3), ((2, 3), 1), ((1, 8, 7, 9), 8), ((4, 6, 1, 1), 2),
               ((2, 32, 4, 4), 8), ((0, 4, 2, 2), 2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("shape,groups", GROUP_CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_and_backward_match_reference(rng, shape, groups, dtype, kind, affine):
    c = shape[1]
    x = layout(data(rng, shape, dtype), kind)
    w = rng.uniform(0.5, 2, c).astype(dtype) if affine else None
    b = rng.uniform(-1, 1, c).astype(dtype) if affine else None
    y, mean, invstd = FN.group_norm(x, groups, w, b, eps=1e-3)
    y_ref, mean_ref, invstd_ref = R.group_norm(x, groups, w, b, eps=1e-3)
    assert y.dtype == dtype and mean.shape == (shape[0], groups)
    assert_close(y, y_ref, dtype, "y")
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(invstd, invstd_ref, rtol=1e-9)
    g = layout(rng.standard_normal(shape).astype(dtype), kind)
    got = FN.group_norm_backward(g, x, groups, w, mean, invstd)
    want = R.group_norm_backward(g, x, groups, w, mean_ref, invstd_ref)
    for a, e, what in zip(got, want, ("grad_x", "grad_weight", "grad_bias")):
        assert a.dtype == dtype
        assert_close(a, e, dtype, what)


# ... and rows longer than the kernel's 2048-value column blocks, with a partial last block
LAYER_CASES = [((3, 4, 5), [4, 5]), ((2, 7), 7), ((2, 3, 4, 4), [3, 4, 4]), ((4, 2, 33), [33]),
               ((1, 2, 3, 2), [2]), ((5, 2, 2100), [2, 2100])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,normalized", LAYER_CASES)
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm_and_backward_match_reference(isa, rng, shape, normalized, dtype, affine):
    norm_shape = (normalized,) if isinstance(normalized, int) else tuple(normalized)
    x = data(rng, shape, dtype)
    w = rng.uniform(0.5, 2, norm_shape).astype(dtype) if affine != "none" else None
    b = rng.uniform(-1, 1, norm_shape).astype(dtype) if affine == "both" else None
    y, mean, invstd = FN.layer_norm(x, normalized, w, b)
    y_ref, mean_ref, invstd_ref = R.layer_norm(x, normalized, w, b)
    assert mean.shape == shape[:len(shape) - len(norm_shape)]
    assert_close(y, y_ref, dtype, "y")
    g = rng.standard_normal(shape).astype(dtype)
    got = FN.layer_norm_backward(g, x, normalized, w, mean, invstd)
    want = R.layer_norm_backward(g, x, normalized, w, mean_ref, invstd_ref)
    for a, e, what in zip(got, want, ("grad_x", "grad_weight", "grad_bias")):
        assert a.shape == e.shape and a.dtype == dtype
        assert_close(a, e, dtype, what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 1, 2), (1, 4, 9, 9)])
@pytest.mark.parametrize("use_input_stats,running", [(True, True), (True, False), (False, True)])
def test_instance_norm_and_backward_match_reference(rng, shape, dtype, use_input_stats, running):
    c = shape[1]
    x = data(rng, shape, dtype)
    w, b = rng.uniform(0.5, 2, c).astype(dtype), rng.uniform(-1, 1, c).astype(dtype)
    stats = [rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)]
    ours = [s.copy() for s in stats] if running else [None, None]
    theirs = [s.copy() for s in stats] if running else [None, None]
    y, mean, invstd = FN.instance_norm(x, w, b, 1e-4, running_mean=ours[0], running_var=ours[1],
                                       momentum=0.3, use_input_stats=use_input_stats)
    y_ref, mean_ref, invstd_ref = R.instance_norm(x, w, b, 1e-4, running_mean=theirs[0],
                                                  running_var=theirs[1], momentum=0.3,
                                                  use_input_stats=use_input_stats)
    assert_close(y, y_ref, dtype, "y")
    for a, e in zip(ours, theirs):
        if running:
            assert_close(a, e, dtype, "running statistics")
    g = rng.standard_normal(shape).astype(dtype)
    got = FN.instance_norm_backward(g, x, w, mean, invstd, use_input_stats)
    want = R.instance_norm_backward(g, x, w, mean_ref, invstd_ref, use_input_stats)
    for a, e, what in zip(got, want, ("grad_x", "grad_weight", "grad_bias")):
        assert_close(a, e, dtype, what)


def test_instance_norm_is_group_norm_with_a_group_per_channel(rng):
    x = data(rng, (3, 4, 5, 6), np.float64)
    w, b = rng.uniform(0.5, 2, 4), rng.uniform(-1, 1, 4)
    y1, m1, s1 = FN.instance_norm(x, w, b)
    y2, m2, s2 = FN.group_norm(x, 4, w, b)
    np.testing.assert_array_equal(y1, y2)
    g = rng.standard_normal(x.shape)
    for a, e in zip(FN.instance_norm_backward(g, x, w, m1, s1),
                    FN.group_norm_backward(g, x, 4, w, m2, s2)):
        np.testing.assert_array_equal(a, e)


def test_one_group_is_a_layer_norm_over_c_h_w(rng):
    x = data(rng, (3, 4, 5, 6), np.float64)
    y1, _, _ = FN.group_norm(x, 1)
    y2, _, _ = FN.layer_norm(x, [4, 5, 6])
    np.testing.assert_allclose(y1, y2, rtol=0, atol=1e-14)
    per_sample = y1.reshape(3, -1)
    np.testing.assert_allclose(per_sample.mean(axis=1), 0, atol=1e-14)
    np.testing.assert_allclose(per_sample.var(axis=1), 1 / (1 + 1e-5 * (1 / x.reshape(3, -1).var(
        axis=1))), rtol=1e-12)


def test_float32_statistics_survive_a_large_mean(rng):
    """Rows far from zero: the two-sweep variance keeps float32 outputs at float32 precision."""
    x = (rng.standard_normal((2, 4, 64, 64)) + 1000).astype(np.float32)
    y, _, _ = FN.group_norm(x, 2)
    y_ref, _, _ = R.group_norm(x.astype(np.float64), 2)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=2e-4)
    g = rng.standard_normal(x.shape).astype(np.float32)
    _, mean, invstd = FN.group_norm(x, 2)
    gx = FN.group_norm_backward(g, x, 2, None, mean, invstd)[0]
    gx_ref = R.group_norm_backward(g.astype(np.float64), x.astype(np.float64), 2, None, mean,
                                   invstd)[0]
    np.testing.assert_allclose(gx, gx_ref, rtol=0, atol=2e-4 * np.abs(gx_ref).max())


@pytest.mark.parametrize("fn", ["group_norm", "layer_norm"])
def test_results_do_not_depend_on_the_thread_count(rng, fn, monkeypatch):
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    x = data(rng, (16, 8, 9, 7), np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.uniform(0.5, 2, 8 if fn == "group_norm" else (8, 9, 7)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        cnnframe.set_num_threads(threads)
        try:
            if fn == "group_norm":
                y, m, s = FN.group_norm(x, 4, w)
                outs.append((y, *FN.group_norm_backward(g, x, 4, w, m, s)))
            else:
                y, m, s = FN.layer_norm(x, [8, 9, 7], w)
                outs.append((y, *FN.layer_norm_backward(g, x, [8, 9, 7], w, m, s)))
        finally:
            cnnframe.set_num_threads(2)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_out_is_written_and_need_grad_x_false_skips_it(rng):
    x = data(rng, (2, 4, 3, 3), np.float32)
    out = np.empty_like(x)
    y, mean, invstd = FN.group_norm(x, 2, out=out)
    assert y is out
    g = rng.standard_normal(x.shape).astype(np.float32)
    gx, gw, gb = FN.group_norm_backward(g, x, 2, None, mean, invstd, need_grad_x=False)
    assert gx is None
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("call,exc,match", [
    (lambda x: FN.group_norm(x, 3), ValueError, "num_groups must be >= 1 and divide the 4"),
    (lambda x: FN.group_norm(x, 2.0), TypeError, "num_groups must be an int"),
    (lambda x: FN.group_norm(x, 2, np.ones(3, np.float32)), ValueError,
     r"weight must have shape \(4,\)"),
    (lambda x: FN.group_norm(x, 2, np.ones(4)), TypeError, "weight has dtype float64 but x"),
    (lambda x: FN.group_norm(x, 2, eps=0), ValueError, "eps must be a finite number > 0"),
    (lambda x: FN.group_norm(x.astype(np.int32), 2), TypeError, "x must be float32 or float64"),
    (lambda x: FN.group_norm(x[0, 0, 0], 1), ValueError, "at least 2 dimensions"),
    (lambda x: FN.layer_norm(x, [3, 4]), ValueError, r"must end in normalized_shape \(3, 4\)"),
    (lambda x: FN.layer_norm(x, []), TypeError, "normalized_shape must be an int or a non-empty"),
    (lambda x: FN.instance_norm(x[:, :, :1, :1]), ValueError, "more than one value per plane"),
    (lambda x: FN.instance_norm(x, use_input_stats=False), ValueError,
     "needs running_mean and running_var"),
    (lambda x: FN.instance_norm(x, running_mean=np.zeros(4, np.float32)), ValueError,
     "give both running_mean and running_var"),
    (lambda x: FN.group_norm_backward(np.ones((2, 4, 3), np.float32), x, 2, None,
                                      np.zeros((2, 2)), np.ones((2, 2))), ValueError,
     "grad_y must have x's shape"),
    (lambda x: FN.group_norm_backward(x, x, 2, None, np.zeros(2), np.ones((2, 2))), ValueError,
     r"mean must have shape \(2, 2\)"),
])
def test_bad_arguments_are_refused_naming_them(rng, call, exc, match):
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    with pytest.raises(exc, match=match):
        call(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,groups", GROUP_CASES)
def test_group_norm_matches_reference_on_every_isa(isa, rng, shape, groups, dtype):
    c = shape[1]
    x = data(rng, shape, dtype)
    w, b = rng.uniform(0.5, 2, c).astype(dtype), rng.uniform(-1, 1, c).astype(dtype)
    y, mean, invstd = FN.group_norm(x, groups, w, b)
    y_ref, mean_ref, invstd_ref = R.group_norm(x, groups, w, b)
    assert_close(y, y_ref, dtype, "y")
    g = rng.standard_normal(shape).astype(dtype)
    got = FN.group_norm_backward(g, x, groups, w, mean, invstd)
    want = R.group_norm_backward(g, x, groups, w, mean_ref, invstd_ref)
    for a, e, what in zip(got, want, ("grad_x", "grad_weight", "grad_bias")):
        assert_close(a, e, dtype, what)


@pytest.mark.parametrize("op", ["group", "layer", "instance"])
def test_results_do_not_depend_on_thread_count(isa, rng, op, monkeypatch):
    x = data(rng, (6, 8, 30, 30), np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.uniform(0.5, 2, x.shape[1:] if op == "layer" else 8).astype(np.float32)
    b = rng.uniform(-1, 1, w.shape).astype(np.float32)
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr("cnnframe._threads._num_threads", threads)
        if op == "group":
            y, mean, invstd = FN.group_norm(x, 4, w, b)
            grads = FN.group_norm_backward(g, x, 4, w, mean, invstd)
        elif op == "layer":
            y, mean, invstd = FN.layer_norm(x, x.shape[1:], w, b)
            grads = FN.layer_norm_backward(g, x, x.shape[1:], w, mean, invstd)
        else:
            y, mean, invstd = FN.instance_norm(x, w, b)
            grads = FN.instance_norm_backward(g, x, w, mean, invstd)
        results.append((y, mean, invstd, *grads))
    for other in results[1:]:
        for a, e in zip(other, results[0]):
            np.testing.assert_array_equal(a, e)
