"""Nearest and bilinear resizing of NCHW batches, as torch.nn.functional.interpolate.

The source index (and bilinear weight) of every output row and column is computed
here, once per call, with PyTorch's formulas and in the precision PyTorch uses for
them (float32 for nearest's scale; the input's dtype for bilinear), so outputs pick
the same source pixels; cnnframe_ext.resample gathers and scatter-adds.
"""
import math
import numbers

import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import float_array, nonempty_planes, output_array
from cnnframe_ext import resample as _kernels

MODES = ("nearest", "bilinear")


def _size_pair(size, fn):
    if isinstance(size, numbers.Integral) and not isinstance(size, (bool, np.bool_)):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2 or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)) for s in size)):
        raise TypeError(f"{fn}: size must be an int or a pair of ints (OH, OW), got {size!r}")
    if min(size) < 1:
        raise ValueError(f"{fn}: size must be >= 1, got {tuple(size)}")
    return int(size[0]), int(size[1])


def _scale_pair(scale_factor, fn):
    if isinstance(scale_factor, numbers.Real) and not isinstance(scale_factor, (bool, np.bool_)):
        scale_factor = (scale_factor, scale_factor)
    if (not isinstance(scale_factor, (tuple, list)) or len(scale_factor) != 2 or not all(
            isinstance(s, numbers.Real) and not isinstance(s, (bool, np.bool_))
            for s in scale_factor)):
        raise TypeError(f"{fn}: scale_factor must be a number or a pair of numbers, got "
                        f"{scale_factor!r}")
    scales = (float(scale_factor[0]), float(scale_factor[1]))
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"{fn}: scale_factor must be finite and > 0, got {scale_factor!r}")
    return scales


def check_resize_args(size=None, scale_factor=None, mode="nearest", align_corners=None,
                      recompute_scale_factor=None, fn="interpolate"):
    """Validate interpolate's arguments: return ((OH, OW) or None, (sh, sw) or None).

    Raises TypeError/ValueError naming the argument: both or neither of size and
    scale_factor, align_corners with mode "nearest", values out of range.
    """
    if mode not in MODES:
        raise ValueError(f"{fn}: mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if align_corners is not None and not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"{fn}: align_corners must be true, false or null, got {align_corners!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{fn}: align_corners can only be set with mode 'bilinear' (it is "
                         f"{align_corners!r} with mode 'nearest'); leave it null")
    if recompute_scale_factor is not None and not isinstance(recompute_scale_factor,
                                                             (bool, np.bool_)):
        raise TypeError(f"{fn}: recompute_scale_factor must be true, false or null, got "
                        f"{recompute_scale_factor!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{fn}: give exactly one of size and scale_factor (got size={size!r}, "
                         f"scale_factor={scale_factor!r})")
    if recompute_scale_factor and size is not None:
        raise ValueError(f"{fn}: recompute_scale_factor is for scale_factor, not for size")
    if size is not None:
        return _size_pair(size, fn), None
    return None, _scale_pair(scale_factor, fn)


def resize_plan(input_hw, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, fn="interpolate"):
    """Validate interpolate's arguments for an input of `input_hw`: return ((OH, OW),
    (scale_h, scale_w) or None, align_corners as a bool), as torch.nn.functional.interpolate
    resolves them (OH = floor(H * scale_h)).

    Raises TypeError/ValueError as `check_resize_args`, and ValueError naming the input
    size when the output would be empty.
    """
    out_hw, scales = check_resize_args(size, scale_factor, mode, align_corners,
                                       recompute_scale_factor, fn)
    if out_hw is not None:
        return out_hw, None, bool(align_corners)
    out_hw = tuple(math.floor(float(n) * s) for n, s in zip(input_hw, scales))
    if min(out_hw) < 1:
        raise ValueError(f"{fn}: scale_factor {scale_factor!r} makes an empty output "
                         f"({out_hw[0]} x {out_hw[1]}) from input size {tuple(input_hw)}")
    return out_hw, (None if recompute_scale_factor else scales), bool(align_corners)


def nearest_indices(in_size, out_size, scale=None):
    """Source index of each of out_size outputs: PyTorch's nearest_idx (float32 arithmetic)."""
    i = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return i
    if out_size == 2 * in_size:
        return i >> 1
    if scale is not None and scale > 0:
        ratio = np.float32(1.0 / scale)
    else:
        ratio = np.float32(in_size) / np.float32(out_size)
    src = np.floor(i.astype(np.float32) * ratio).astype(np.int64)
    return np.minimum(src, in_size - 1)


def linear_indices(in_size, out_size, align_corners, scale, dtype):
    """(i0, i1, lambda0, lambda1) of each output: PyTorch's compute_source_index_and_lambda,
    in `dtype` arithmetic."""
    dt = np.dtype(dtype).type
    i = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return i, i.copy(), np.ones(out_size, dtype), np.zeros(out_size, dtype)
    if align_corners:
        ratio = dt(in_size - 1) / dt(out_size - 1) if out_size > 1 else dt(0)
        src = ratio * i.astype(dtype)
    else:
        ratio = dt(1.0 / scale) if scale is not None and scale > 0 else \
            dt(in_size) / dt(out_size)
        src = ratio * (i.astype(dtype) + dt(0.5)) - dt(0.5)
        src = np.maximum(src, dt(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lambda1 = np.clip(src - i0.astype(dtype), dt(0), dt(1)).astype(dtype)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, (dt(1) - lambda1).astype(dtype), lambda1


def _tables(mode, in_hw, out_hw, scales, align_corners, dtype):
    scales = scales or (None, None)
    if mode == "nearest":
        return tuple(nearest_indices(n, o, s) for n, o, s in zip(in_hw, out_hw, scales))
    (h0, h1, lh0, lh1), (w0, w1, lw0, lw1) = (
        linear_indices(n, o, align_corners, s, dtype) for n, o, s in zip(in_hw, out_hw, scales))
    return h0, h1, lh0, lh1, w0, w1, lw0, lw1


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, *, out=None):
    """Resize images by nearest or bilinear interpolation, as torch.nn.functional.interpolate.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    size : int or (int, int), optional
        The output size (OH, OW).
    scale_factor : float or (float, float), optional
        Multiplies H and W (OH = floor(H * scale)); give this or `size`.  Unless
        recompute_scale_factor is true the source coordinates use 1 / scale_factor
        (PyTorch's rule), not H / OH.
    mode : {"nearest", "bilinear"}
        "nearest" copies pixel floor(o * H / OH) (PyTorch's legacy "nearest");
        "bilinear" weighs the two nearest source rows and columns.
    align_corners : bool, optional
        Bilinear only: true maps the corner pixels onto each other
        (src = o * (H - 1) / (OH - 1)); false or null uses pixel centres
        (src = (o + 0.5) * H / OH - 0.5).
    recompute_scale_factor : bool, optional
        True: compute the coordinates from the output size, as if `size` were given.
    out : ndarray, optional
        C-contiguous array of the output's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW), x's dtype

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type or value (both or neither of size and
        scale_factor, align_corners with mode "nearest", an empty output).
    """
    fn = "interpolate"
    x = float_array(x, "x", 4)
    nonempty_planes(x, "x")
    n, c, h, w = x.shape
    out_hw, scales, corners = resize_plan((h, w), size, scale_factor, mode, align_corners,
                                          recompute_scale_factor, fn)
    y = output_array((n, c, *out_hw), x.dtype, fn, out=out, inputs=(x,))
    if y.size:
        tables = _tables(mode, (h, w), out_hw, scales, corners, x.dtype)
        kernel = _kernels.nearest_forward if mode == "nearest" else _kernels.bilinear_forward
        kernel(x.reshape(n * c, h, w), *tables, y.reshape(n * c, *out_hw),
               threads_for((4 if mode == "bilinear" else 1) * y.size, n * c))
    return y


def interpolate_backward(grad_y, input_shape, size=None, scale_factor=None, mode="nearest",
                         align_corners=None, recompute_scale_factor=None, *, out=None):
    """Gradient of `interpolate` with respect to x: each output's gradient added to the
    source pixels it was read from, with the same weights.

    Parameters
    ----------
    grad_y : ndarray, shape (N, C, OH, OW), float32 or float64
    input_shape : tuple of 4 ints
        The shape (N, C, H, W) of the forward call's x.
    size, scale_factor, mode, align_corners, recompute_scale_factor
        As given to `interpolate`.
    out : ndarray, optional
        C-contiguous array of input_shape and grad_y's dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, input_shape, grad_y's dtype
    """
    fn = "interpolate_backward"
    grad_y = float_array(grad_y, "grad_y", 4)
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4 or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)) and s >= 0
            for s in input_shape) or min(input_shape[1:]) < 1):
        raise ValueError(f"{fn}: input_shape must be (N, C, H, W) of ints (C, H, W >= 1), got "
                         f"{input_shape!r}")
    n, c, h, w = (int(s) for s in input_shape)
    out_hw, scales, corners = resize_plan((h, w), size, scale_factor, mode, align_corners,
                                          recompute_scale_factor, fn)
    if grad_y.shape != (n, c, *out_hw):
        raise ValueError(f"{fn}: grad_y must have the output shape {(n, c, *out_hw)} for input "
                         f"shape {(n, c, h, w)}, got {grad_y.shape}")
    grad_x = output_array((n, c, h, w), grad_y.dtype, fn, "grad_x", out=out, inputs=(grad_y,))
    if grad_x.size:
        tables = _tables(mode, (h, w), out_hw, scales, corners, grad_y.dtype)
        kernel = _kernels.nearest_backward if mode == "nearest" else _kernels.bilinear_backward
        kernel(grad_y.reshape(n * c, *out_hw), *tables, grad_x.reshape(n * c, h, w),
               threads_for((4 if mode == "bilinear" else 1) * grad_y.size, n * c))
    return grad_x
