"""Bad input raises TypeError/ValueError naming the argument and shapes; nothing crashes."""
import numpy as np
import pytest

import cnnframe.functional as F

x = np.zeros((2, 4, 8, 8), np.float32)
w = np.zeros((6, 4, 3, 3), np.float32)
gy = np.zeros((2, 6, 6, 6), np.float32)

CONV_ERRORS = [  # (kwargs overriding the valid call, exception, message pattern)
    (dict(x=x.astype(np.int32)), TypeError, "x must be float32 or float64, got int32"),
    (dict(x=x.astype(np.float16)), TypeError, "x must be float32 or float64"),
    (dict(x=x.astype(np.complex64)), TypeError, "x must be float32 or float64"),
    (dict(x=x.tolist()), TypeError, "x must be a numpy ndarray, got list"),
    (dict(weight=w.astype(np.float64)), TypeError, "weight has dtype float64 but the input has dtype float32"),
    (dict(bias=np.zeros(6, np.float64)), TypeError, "bias has dtype float64"),
    (dict(x=x[0]), ValueError, r"x must have 4 dimensions, got shape \(4, 8, 8\)"),
    (dict(weight=w[0]), ValueError, "weight must have 4 dimensions"),
    (dict(weight=np.zeros((6, 3, 3, 3), np.float32)), ValueError,
     r"weight has shape \(6, 3, 3, 3\).*x has shape \(2, 4, 8, 8\) \(4 channels\)"),
    (dict(groups=3), ValueError, r"groups=3 must divide the input channels \(4\)"),
    (dict(groups=0), ValueError, "groups must be >= 1"),
    (dict(groups=1.5), TypeError, "groups must be an int"),
    (dict(stride=0), ValueError, r"stride must be >= 1, got \(0, 0\)"),
    (dict(stride=(1, -2)), ValueError, "stride must be >= 1"),
    (dict(stride=(1, 2, 3)), TypeError, "stride must be an int or a pair of ints"),
    (dict(stride="2"), TypeError, "stride must be an int or a pair of ints"),
    (dict(dilation=0), ValueError, "dilation must be >= 1"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding=True), TypeError, "padding must be an int or a pair"),
    (dict(weight=np.zeros((6, 4, 9, 9), np.float32)), ValueError,
     r"output size would be 0 x 0 \(< 1\) for input 8 x 8, kernel 9 x 9"),
    (dict(dilation=5), ValueError, "dilated kernel"),
    (dict(stride=2**40), ValueError, "stride is too large"),
    (dict(bias=np.zeros(5, np.float32)), ValueError, r"bias must have shape \(6,\)"),
    (dict(x=np.zeros((2, 4, 0, 8), np.float32)), ValueError, "only the batch may be empty"),
]


@pytest.mark.parametrize("override,exc,pattern", CONV_ERRORS)
def test_conv2d_rejects(override, exc, pattern):
    args = dict(x=x, weight=w, bias=None, stride=1, padding=0, dilation=1, groups=1) | override
    with pytest.raises(exc, match=pattern):
        F.conv2d(**args)


@pytest.mark.parametrize("override,exc,pattern", [
    case for case in CONV_ERRORS if "bias" not in case[0] and "only the batch" not in case[2]] + [
    (dict(grad_y=gy[:, :5]), ValueError, r"grad_y must have the output shape \(2, 6, 6, 6\)"),
    (dict(grad_y=gy.astype(np.float64)), TypeError, "grad_y has dtype float64"),
])
def test_conv2d_backward_rejects(override, exc, pattern):
    args = dict(x=x, weight=w, grad_y=gy, stride=1, padding=0, dilation=1, groups=1) | override
    with pytest.raises(exc, match=pattern):
        F.conv2d_backward(**args)


def test_conv2d_backward_rejects_non_bool_need_grad_x():
    with pytest.raises(TypeError, match="need_grad_x must be True or False, got 'no'"):
        F.conv2d_backward(x, w, gy, need_grad_x="no")


POOL_ERRORS = [
    (dict(x=x.astype(np.int64)), TypeError, "x must be float32 or float64"),
    (dict(x=x[0]), ValueError, "x must have 4 dimensions"),
    (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
    (dict(kernel_size=9), ValueError, r"kernel_size \(9, 9\) is larger than the padded input \(8 x 8\)"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(padding=2), ValueError, r"padding \(2, 2\) must be at most half the kernel_size \(2, 2\)"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
]


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize("override,exc,pattern", POOL_ERRORS)
def test_pools_reject(pool, override, exc, pattern):
    args = dict(x=x, kernel_size=2, stride=None, padding=0) | override
    with pytest.raises(exc, match=pattern):
        pool(**args)


def test_max_pool_backward_rejects_bad_argmax():
    y, argmax = F.max_pool2d(x, 2)
    with pytest.raises(TypeError, match="argmax must be the int64 array"):
        F.max_pool2d_backward(y, argmax.astype(np.int32), x.shape)
    with pytest.raises(ValueError, match="argmax must have shape"):
        F.max_pool2d_backward(y, argmax[:, :, :2], x.shape)
    bad = argmax.copy()
    bad[0, 0, 0, 0] = 64
    with pytest.raises(ValueError, match=r"indices outside \[0, 64\)"):
        F.max_pool2d_backward(y, bad, x.shape)
    with pytest.raises(ValueError, match="input_shape must be"):
        F.max_pool2d_backward(y, argmax, (2, 4, 8))
    with pytest.raises(ValueError, match="disagree on N, C"):
        F.max_pool2d_backward(y, argmax, (2, 3, 8, 8))


def test_avg_and_global_backward_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 4, 4, 4\)"):
        F.avg_pool2d_backward(np.zeros((2, 4, 3, 4), np.float32), x.shape, 2)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 4\)"):
        F.global_avg_pool2d_backward(np.zeros((2, 3), np.float32), x.shape)
    with pytest.raises(ValueError, match="grad_y must have 2 dimensions"):
        F.global_avg_pool2d_backward(np.zeros((2, 4, 1), np.float32), x.shape)


@pytest.mark.parametrize("fn", [F.correlate2d, F.convolve2d])
def test_correlate_rejects(fn):
    with pytest.raises(ValueError, match="must be 2-D"):
        fn(np.zeros((3, 3, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"k with shape \(4, 1\) must be non-empty and fit inside x"):
        fn(np.zeros((3, 3)), np.zeros((4, 1)))
    with pytest.raises(TypeError, match="real numbers"):
        fn(np.zeros((3, 3), complex), np.zeros((2, 2)))
