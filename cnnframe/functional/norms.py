"""Group, layer and instance normalisation (forward and backward), backed by cnnframe_ext.norm.

Each normalises values with statistics of the sample itself, never of the batch:
group norm over each group of channels of a sample (and its H, W), instance norm
over each channel of a sample, layer norm over the trailing `normalized_shape`
axes.  Semantics follow torch.nn.functional (biased variance; instance norm's
running statistics use the unbiased one).  Statistics and the backward pass's sums
are computed in float64 whatever the input dtype; a weight and bias per value (layer
norm's) are applied in the input's dtype, as PyTorch does.
"""
import math
import numbers

import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import contiguous, float_ndarray, output_array, same_dtype
from cnnframe.functional._workspace import scratch
from cnnframe_ext import norm as _kernels

# The rows' weight and bias gradients are summed in this many fixed partitions, then
# in order, so results do not depend on the thread count.
PARTS = 8
# Work per element, in the units of threads_for: forward reads a row twice for its
# statistics and once more for y; backward reads grad_y and x twice.
_FORWARD_WORK, _BACKWARD_WORK = 3, 4


def _array(a, name, fn, dtype=None):
    """`a` checked as a float array (of x's dtype, if given)."""
    float_ndarray(a, name, fn)
    if dtype is not None:
        same_dtype(a, name, dtype, fn, other="x")
    return a


def _x(x, fn, min_ndim=2):
    x = _array(x, "x", fn)
    if x.ndim < min_ndim:
        raise ValueError(f"{fn}: x must have at least {min_ndim} dimensions (N, C, ...), got "
                         f"shape {x.shape}")
    return contiguous(x)


def _grad_y(grad_y, x, fn):
    grad_y = _array(grad_y, "grad_y", fn, x.dtype)
    if grad_y.shape != x.shape:
        raise ValueError(f"{fn}: grad_y must have x's shape {x.shape}, got {grad_y.shape}")
    return contiguous(grad_y)


def _param(a, name, shape, fn, dtype, default):
    """A parameter of `shape` (None -> `default`) as a flat C-contiguous array of x's dtype."""
    if a is None:
        out = scratch(f"{fn} {name} default", dtype, 1, math.prod(shape)).reshape(-1)
        out.fill(default)
        return out
    a = _array(a, name, fn, dtype)
    if a.shape != tuple(shape):
        raise ValueError(f"{fn}: {name} must have shape {tuple(shape)}, got {a.shape}")
    return np.ascontiguousarray(a).reshape(-1)


def _stats(a, name, shape, fn):
    """Statistics from a forward call: float arrays of `shape`, as flat float64."""
    a = _array(a, name, fn)
    if a.shape != tuple(shape):
        raise ValueError(f"{fn}: {name} must have shape {tuple(shape)} (as the forward call "
                         f"returned it), got {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64).reshape(-1)


def _eps(eps, fn):
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{fn}: eps must be a number, got {eps!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{fn}: eps must be a finite number > 0, got {eps}")
    return eps


def _flag(value, name, fn):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}")
    return bool(value)


def _rows_forward(x3, weight, bias, groups, eps, y3):
    """The kernel's forward over the (R, K, L) view x3: returns (mean, var, invstd), each (R,)."""
    rows = x3.shape[0]
    mean, var, invstd = np.empty(rows), np.empty(rows), np.empty(rows)
    threads = threads_for(_FORWARD_WORK * x3.size, rows)
    if x3.shape[2] == 1:   # a weight and bias per value, used in x's dtype
        _kernels.norm_forward_values(x3, weight, bias, groups, eps, y3, mean, var, invstd,
                                     threads)
    else:                  # one per slot of L values, in double
        _kernels.norm_forward(x3, weight.astype(np.float64), bias.astype(np.float64), groups,
                              eps, y3, mean, var, invstd, threads)
    return mean, var, invstd


def _rows_backward(g3, x3, weight, groups, mean, invstd, gx3):
    """The kernel's backward: returns the (weight, bias) gradients, float64 of weight's size."""
    rows, k, length = x3.shape
    if length == 1:   # a weight and bias per value: the kernel sums by columns
        # reused buffers: layer norm has a parameter per value of a sample
        grad_w = scratch("norm grad_weight", np.float64, 1, weight.size).reshape(-1)
        grad_b = scratch("norm grad_bias", np.float64, 1, weight.size).reshape(-1)
        _kernels.norm_backward_values(g3, x3, weight, groups, mean, invstd, gx3, grad_w, grad_b,
                                      threads_for(_BACKWARD_WORK * x3.size, rows))
        return grad_w, grad_b
    part_gw = np.empty((PARTS, weight.size))
    part_gb = np.empty((PARTS, weight.size))
    _kernels.norm_backward(g3, x3, weight.astype(np.float64), groups, mean, invstd, gx3, part_gw,
                           part_gb, threads_for(_BACKWARD_WORK * x3.size, min(PARTS, rows)))
    return part_gw.sum(axis=0), part_gb.sum(axis=0)


def _no_grad_x(x3):
    return np.empty((0,) + x3.shape[1:], x3.dtype)


# --- group normalisation --------------------------------------------------------------------

def _groups(num_groups, c, fn):
    if isinstance(num_groups, (bool, np.bool_)) or not isinstance(num_groups, numbers.Integral):
        raise TypeError(f"{fn}: num_groups must be an int, got {num_groups!r}")
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"{fn}: num_groups must be >= 1 and divide the {c} channels of x, "
                         f"got {num_groups}")
    return int(num_groups)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, out=None):
    """Group normalisation, as torch.nn.functional.group_norm.

    The C channels are split into `num_groups` groups of consecutive channels; each
    (sample, group) is normalised with its own mean and biased variance over the
    group's channels and every spatial position:
    y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c].

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *)``, float32 or float64
    num_groups : int
        Divides C.
    weight, bias : ndarray, shape (C,), x's dtype, optional
        Per-channel scale and shift (default 1 and 0).
    eps : float > 0
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    mean, invstd : ndarray, shape (N, num_groups), float64
        Each group's mean and 1 / sqrt(var + eps), for `group_norm_backward`.

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type, dtype or shape, a num_groups that does not
        divide C, or a non-finite or non-positive eps.
    """
    fn = "group_norm"
    x = _x(x, fn)
    n, c = x.shape[:2]
    groups = _groups(num_groups, c, fn)
    weight = _param(weight, "weight", (c,), fn, x.dtype, 1.0)
    bias = _param(bias, "bias", (c,), fn, x.dtype, 0.0)
    eps = _eps(eps, fn)
    y = output_array(x.shape, x.dtype, fn, out=out, inputs=(x,))
    shape3 = (n * groups, c // groups, math.prod(x.shape[2:]))
    mean, _, invstd = _rows_forward(x.reshape(shape3), weight, bias, groups, eps,
                                    y.reshape(shape3))
    return y, mean.reshape(n, groups), invstd.reshape(n, groups)


def group_norm_backward(grad_y, x, num_groups, weight, mean, invstd, need_grad_x=True, *,
                        out=None):
    """Gradients of `group_norm` with respect to x, weight and bias.

    With xhat = (x - mean) * invstd and m values per group, g = grad_y * weight:
    grad_x = invstd * (g - sum(g) / m - xhat * sum(g * xhat) / m) per group;
    grad_weight[c] = sum of grad_y * xhat and grad_bias[c] = sum of grad_y over
    the samples and positions of channel c.

    Parameters
    ----------
    grad_y : ndarray, x's shape and dtype
    x : ndarray, shape ``(N, C, *)``, float32 or float64
        The input of the forward call.
    num_groups : int
    weight : ndarray, shape (C,), x's dtype, or None (1)
    mean, invstd : ndarray, shape (N, num_groups)
        As returned by `group_norm`.
    need_grad_x : bool
        False skips grad_x and returns None for it.
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, x's shape and dtype (None when need_grad_x is False)
    grad_weight, grad_bias : ndarray, shape (C,), x's dtype
    """
    fn = "group_norm_backward"
    need_grad_x = _flag(need_grad_x, "need_grad_x", fn)
    x = _x(x, fn)
    grad_y = _grad_y(grad_y, x, fn)
    n, c = x.shape[:2]
    groups = _groups(num_groups, c, fn)
    weight = _param(weight, "weight", (c,), fn, x.dtype, 1.0)
    mean = _stats(mean, "mean", (n, groups), fn)
    invstd = _stats(invstd, "invstd", (n, groups), fn)
    shape3 = (n * groups, c // groups, math.prod(x.shape[2:]))
    grad_x = (output_array(x.shape, x.dtype, fn, "grad_x", out=out, inputs=(x, grad_y))
              if need_grad_x else None)
    x3 = x.reshape(shape3)
    gw, gb = _rows_backward(grad_y.reshape(shape3), x3, weight, groups, mean, invstd,
                            grad_x.reshape(shape3) if need_grad_x else _no_grad_x(x3))
    return grad_x, gw.astype(x.dtype), gb.astype(x.dtype)


# --- layer normalisation --------------------------------------------------------------------

def _normalized_shape(normalized_shape, x, fn):
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(
            normalized_shape, (bool, np.bool_)):
        normalized_shape = (normalized_shape,)
    if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_))
            for s in normalized_shape):
        raise TypeError(f"{fn}: normalized_shape must be an int or a non-empty list of ints, "
                        f"got {normalized_shape!r}")
    shape = tuple(int(s) for s in normalized_shape)
    if x.ndim < len(shape) + 1 or x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"{fn}: x must end in normalized_shape {shape} after a batch axis, "
                         f"got shape {x.shape}")
    return shape


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, out=None):
    """Layer normalisation, as torch.nn.functional.layer_norm.

    Each slice over the trailing `normalized_shape` axes is normalised with its own
    mean and biased variance: y = (x - mean) / sqrt(var + eps) * weight + bias, with
    weight and bias of `normalized_shape` (one value per element of the slice).

    Parameters
    ----------
    x : ndarray, shape ``(N, ..., *normalized_shape)``, float32 or float64
    normalized_shape : int or list of int
        The trailing axes normalised over.
    weight, bias : ndarray, shape normalized_shape, x's dtype, optional
        Element-wise scale and shift (default 1 and 0).
    eps : float > 0
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    mean, invstd : ndarray, shape x.shape[:-len(normalized_shape)], float64
        Each slice's mean and 1 / sqrt(var + eps), for `layer_norm_backward`.

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type, dtype or shape (x not ending in
        normalized_shape) or a non-finite or non-positive eps.
    """
    fn = "layer_norm"
    x = _x(x, fn, min_ndim=1)
    shape = _normalized_shape(normalized_shape, x, fn)
    weight = _param(weight, "weight", shape, fn, x.dtype, 1.0)
    bias = _param(bias, "bias", shape, fn, x.dtype, 0.0)
    eps = _eps(eps, fn)
    lead = x.shape[:x.ndim - len(shape)]
    shape3 = (math.prod(lead), math.prod(shape), 1)
    y = output_array(x.shape, x.dtype, fn, out=out, inputs=(x,))
    mean, _, invstd = _rows_forward(x.reshape(shape3), weight, bias, 1, eps, y.reshape(shape3))
    return y, mean.reshape(lead), invstd.reshape(lead)


def layer_norm_backward(grad_y, x, normalized_shape, weight, mean, invstd, need_grad_x=True, *,
                        out=None):
    """Gradients of `layer_norm` with respect to x, weight and bias.

    Parameters
    ----------
    grad_y : ndarray, x's shape and dtype
    x : ndarray, shape ``(N, ..., *normalized_shape)``
        The input of the forward call.
    normalized_shape : int or list of int
    weight : ndarray, shape normalized_shape, x's dtype, or None (1)
    mean, invstd : ndarray, shape x.shape[:-len(normalized_shape)]
        As returned by `layer_norm`.
    need_grad_x : bool
        False skips grad_x and returns None for it.
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, x's shape and dtype (None when need_grad_x is False)
    grad_weight, grad_bias : ndarray, shape normalized_shape, x's dtype
    """
    fn = "layer_norm_backward"
    need_grad_x = _flag(need_grad_x, "need_grad_x", fn)
    x = _x(x, fn, min_ndim=1)
    grad_y = _grad_y(grad_y, x, fn)
    shape = _normalized_shape(normalized_shape, x, fn)
    weight = _param(weight, "weight", shape, fn, x.dtype, 1.0)
    lead = x.shape[:x.ndim - len(shape)]
    mean = _stats(mean, "mean", lead, fn)
    invstd = _stats(invstd, "invstd", lead, fn)
    shape3 = (math.prod(lead), math.prod(shape), 1)
    grad_x = (output_array(x.shape, x.dtype, fn, "grad_x", out=out, inputs=(x, grad_y))
              if need_grad_x else None)
    x3 = x.reshape(shape3)
    gw, gb = _rows_backward(grad_y.reshape(shape3), x3, weight, 1, mean, invstd,
                            grad_x.reshape(shape3) if need_grad_x else _no_grad_x(x3))
    return grad_x, gw.reshape(shape).astype(x.dtype), gb.reshape(shape).astype(x.dtype)


# --- instance normalisation -----------------------------------------------------------------

def instance_norm(x, weight=None, bias=None, eps=1e-5, *, running_mean=None, running_var=None,
                  momentum=0.1, use_input_stats=True, out=None):
    """Instance normalisation, as torch.nn.functional.instance_norm.

    With use_input_stats (training, or no running statistics kept), each (sample,
    channel) plane is normalised with its own mean and biased variance, and the
    running statistics, when given, are updated in place with the batch averages:
    running_mean = (1 - momentum) * running_mean + momentum * mean over samples of
    the plane means, running_var likewise with the unbiased plane variances.
    Without, x is normalised with running_mean and running_var.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *)``, float32 or float64
        With use_input_stats, more than one value per plane (prod(*) > 1).
    weight, bias : ndarray, shape (C,), x's dtype, optional
        Per-channel scale and shift (default 1 and 0).
    eps : float > 0
    running_mean, running_var : ndarray, shape (C,), x's dtype, optional
        Both or neither; needed when use_input_stats is False.
    momentum : float in [0, 1]
    use_input_stats : bool
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    mean, invstd : ndarray, float64
        For `instance_norm_backward`: shape (N, C) with use_input_stats, else (C,)
        (the running statistics as used).

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type, dtype or shape, planes of one value with
        use_input_stats, or a non-finite or non-positive eps.
    """
    fn = "instance_norm"
    x = _x(x, fn)
    n, c = x.shape[:2]
    use_input_stats = _flag(use_input_stats, "use_input_stats", fn)
    weight = _param(weight, "weight", (c,), fn, x.dtype, 1.0)
    bias = _param(bias, "bias", (c,), fn, x.dtype, 0.0)
    eps = _eps(eps, fn)
    if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, numbers.Real) or not (
            0.0 <= momentum <= 1.0):
        raise ValueError(f"{fn}: momentum must be a number in [0, 1], got {momentum!r}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{fn}: give both running_mean and running_var, or neither")
    for name, r in (("running_mean", running_mean), ("running_var", running_var)):
        if r is not None:
            _param(r, name, (c,), fn, x.dtype, 0.0)
            if use_input_stats and not r.flags.writeable:
                raise ValueError(f"{fn}: {name} must be writeable (it is updated in place)")
    length = math.prod(x.shape[2:])
    y = output_array(x.shape, x.dtype, fn, out=out, inputs=(x,))
    if not use_input_stats:
        if running_mean is None:
            raise ValueError(f"{fn}: use_input_stats=False needs running_mean and running_var")
        mean = running_mean.astype(np.float64)
        invstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
        shape3 = (n, c, length)
        # the running statistics as K = C slots of one row per sample
        _kernels_affine(x.reshape(shape3), mean, invstd, weight, bias, y.reshape(shape3))
        return y, mean, invstd
    if length < 2:
        raise ValueError(f"{fn}: x has shape {x.shape}: normalising each plane with its own "
                         "statistics needs more than one value per plane")
    shape3 = (n * c, 1, length)
    mean, var, invstd = _rows_forward(x.reshape(shape3), weight, bias, c, eps, y.reshape(shape3))
    mean, var, invstd = mean.reshape(n, c), var.reshape(n, c), invstd.reshape(n, c)
    if running_mean is not None:
        # in float64, rounded once into the arrays' dtype
        running_mean[...] = ((1.0 - momentum) * running_mean.astype(np.float64)
                             + momentum * mean.mean(axis=0))
        running_var[...] = ((1.0 - momentum) * running_var.astype(np.float64)
                            + momentum * (length / (length - 1)) * var.mean(axis=0))
    return y, mean, invstd


def _kernels_affine(x3, mean, invstd, weight, bias, y3):
    """y = (x - mean[c]) * invstd[c] * weight[c] + bias[c] over (N, C, L): numpy, one pass
    per operand (eval-mode instance norm with running statistics, a rare path)."""
    col = (1, -1, 1)
    scale = (invstd * weight).astype(x3.dtype).reshape(col)
    np.subtract(x3, mean.astype(x3.dtype).reshape(col), out=y3)
    y3 *= scale
    y3 += bias.astype(x3.dtype).reshape(col)


def instance_norm_backward(grad_y, x, weight, mean, invstd, use_input_stats=True,
                           need_grad_x=True, *, out=None):
    """Gradients of `instance_norm` with respect to x, weight and bias.

    With use_input_stats the statistics depend on x (group norm's gradient with one
    channel per group); without, grad_x = grad_y * weight * invstd.

    Parameters
    ----------
    grad_y : ndarray, x's shape and dtype
    x : ndarray, shape ``(N, C, *)``
        The input of the forward call.
    weight : ndarray, shape (C,), x's dtype, or None (1)
    mean, invstd : ndarray
        As returned by `instance_norm`: (N, C) with use_input_stats, else (C,).
    use_input_stats, need_grad_x : bool
        As in the forward call; need_grad_x False skips grad_x (returned as None).
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, x's shape and dtype (None when need_grad_x is False)
    grad_weight, grad_bias : ndarray, shape (C,), x's dtype
    """
    fn = "instance_norm_backward"
    use_input_stats = _flag(use_input_stats, "use_input_stats", fn)
    need_grad_x = _flag(need_grad_x, "need_grad_x", fn)
    x = _x(x, fn)
    grad_y = _grad_y(grad_y, x, fn)
    n, c = x.shape[:2]
    length = math.prod(x.shape[2:])
    weight = _param(weight, "weight", (c,), fn, x.dtype, 1.0)
    grad_x = (output_array(x.shape, x.dtype, fn, "grad_x", out=out, inputs=(x, grad_y))
              if need_grad_x else None)
    if not use_input_stats:
        mean = _stats(mean, "mean", (c,), fn)
        invstd = _stats(invstd, "invstd", (c,), fn)
        col = (1, -1, 1)
        g3, x3 = grad_y.reshape(n, c, length), x.reshape(n, c, length)
        gb = g3.sum(axis=(0, 2), dtype=np.float64)
        gw = np.einsum("ncl,ncl->c", g3.astype(np.float64, copy=False),
                       x3.astype(np.float64, copy=False) - mean.reshape(col)) * invstd
        if need_grad_x:
            np.multiply(g3, (weight * invstd).astype(x.dtype).reshape(col),
                        out=grad_x.reshape(n, c, length))
        return grad_x, gw.astype(x.dtype), gb.astype(x.dtype)
    mean = _stats(mean, "mean", (n, c), fn)
    invstd = _stats(invstd, "invstd", (n, c), fn)
    shape3 = (n * c, 1, length)
    x3 = x.reshape(shape3)
    gw, gb = _rows_backward(grad_y.reshape(shape3), x3, weight, c, mean, invstd,
                            grad_x.reshape(shape3) if need_grad_x else _no_grad_x(x3))
    return grad_x, gw.astype(x.dtype), gb.astype(x.dtype)
