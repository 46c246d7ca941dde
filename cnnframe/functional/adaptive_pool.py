"""Adaptive average and max pooling of NCHW batches (cnnframe_ext.resample kernels).

The output size is given and the windows adapt to it, as in
torch.nn.functional.adaptive_avg_pool2d: output row i pools input rows
[floor(i H / OH), ceil((i + 1) H / OH)), and likewise for columns, so windows
may differ in size by one and overlap when H is not a multiple of OH.
"""
import numbers

import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import float_array, nonempty_planes, output_array
from cnnframe.functional.pooling import max_pool2d_backward
from cnnframe_ext import resample as _kernels


def output_hw(output_size, input_hw, fn="adaptive_pool2d"):
    """(OH, OW) for `output_size`: an int, or a pair whose None entries keep the input size."""
    def one(v, n):
        if v is None:
            return n
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{fn}: output_size must be an int or a pair of ints (or None), "
                            f"got {output_size!r}")
        if v < 1:
            raise ValueError(f"{fn}: output_size must be >= 1, got {output_size!r}")
        return int(v)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{fn}: output_size must be an int or a pair [OH, OW], got "
                             f"{output_size!r}")
        return one(output_size[0], input_hw[0]), one(output_size[1], input_hw[1])
    if output_size is None:
        raise TypeError(f"{fn}: output_size must be an int or a pair of ints, got None")
    v = one(output_size, None)
    return v, v


def windows(in_size, out_size):
    """(start, end) arrays of the out_size adaptive windows over in_size positions."""
    i = np.arange(out_size, dtype=np.int64)
    start = (i * in_size) // out_size
    end = ((i + 1) * in_size + out_size - 1) // out_size
    return start, end


def _plan(x, output_size, fn):
    x = float_array(x, "x", 4)
    nonempty_planes(x, "x")
    n, c, h, w = x.shape
    oh, ow = output_hw(output_size, (h, w), fn)
    return x, (n, c, h, w), (oh, ow), (*windows(h, oh), *windows(w, ow))


def _input_shape(input_shape, fn):
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4 or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)) and s >= 0
            for s in input_shape) or min(input_shape[1:]) < 1):
        raise ValueError(f"{fn}: input_shape must be (N, C, H, W) of ints (C, H, W >= 1), got "
                         f"{input_shape!r}")
    return tuple(int(s) for s in input_shape)


def _work(h, w, oh, ow, planes):
    """Element visits of one pass: every window element once (windows may overlap)."""
    return planes * oh * ow * (-(-h // oh) + 1) * (-(-w // ow) + 1)


def adaptive_avg_pool2d(x, output_size, *, out=None):
    """Adaptive average pooling, as torch.nn.functional.adaptive_avg_pool2d.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    output_size : int or (int or None, int or None)
        (OH, OW); None keeps that input size.
    out : ndarray, optional
        C-contiguous array of the output's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW), x's dtype
        The mean of each window (see the module docstring).

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type or value.
    """
    fn = "adaptive_avg_pool2d"
    x, (n, c, h, w), (oh, ow), win = _plan(x, output_size, fn)
    y = output_array((n, c, oh, ow), x.dtype, fn, out=out, inputs=(x,))
    if y.size:
        _kernels.adaptive_avg_forward(x.reshape(n * c, h, w), *win, y.reshape(n * c, oh, ow),
                                      threads_for(_work(h, w, oh, ow, n * c), n * c))
    return y


def adaptive_avg_pool2d_backward(grad_y, input_shape, *, out=None):
    """Gradient of `adaptive_avg_pool2d`: each output's gradient spread evenly over its window.

    Parameters
    ----------
    grad_y : ndarray, shape (N, C, OH, OW), float32 or float64
    input_shape : tuple of 4 ints
        The shape (N, C, H, W) of the forward call's x.
    out : ndarray, optional
        C-contiguous array of input_shape and grad_y's dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, input_shape, grad_y's dtype
    """
    fn = "adaptive_avg_pool2d_backward"
    grad_y = float_array(grad_y, "grad_y", 4)
    n, c, h, w = _input_shape(input_shape, fn)
    if grad_y.shape[:2] != (n, c) or min(grad_y.shape[2:]) < 1:
        raise ValueError(f"{fn}: grad_y must have shape ({n}, {c}, OH, OW) for input shape "
                         f"{(n, c, h, w)}, got {grad_y.shape}")
    oh, ow = grad_y.shape[2:]
    grad_x = output_array((n, c, h, w), grad_y.dtype, fn, "grad_x", out=out, inputs=(grad_y,))
    if grad_x.size:
        _kernels.adaptive_avg_backward(grad_y.reshape(n * c, oh, ow), *windows(h, oh),
                                       *windows(w, ow), grad_x.reshape(n * c, h, w),
                                       threads_for(_work(h, w, oh, ow, n * c), n * c))
    return grad_x


def adaptive_max_pool2d(x, output_size, *, out=None, argmax_out=None):
    """Adaptive max pooling, as torch.nn.functional.adaptive_max_pool2d(return_indices=True).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    output_size : int or (int or None, int or None)
        (OH, OW); None keeps that input size.
    out, argmax_out : ndarray, optional
        C-contiguous arrays of y's shape (x's dtype, and int64) to write into.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW), x's dtype
        The maximum of each window; a NaN in a window propagates.
    argmax : ndarray of int64, shape (N, C, OH, OW)
        Flat index h*W + w, within its (n, c) plane, of each window's maximum (ties:
        the first in row-major order), for `adaptive_max_pool2d_backward`.
    """
    fn = "adaptive_max_pool2d"
    x, (n, c, h, w), (oh, ow), win = _plan(x, output_size, fn)
    y = output_array((n, c, oh, ow), x.dtype, fn, out=out, inputs=(x,))
    argmax = output_array((n, c, oh, ow), np.int64, fn, "argmax", out=argmax_out,
                          inputs=(x, y))
    if y.size:
        _kernels.adaptive_max_forward(x.reshape(n * c, h, w), *win, y.reshape(n * c, oh, ow),
                                      argmax.reshape(n * c, oh, ow),
                                      threads_for(_work(h, w, oh, ow, n * c), n * c))
    return y, argmax


def adaptive_max_pool2d_backward(grad_y, argmax, input_shape, *, out=None):
    """Gradient of `adaptive_max_pool2d`: grad_y added at each window's argmax.

    The same scatter as max_pool2d's backward (cnnframe.functional.max_pool2d_backward).

    Parameters
    ----------
    grad_y : ndarray, shape (N, C, OH, OW), float32 or float64
    argmax : ndarray of int64, grad_y's shape
        As returned by `adaptive_max_pool2d`.
    input_shape : tuple of 4 ints
        The shape (N, C, H, W) of the forward call's x.
    out : ndarray, optional
        C-contiguous array of input_shape and grad_y's dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, input_shape, grad_y's dtype
    """
    return max_pool2d_backward(grad_y, argmax, input_shape, out=out)
