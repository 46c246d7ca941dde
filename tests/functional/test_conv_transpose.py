"""conv_transpose2d (through the conv2d kernels) against the explicit-loop reference."""
import numpy as np
import pytest

import cnnframe.functional as F
import cnnframe.reference as R
from cnnframe.functional.conv_transpose import conv_transpose2d, conv_transpose2d_backward

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

# (x shape, weight shape, stride, padding, output_padding, groups, dilation): stride 1
# (the conv2d fast path) and strided / padded / grouped / dilated geometries, including
# output_padding >= stride (allowed below the dilation) and padding beyond the kernel.
CASES = [
    ((2, 3, 5, 4), (3, 2, 3, 3), 1, 0, 0, 1, 1),
    ((2, 3, 5, 4), (3, 2, 3, 3), 1, 1, 0, 1, 1),
    ((2, 4, 4, 5), (4, 3, 2, 2), 2, 0, 0, 1, 1),
    ((1, 4, 3, 3), (4, 2, 3, 3), 2, 1, 1, 2, 1),
    ((2, 2, 4, 3), (2, 3, 3, 2), (2, 1), (1, 0), (1, 0), 1, (1, 2)),
    ((2, 6, 3, 4), (6, 1, 3, 3), 1, 0, 0, 6, 1),
    ((1, 2, 4, 4), (2, 2, 3, 2), 1, (1, 0), (1, 0), 1, 2),
    ((2, 2, 5, 6), (2, 2, 3, 3), 1, 3, 0, 1, 1),
    ((0, 2, 3, 3), (2, 2, 3, 3), 2, 0, 1, 1, 1),
    ((2, 8, 6, 6), (8, 16, 3, 3), 1, 1, 0, 1, 1),
    # stride = kernel size: the 1x1-convolution path (grouped, non-square, empty batch)
    ((2, 4, 3, 5), (4, 3, 3, 2), (3, 2), 0, 0, 2, 1),
    ((3, 5, 4, 4), (5, 7, 2, 2), 2, 0, 0, 1, 1),
    ((0, 2, 3, 3), (2, 2, 2, 2), 2, 0, 0, 1, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_forward_and_backward_match_the_loops(rng, case, dtype):
    x_shape, w_shape, s, p, op, g, d = case
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * g).astype(dtype)
    y = conv_transpose2d(x, w, b, s, p, op, g, d)
    y_ref = R.conv_transpose2d(x, w, b, s, p, op, g, d)
    assert y.shape == y_ref.shape and y.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = conv_transpose2d_backward(x, w, gy, s, p, op, g, d)
    want = R.conv_transpose2d_backward(x, w, gy, s, p, op, g, d)
    for a, e, what in zip(got, want, ("grad_x", "grad_weight", "grad_bias")):
        assert a.shape == e.shape and a.dtype == dtype, what
        np.testing.assert_allclose(a, e, err_msg=what, **TOL[dtype])


def test_stride_equal_to_kernel_takes_the_pointwise_path(rng, monkeypatch):
    """No conv2d input gradient (and its wasted weight gradient) in the forward pass, and
    one conv2d backward call (1x1) in the backward pass."""
    import cnnframe.functional.conv_transpose as CT
    calls = []
    real = CT.conv2d_backward

    def spy(x, w, *args, **kwargs):
        calls.append(w.shape)
        return real(x, w, *args, **kwargs)

    monkeypatch.setattr(CT, "conv2d_backward", spy)
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    w = rng.standard_normal((4, 6, 2, 2)).astype(np.float32)
    y = conv_transpose2d(x, w, None, 2)
    assert calls == []
    np.testing.assert_allclose(y, R.conv_transpose2d(x, w, None, 2), rtol=2e-5, atol=2e-5)
    conv_transpose2d_backward(x, w, np.ones_like(y), 2)
    assert calls == [(24, 4, 1, 1)]


def test_it_is_the_adjoint_of_conv2d(rng):
    """<conv2d(u, w), v> = <u, conv_transpose2d(v, w)>: the defining property."""
    u = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 3))   # conv2d: 4 -> 6 channels, groups 2
    for stride, padding, dilation in [(1, 1, 1), (2, 1, 1), (3, 2, 2)]:
        v_shape = F.conv2d(u, w, None, stride, padding, dilation, 2).shape
        v = rng.standard_normal(v_shape)
        # the output_padding that gives back u's size
        oph, opw = ((size + 2 * padding - dilation * 2 - 1) % stride for size in u.shape[2:])
        back = conv_transpose2d(v, w, None, stride, padding, (oph, opw), 2, dilation)
        assert back.shape == u.shape
        lhs = np.vdot(F.conv2d(u, w, None, stride, padding, dilation, 2), v)
        np.testing.assert_allclose(lhs, np.vdot(u, back), rtol=1e-12)


def test_out_and_need_grad_x(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    out = np.empty((2, 2, 8, 8), np.float32)
    assert conv_transpose2d(x, w, None, 2, out=out) is out
    gy = rng.standard_normal(out.shape).astype(np.float32)
    gx, gw, gb = conv_transpose2d_backward(x, w, gy, 2, need_grad_x=False)
    assert gx is None and gw.shape == w.shape
    np.testing.assert_allclose(gw, R.conv_transpose2d_backward(x, w, gy, 2)[1], rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(output_padding=2, stride=2), ValueError, "output_padding .* must be smaller than"),
    (dict(w_shape=(4, 2, 3, 3)), ValueError, "so x needs 4 channels"),
    (dict(groups=2), ValueError, "divisible by groups=2"),
    (dict(bias=np.zeros(3)), ValueError, r"bias must have shape \(2,\)"),
    (dict(padding=5), ValueError, r"output size would be .* \(< 1\)"),
    (dict(w_dtype=np.float32), TypeError, "weight has dtype float32"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
])
def test_bad_arguments_are_refused_naming_them(rng, kwargs, exc, match):
    x = rng.standard_normal((2, 3, 4, 4))
    w = rng.standard_normal(kwargs.pop("w_shape", (3, 2, 3, 3))).astype(
        kwargs.pop("w_dtype", np.float64))
    with pytest.raises(exc, match=match):
        conv_transpose2d(x, w, **kwargs)
