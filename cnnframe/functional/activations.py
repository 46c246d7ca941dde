"""Element-wise activations GELU, SiLU, Hardswish, ELU and PReLU (cnnframe_ext.activation).

Formulas follow torch.nn.functional; every backward takes the forward input x
and recomputes the derivative from it.  Inputs of any shape; float32 and float64
are preserved.  The kernels evaluate exp, expm1, tanh and erf with their own
vectorised approximations, within 2.5 ulp of the exact values
(cnnframe_ext/src/activation.h), so results may differ from libm-based ones in
the last bits; a NaN input gives NaN, as in PyTorch's vectorised kernels.
"""
import math
import numbers

import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import contiguous, float_ndarray, output_array, same_dtype
from cnnframe_ext import activation as _kernels

# Elements per chunk of the kernels' parallel loops (cnnframe_ext/activation.pyx: CHUNK).
_CHUNK = 16384
# Work per element, in the units of threads_for: erf, exp and tanh cost a few dozen
# vector instructions per vector.
_WORK = 8


def _float(a, name, fn, dtype=None):
    """`a` checked as a float array (of x's dtype, if given), C-contiguous."""
    float_ndarray(a, name, fn)
    if dtype is not None:
        same_dtype(a, name, dtype, fn, other="x")
    return contiguous(a).reshape(a.shape)


def _grad_and_x(grad_y, x, fn):
    x = _float(x, "x", fn)
    grad_y = _float(grad_y, "grad_y", fn, x.dtype)
    if grad_y.shape != x.shape:
        raise ValueError(f"{fn}: grad_y must have x's shape {x.shape}, got {grad_y.shape}")
    return grad_y, x


def _threads(size):
    return threads_for(_WORK * size, size // _CHUNK + 1)


def _forward(kind, x, alpha, out, fn):
    x = _float(x, "x", fn)
    y = output_array(x.shape, x.dtype, fn, out=out, inputs=(x,))
    if x.size:
        _kernels.activation_forward(_kernels.KINDS[kind], x.reshape(-1), y.reshape(-1), alpha,
                                    _threads(x.size))
    return y


def _backward(kind, grad_y, x, alpha, out, fn):
    grad_y, x = _grad_and_x(grad_y, x, fn)
    grad_x = output_array(x.shape, x.dtype, fn, "grad_x", out=out, inputs=(x, grad_y))
    if x.size:
        _kernels.activation_backward(_kernels.KINDS[kind], grad_y.reshape(-1), x.reshape(-1),
                                     grad_x.reshape(-1), alpha, _threads(x.size))
    return grad_x


def _approximate(approximate, fn):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{fn}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return "gelu" if approximate == "none" else "gelu_tanh"


def gelu(x, approximate="none", *, out=None):
    """Gaussian error linear unit, as torch.nn.functional.gelu.

    approximate="none": y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)));
    approximate="tanh": y = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64
    approximate : {"none", "tanh"}
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    return _forward(_approximate(approximate, "gelu"), x, 0.0, out, "gelu")


def gelu_backward(grad_y, x, approximate="none", *, out=None):
    """Gradient of `gelu`: grad_y * (Phi(x) + x phi(x)) (or the tanh form's derivative).

    Parameters
    ----------
    grad_y : ndarray, x's shape and dtype
    x : ndarray, float32 or float64
        The input of the forward call.
    approximate : {"none", "tanh"}
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, x's shape and dtype
    """
    kind = _approximate(approximate, "gelu_backward")
    return _backward(kind, grad_y, x, 0.0, out, "gelu_backward")


def silu(x, *, out=None):
    """Sigmoid linear unit (swish), y = x / (1 + exp(-x)), as torch.nn.functional.silu.

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    return _forward("silu", x, 0.0, out, "silu")


def silu_backward(grad_y, x, *, out=None):
    """Gradient of `silu`: grad_y * s (1 + x (1 - s)), s = sigmoid(x).

    Parameters and returns as `gelu_backward` (without approximate).
    """
    return _backward("silu", grad_y, x, 0.0, out, "silu_backward")


def hardswish(x, *, out=None):
    """Hardswish, y = x * min(max(x + 3, 0), 6) / 6, as torch.nn.functional.hardswish.

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    return _forward("hardswish", x, 0.0, out, "hardswish")


def hardswish_backward(grad_y, x, *, out=None):
    """Gradient of `hardswish`: 0 for x < -3, grad_y * (x / 3 + 0.5) for -3 <= x <= 3,
    grad_y for x > 3 (PyTorch's choice at the two kinks), NaN for a NaN x.

    Parameters and returns as `gelu_backward` (without approximate).
    """
    return _backward("hardswish", grad_y, x, 0.0, out, "hardswish_backward")


def _alpha(alpha, fn):
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real) or \
            not math.isfinite(alpha):
        raise ValueError(f"{fn}: alpha must be a finite number, got {alpha!r}")
    return float(alpha)


def elu(x, alpha=1.0, *, out=None):
    """Exponential linear unit, y = x if x > 0 else alpha (exp(x) - 1), as
    torch.nn.functional.elu.

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64
    alpha : float
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    return _forward("elu", x, _alpha(alpha, "elu"), out, "elu")


def elu_backward(grad_y, x, alpha=1.0, *, out=None):
    """Gradient of `elu`: grad_y for x > 0, else grad_y * alpha * exp(x).

    Parameters and returns as `gelu_backward`, with alpha as in `elu`.
    """
    return _backward("elu", grad_y, x, _alpha(alpha, "elu_backward"), out, "elu_backward")


# --- PReLU (per-channel slopes) ----------------------------------------------------------------

# PReLU's weight gradient is summed over this many fixed partitions of the planes, then in
# order, so it does not depend on the thread count.
PRELU_PARTS = 8


def _prelu_view(x, weight, fn):
    """The (N, C, L) view of x for `weight` (C = 1 for one shared slope) after checks."""
    weight = _float(weight, "weight", fn, x.dtype)
    if weight.ndim != 1 or weight.size < 1:
        raise ValueError(f"{fn}: weight must have shape (1,) or (C,), got {weight.shape}")
    if weight.size > 1 and (x.ndim < 2 or x.shape[1] != weight.size):
        raise ValueError(f"{fn}: weight has {weight.size} values, one per channel, but x has "
                         f"shape {x.shape} (channels on axis 1)")
    n = x.shape[0] if x.ndim else 1
    c = weight.size
    length = x.size // (n * c) if n * c else 0
    return weight, (n, c, length)


def prelu(x, weight, *, out=None):
    """Parametric ReLU, y = x if x > 0 else weight * x, as torch.nn.functional.prelu.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *)`` (any shape when weight has one value), float32 or float64
    weight : ndarray, shape (1,) or (C,), x's dtype
        The slope for x <= 0: one shared, or one per channel (axis 1).
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    fn = "prelu"
    x = _float(x, "x", fn)
    weight, view = _prelu_view(x, weight, fn)
    y = output_array(x.shape, x.dtype, fn, out=out, inputs=(x,))
    if x.size:
        _kernels.prelu_forward(x.reshape(view), weight, y.reshape(view),
                               threads_for(x.size, view[0] * view[1]))
    return y


def prelu_backward(grad_y, x, weight, need_grad_x=True, *, out=None):
    """Gradients of `prelu` with respect to x and weight.

    grad_x = grad_y where x > 0, else weight * grad_y; grad_weight = the sum of
    grad_y * x where x <= 0 (per channel, or over everything for one weight).

    Parameters
    ----------
    grad_y : ndarray, x's shape and dtype
    x : ndarray
        The input of the forward call.
    weight : ndarray, shape (1,) or (C,), x's dtype
    need_grad_x : bool
        False skips grad_x and returns None for it.
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, x's shape and dtype (None when need_grad_x is False)
    grad_weight : ndarray, weight's shape and dtype
    """
    fn = "prelu_backward"
    if not isinstance(need_grad_x, (bool, np.bool_)):
        raise TypeError(f"{fn}: need_grad_x must be True or False, got {need_grad_x!r}")
    grad_y, x = _grad_and_x(grad_y, x, fn)
    weight, view = _prelu_view(x, weight, fn)
    grad_x = (output_array(x.shape, x.dtype, fn, "grad_x", out=out, inputs=(x, grad_y))
              if need_grad_x else None)
    part_gw = np.zeros((PRELU_PARTS, weight.size))
    if x.size:
        _kernels.prelu_backward(grad_y.reshape(view), x.reshape(view), weight,
                                grad_x.reshape(view) if need_grad_x else
                                np.empty((0, 1, 1), x.dtype), part_gw,
                                threads_for(2 * x.size, min(PRELU_PARTS, view[0] * view[1])))
    return grad_x, part_gw.sum(axis=0).astype(x.dtype)


# --- per-plane scaling (channel dropout) -------------------------------------------------------

def scale_planes(x, scale, *, out=None):
    """Every (sample, channel) plane of x times its own factor: y[n, c] = x[n, c] * scale[n, c].

    Dropout2d's mask and its gradient (a plane is kept, scaled by 1 / (1 - p), or zeroed)
    in one pass over memory.

    Parameters
    ----------
    x : ndarray, shape (N, C, *), float32 or float64
    scale : ndarray, shape (N, C), x's dtype
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    fn = "scale_planes"
    x = _float(x, "x", fn)
    if x.ndim < 2:
        raise ValueError(f"{fn}: x must have shape (N, C, ...), got {x.shape}")
    scale = _float(scale, "scale", fn, x.dtype)
    if scale.shape != x.shape[:2]:
        raise ValueError(f"{fn}: scale must have shape {x.shape[:2]} (one factor per (sample, "
                         f"channel) plane of x), got {scale.shape}")
    y = output_array(x.shape, x.dtype, fn, out=out, inputs=(x,))
    planes = x.shape[0] * x.shape[1]
    if x.size:
        _kernels.scale_planes(x.reshape(planes, -1), scale.reshape(-1), y.reshape(planes, -1),
                              threads_for(x.size, planes))
    return y
