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


def _scratch(x, out_hw, m, kh, kw, stride, padding, dilation, threads, backward):
    """The kernels' per-thread scratch: a (threads, elements) reused buffer."""
    h, w = x.shape[2:]
    elements = _kernel.scratch_elements(h, w, *out_hw, m, kh, kw, *stride, *padding,
                                        *dilation, x.dtype.itemsize, backward)
    return scratch("depthwise plane", x.dtype, threads, elements)


def depthwise_conv2d(x, weight, bias, stride, padding, dilation, out_hw, out=None):
    """y (N, C*M, OH, OW) = conv2d(x (N, C, H, W), weight (C*M, 1, KH, KW), bias (C*M,) or
    an empty array, stride, padding, dilation, groups=C)."""
    n, c = x.shape[:2]
    f, _, kh, kw = weight.shape
    y = output_array((n, f) + tuple(out_hw), x.dtype, "conv2d", out=out,
                     inputs=(x, weight, bias))
    threads = _threads(n * c, y.size * kh * kw)
    buf = _scratch(x, out_hw, f // c, kh, kw, stride, padding, dilation, threads, False)
    _kernel.depthwise_forward(x, weight.reshape(f, kh * kw), bias, y, buf, kh, kw, *stride,
                              *padding, *dilation, threads)
    return y


def depthwise_conv2d_backward(x, weight, grad_y, stride, padding, dilation, need_grad_x,
                              out=None):
    """(grad_x or None, grad_weight, grad_bias) of `depthwise_conv2d`, in one pass over
    the planes (each channel's images by one thread: see cnnframe_ext/depthwise.pyx)."""
    n, c = x.shape[:2]
    f, _, kh, kw = weight.shape
    # grad_x correlates grad_y with the flipped filters: their taps in reverse order
    wflip = np.ascontiguousarray(weight.reshape(f, kh * kw)[:, ::-1])
    threads = min(_threads(n * c, grad_y.size * kh * kw), c)
    buf = _scratch(x, grad_y.shape[2:], f // c, kh, kw, stride, padding, dilation, threads,
                   True)
    grad_x = None
    if need_grad_x:
        grad_x = output_array(x.shape, x.dtype, "conv2d_backward", "grad_x", out=out,
                              inputs=(x, weight, grad_y))
    grad_w = np.empty((f, kh * kw), x.dtype)
    grad_bias = np.empty(f, x.dtype)
    _kernel.depthwise_backward(x, grad_y, wflip, grad_x, grad_w, grad_bias, buf, kh, kw,
                               *stride, *padding, *dilation, threads)
    return grad_x, grad_w.reshape(weight.shape), grad_bias
