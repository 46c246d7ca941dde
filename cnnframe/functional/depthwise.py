"""Depthwise convolution (groups == C) by a direct per-plane kernel.

`conv2d` and `conv2d_backward` route a depthwise call here (see `depthwise_applies`);
the functions below take arguments already validated and normalised by them.  The kernel
is cnnframe_ext/depthwise.pyx over src/depthwise.h: every (image, channel) plane is
filtered on its own, in one pass over memory, which is what a memory-bound depthwise layer
needs (im2col would copy each plane KH*KW times and then run C tiny GEMMs).
"""
import numpy as np

from cnnframe._threads import get_num_threads, threads_for
from cnnframe.functional._args import output_array
from cnnframe.functional._workspace import scratch
from cnnframe_ext import depthwise as _kernel


def depthwise_applies(x_shape, weight_shape, groups):
    """True for a depthwise conv: one input channel per group (groups == C > 1), any
    channel multiplier M = F / C, kernel size, stride, padding and dilation.  (A conv of
    one input channel, groups == 1, stays with the dense algorithms.)"""
    c = x_shape[1]
    return groups == c > 1 and weight_shape[1] == 1


def _threads(planes, work):
    return min(threads_for(work, planes), get_num_threads())


def _plane_scratch(purpose, x_shape, padding, dtype, threads):
    h, w = x_shape[2:]
    return scratch(purpose, dtype, threads, (h + 2 * padding[0]) * (w + 2 * padding[1]))


def depthwise_conv2d(x, weight, bias, stride, padding, dilation, out_hw, out=None):
    """y (N, C*M, OH, OW) = conv2d(x (N, C, H, W), weight (C*M, 1, KH, KW), bias (C*M,) or
    an empty array, stride, padding, dilation, groups=C)."""
    n, c = x.shape[:2]
    f, _, kh, kw = weight.shape
    y = output_array((n, f) + tuple(out_hw), x.dtype, "conv2d", out=out,
                     inputs=(x, weight, bias))
    threads = _threads(n * c, y.size * kh * kw)
    buf = _plane_scratch("depthwise plane", x.shape, padding, x.dtype, threads)
    _kernel.depthwise_forward(x, weight.reshape(f, kh * kw), bias, y, buf, kh, kw, *stride,
                              *padding, *dilation, threads)
    return y


def depthwise_conv2d_backward(x, weight, grad_y, stride, padding, dilation, need_grad_x,
                              out=None):
    """(grad_x or None, grad_weight, grad_bias) of `depthwise_conv2d`."""
    n, c = x.shape[:2]
    f, _, kh, kw = weight.shape
    w2 = weight.reshape(f, kh * kw)
    threads = _threads(n * c, grad_y.size * kh * kw)
    buf = _plane_scratch("depthwise plane", x.shape, padding, x.dtype, threads)
    grad_x = None
    if need_grad_x:
        grad_x = output_array(x.shape, x.dtype, "conv2d_backward", "grad_x", out=out,
                              inputs=(x, weight, grad_y))
        _kernel.depthwise_grad_input(grad_y, w2, grad_x, buf, kh, kw, *stride, *padding,
                                     *dilation, threads)
    grad_w = np.empty((f, kh * kw), x.dtype)
    _kernel.depthwise_grad_weight(x, grad_y, grad_w, buf, kh, kw, *stride, *padding,
                                  *dilation, min(threads, c))
    grad_bias = grad_y.sum(axis=(0, 2, 3))
    return grad_x, grad_w.reshape(weight.shape), grad_bias
