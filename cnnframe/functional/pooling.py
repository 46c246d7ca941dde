"""2-D max, average and global average pooling of NCHW batches."""
import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import (float_array, nonempty_planes, out_size, output_array,
                                       pair)
from cnnframe_ext import pool as _kernels

# Max pooling windows inside the plane (all, without padding) and 2x2 stride-2 average
# pooling run vectorised kernels (2x2 stride-2 max pooling its own), bit for bit the
# generic loops' results; tests set this False to run the generic loops instead.
VECTORISED = True


def _pool_geometry(x, kernel_size, stride, padding, fn):
    """Validate a pooling call; return (x, (kh, kw), (sh, sw), (ph, pw), (OH, OW))."""
    x = float_array(x, "x", 4)
    nonempty_planes(x, "x")
    kernel = pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{fn}: padding {padding} must be at most half the kernel_size {kernel}")
    h, w = x.shape[2:]
    if kernel[0] > h + 2 * padding[0] or kernel[1] > w + 2 * padding[1]:
        raise ValueError(f"{fn}: kernel_size {kernel} is larger than the padded input "
                         f"({h + 2 * padding[0]} x {w + 2 * padding[1]}) of x with shape {x.shape}")
    oh = out_size(h, kernel[0], stride[0], padding[0])
    ow = out_size(w, kernel[1], stride[1], padding[1])
    return x, kernel, stride, padding, (oh, ow)


def _check_shape(arr, name, shape, fn):
    if arr.shape != tuple(shape):
        raise ValueError(f"{fn}: {name} must have shape {tuple(shape)}, got {arr.shape}")


def _input_shape(input_shape, fn):
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0
                       for s in input_shape)):
        raise ValueError(f"{fn}: input_shape must be (N, C, H, W) of ints >= 0, got {input_shape!r}")
    return tuple(int(s) for s in input_shape)


def max_pool2d(x, kernel_size, stride=None, padding=0, *, out=None, argmax_out=None):
    """Max pooling over kernel_size windows, as torch.nn.functional.max_pool2d.

    Padding acts as -inf (it never wins); a NaN in a window propagates.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to kernel_size.
    padding : int or (int, int)
        At most half the kernel size.
    out, argmax_out : ndarray, optional
        C-contiguous arrays of y's shape (x's dtype, and int64) to write into.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW), OH = floor((H + 2*ph - KH) / sh) + 1
    argmax : ndarray of int64, shape (N, C, OH, OW)
        Flat index h*W + w, within its (n, c) plane, of each window's maximum;
        ties go to the first in row-major order.
    """
    x, kernel, stride, padding, (oh, ow) = _pool_geometry(x, kernel_size, stride, padding,
                                                          "max_pool2d")
    n, c, h, w = x.shape
    y = output_array((n, c, oh, ow), x.dtype, "max_pool2d", out=out, inputs=(x,))
    argmax = output_array((n, c, oh, ow), np.int64, "max_pool2d", "argmax", out=argmax_out,
                          inputs=(x, y))
    max_pool2d_into(x, y, argmax, kernel, stride, padding)
    return y, argmax


def max_pool2d_into(x, y, argmax, kernel, stride, padding):
    """max_pool2d's kernel call on checked arguments: x (N, C, H, W) C-contiguous, y and
    argmax C-contiguous (N, C, OH, OW) of x's dtype and int64; kernel, stride and padding
    (int, int) pairs.  For layers that have checked them once (no per-call validation)."""
    (n, c, h, w), (oh, ow) = x.shape, y.shape[2:]
    _kernels.max_pool2d_forward(x.reshape(n * c, h, w), y.reshape(n * c, oh, ow),
                                argmax.reshape(n * c, oh, ow), *kernel, *stride, *padding,
                                threads_for(y.size * kernel[0] * kernel[1], n * c), VECTORISED)


def max_pool2d_backward(grad_y, argmax, input_shape, *, out=None):
    """Gradient of `max_pool2d`: each grad_y element goes to its window's maximum.

    Parameters
    ----------
    grad_y : ndarray, shape (N, C, OH, OW)
    argmax : ndarray of int64, shape (N, C, OH, OW), as returned by max_pool2d
    input_shape : tuple (N, C, H, W)
    out : ndarray, optional
        C-contiguous array of input_shape and grad_y's dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, shape input_shape, dtype of grad_y

    Raises
    ------
    ValueError
        On mismatched shapes, or an argmax index outside [0, H*W) (found while
        scattering: `out` then holds a partial result).
    """
    grad_y = float_array(grad_y, "grad_y", 4)
    n, c, h, w = _input_shape(input_shape, "max_pool2d_backward")
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.int64:
        raise TypeError("max_pool2d_backward: argmax must be the int64 array from max_pool2d, "
                        f"got {getattr(argmax, 'dtype', type(argmax).__name__)}")
    _check_shape(argmax, "argmax", grad_y.shape, "max_pool2d_backward")
    if grad_y.shape[:2] != (n, c):
        raise ValueError(f"max_pool2d_backward: grad_y {grad_y.shape} and input_shape "
                         f"{(n, c, h, w)} disagree on N, C")
    argmax = np.ascontiguousarray(argmax)
    oh, ow = grad_y.shape[2:]
    grad_x = output_array((n, c, h, w), grad_y.dtype, "max_pool2d_backward", "grad_x", out=out,
                          inputs=(grad_y, argmax))
    # The kernel checks each index as it scatters (skipping bad ones) and counts them.
    outside = 0
    if grad_x.size:
        outside = _kernels.max_pool2d_backward(
            grad_y.reshape(n * c, oh, ow), argmax.reshape(n * c, oh, ow),
            grad_x.reshape(n * c, h * w), threads_for(grad_x.size, n * c))
    elif argmax.size:  # planes of zero pixels: no index is valid
        outside = argmax.size
    if outside:
        raise ValueError(f"max_pool2d_backward: argmax holds indices outside [0, {h * w}) "
                         f"for input_shape {(n, c, h, w)}")
    return grad_x


def avg_pool2d(x, kernel_size, stride=None, padding=0, *, out=None):
    """Average pooling, as torch.nn.functional.avg_pool2d (count_include_pad=True).

    Padded zeros count in each window's divisor, kh * kw.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    kernel_size, stride, padding
        As in `max_pool2d`.
    out : ndarray, optional
        C-contiguous array of y's shape and dtype to write into.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
    """
    x, kernel, stride, padding, (oh, ow) = _pool_geometry(x, kernel_size, stride, padding,
                                                          "avg_pool2d")
    n, c, h, w = x.shape
    y = output_array((n, c, oh, ow), x.dtype, "avg_pool2d", out=out, inputs=(x,))
    avg_pool2d_into(x, y, kernel, stride, padding)
    return y


def avg_pool2d_into(x, y, kernel, stride, padding):
    """avg_pool2d's kernel call on checked arguments (as `max_pool2d_into`, without argmax)."""
    (n, c, h, w), (oh, ow) = x.shape, y.shape[2:]
    _kernels.avg_pool2d_forward(x.reshape(n * c, h, w), y.reshape(n * c, oh, ow),
                                *kernel, *stride, *padding,
                                threads_for(y.size * kernel[0] * kernel[1], n * c), VECTORISED)


def avg_pool2d_backward(grad_y, input_shape, kernel_size, stride=None, padding=0, *, out=None):
    """Gradient of `avg_pool2d`: each grad_y element spread evenly over its window.

    Parameters
    ----------
    grad_y : ndarray, shape (N, C, OH, OW)
    input_shape : tuple (N, C, H, W)
    kernel_size, stride, padding
        As given to `avg_pool2d`.
    out : ndarray, optional
        C-contiguous array of input_shape and grad_y's dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, shape input_shape, dtype of grad_y
    """
    grad_y = float_array(grad_y, "grad_y", 4)
    shape = _input_shape(input_shape, "avg_pool2d_backward")
    probe = np.empty((0,) + shape[1:], grad_y.dtype)  # geometry checks need only the shape
    _, kernel, stride, padding, (oh, ow) = _pool_geometry(probe, kernel_size, stride, padding,
                                                          "avg_pool2d_backward")
    n, c, h, w = shape
    _check_shape(grad_y, "grad_y", (n, c, oh, ow), "avg_pool2d_backward")
    grad_x = output_array(shape, grad_y.dtype, "avg_pool2d_backward", "grad_x", out=out,
                          inputs=(grad_y,))
    if grad_x.size:
        _kernels.avg_pool2d_backward(grad_y.reshape(n * c, oh, ow), grad_x.reshape(n * c, h, w),
                                     *kernel, *stride, *padding,
                                     threads_for(grad_x.size + grad_y.size * kernel[0] * kernel[1],
                                                 n * c), VECTORISED)
    return grad_x


def global_avg_pool2d(x):
    """Mean over each (n, c) plane: (N, C, H, W) -> (N, C)."""
    x = float_array(x, "x", 4)
    nonempty_planes(x, "x")
    n, c, h, w = x.shape
    return global_avg_pool2d_into(x, np.empty((n, c), x.dtype))


def global_avg_pool2d_into(x, y):
    """global_avg_pool2d's kernel call on checked arguments: x (N, C, H, W) C-contiguous
    with non-empty planes, y C-contiguous (N, C) of x's dtype.  Returns y."""
    n, c, h, w = x.shape
    if y.size:
        _kernels.global_avg_pool2d_forward(x.reshape(n * c, h * w), y.reshape(n * c),
                                           threads_for(x.size, n * c))
    return y


def global_avg_pool2d_backward(grad_y, input_shape):
    """Gradient of `global_avg_pool2d`: grad_y[n, c] / (H*W) over the whole plane.

    Parameters
    ----------
    grad_y : ndarray, shape (N, C)
    input_shape : tuple (N, C, H, W)

    Returns
    -------
    grad_x : ndarray, shape input_shape
    """
    grad_y = float_array(grad_y, "grad_y", 2)
    n, c, h, w = _input_shape(input_shape, "global_avg_pool2d_backward")
    _check_shape(grad_y, "grad_y", (n, c), "global_avg_pool2d_backward")
    if h < 1 or w < 1:
        raise ValueError(f"global_avg_pool2d_backward: input_shape {(n, c, h, w)} has an empty plane")
    grad_x = output_array((n, c, h, w), grad_y.dtype, "global_avg_pool2d_backward", "grad_x")
    if grad_x.size:
        _kernels.global_avg_pool2d_backward(grad_y.reshape(n * c), grad_x.reshape(n * c, h * w),
                                            threads_for(grad_x.size, n * c))
    return grad_x
