"""Batch normalisation (training, eval, backward) and ReLU, backed by cnnframe_ext.batchnorm.

Batch norm normalises over every axis but the channel axis 1: x of shape
(N, C), (N, C, L) or (N, C, H, W) is handled as its (N, C, L) view.  Semantics
follow torch.nn.functional.batch_norm: training uses the biased batch variance
to normalise and the unbiased one to update the running variance.
"""
import math

import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import (check_flag, check_float, contiguous, float_ndarray,
                                       output_array, same_dtype)
from cnnframe.functional._workspace import scratch
from cnnframe_ext import batchnorm as _kernels

# Work per element, in the units of threads_for: training forward reads a row twice
# for its statistics and once more for y; backward reads grad_y and x twice.
_TRAIN_WORK, _BACKWARD_WORK = 3, 4


def _batch(x, fn, name="x"):
    """Check x is a float (N, C, ...) array with C >= 1; return it C-contiguous and (N, C, L)."""
    x = float_ndarray(x, name, fn, min_ndim=2)
    if x.shape[1] < 1:
        raise ValueError(f"{fn}: {name} has shape {x.shape}: it needs at least one channel "
                         "on axis 1")
    x = contiguous(x)
    n, c = x.shape[:2]
    return x, (n, c, math.prod(x.shape[2:]))


def _like_x(a, name, x, fn):
    """Check `a` (grad_y, relu_y) has x's dtype and shape; return it C-contiguous."""
    same_dtype(float_ndarray(a, name, fn), name, x.dtype, fn, "x")
    if a.shape != x.shape:
        raise ValueError(f"{fn}: {name} must have x's shape {x.shape}, got {a.shape}")
    return contiguous(a)


def _per_channel(a, name, c, fn, dtype=None, default=None):
    """A (C,) float array (None -> `default`) as a float64 C-contiguous array."""
    if a is None and default is not None:
        return np.full(c, default, np.float64)
    a = float_ndarray(a, name, fn)
    if dtype is not None:
        same_dtype(a, name, dtype, fn, "x")
    if a.shape != (c,):
        raise ValueError(f"{fn}: {name} must have shape ({c},) (one value per channel of x), "
                         f"got {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64)


def batch_norm_train(x, weight=None, bias=None, eps=1e-5, *, running_mean=None,
                     running_var=None, momentum=0.1, relu=False, out=None):
    """Batch normalisation with the batch statistics, as in training.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with mean and the biased
    variance var of each channel over the N and spatial axes; with relu=True,
    max(y, 0) in the same pass (bit for bit relu(batch_norm_train(x)), one pass over
    memory fewer).

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *)``, float32 or float64
        At least two values per channel (N * prod(*) >= 2).
    weight, bias : ndarray, shape (C,), x's dtype, optional
        Per-channel scale and shift (default 1 and 0).
    eps : float > 0
    running_mean, running_var : ndarray, shape (C,), x's dtype, optional
        When given (both), updated in place: running = (1 - momentum) * running
        + momentum * batch statistic, with the unbiased variance var * m / (m - 1),
        m = N * prod(*), as PyTorch.
    momentum : float in [0, 1]
    relu : bool
        Apply ReLU to the output (give the output to `batch_norm_backward` as relu_y).
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    mean, invstd : ndarray, shape (C,), float64
        The batch mean and 1 / sqrt(var + eps), for `batch_norm_backward`.

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type, dtype or shape, with one value per
        channel only, or non-finite/non-positive eps.
    """
    fn = "batch_norm_train"
    given = dict(x=x, weight=weight, bias=bias, running_mean=running_mean,
                 running_var=running_var)
    x, (n, c, length) = _batch(x, fn)
    dtype = x.dtype
    weight = _per_channel(weight, "weight", c, fn, dtype, default=1.0)
    bias = _per_channel(bias, "bias", c, fn, dtype, default=0.0)
    eps = check_float(eps, "eps", 0.0, layer=fn, low_open=True)
    momentum = check_float(momentum, "momentum", 0.0, 1.0, layer=fn)
    relu = check_flag(relu, "relu", fn)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{fn}: give both running_mean and running_var, or neither")
    for name, r in (("running_mean", running_mean), ("running_var", running_var)):
        if r is not None:
            _per_channel(r, name, c, fn, dtype)
            if not r.flags.writeable:
                raise ValueError(f"{fn}: {name} must be writeable (it is updated in place)")
    m = n * length
    if m < 2:
        raise ValueError(f"{fn}: x has shape {x.shape}: training needs more than one value "
                         "per channel to compute a variance")
    # y is written before running_mean/var are updated, and weight and bias may be
    # read in place (float64): out may overlap none of them.
    y = output_array(x.shape, dtype, fn, out=out, inputs=given)
    mean, var, invstd = np.empty(c), np.empty(c), np.empty(c)
    threads = threads_for(_TRAIN_WORK * x.size, n * c)
    _kernels.batch_norm_train_forward(
        x.reshape(n, c, length), weight, bias, eps, y.reshape(n, c, length), mean, var, invstd,
        scratch("batch_norm_rows", np.float64, 2, n * c),
        scratch("batch_norm_channels", np.float64, threads, 3 * c), relu, threads)
    if running_mean is not None:
        # in float64, rounded once into the arrays' dtype
        running_mean[...] = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * mean
        running_var[...] = ((1.0 - momentum) * running_var.astype(np.float64)
                            + momentum * (m / (m - 1)) * var)
    return y, mean, invstd


def batch_norm_eval(x, weight, bias, running_mean, running_var, eps=1e-5, *, relu=False,
                    out=None):
    """Batch normalisation with fixed statistics, as in evaluation.

    y = (x - running_mean) * weight / sqrt(running_var + eps) + bias; with relu=True,
    max(y, 0) in the same pass.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *)``, float32 or float64
    weight, bias : ndarray, shape (C,), x's dtype, or None (1 and 0)
    running_mean, running_var : ndarray, shape (C,), x's dtype
    eps : float > 0
    relu : bool
        Apply ReLU to the output.
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
        For `batch_norm_backward` (training=False) pass mean = running_mean and
        invstd = 1 / sqrt(running_var + eps).
    """
    fn = "batch_norm_eval"
    given = dict(x=x, weight=weight, bias=bias, running_mean=running_mean,
                 running_var=running_var)
    x, (n, c, length) = _batch(x, fn)
    dtype = x.dtype
    weight = _per_channel(weight, "weight", c, fn, dtype, default=1.0)
    bias = _per_channel(bias, "bias", c, fn, dtype, default=0.0)
    mean = _per_channel(running_mean, "running_mean", c, fn, dtype)
    var = _per_channel(running_var, "running_var", c, fn, dtype)
    eps = check_float(eps, "eps", 0.0, layer=fn, low_open=True)
    relu = check_flag(relu, "relu", fn)
    y = output_array(x.shape, dtype, fn, out=out, inputs=given)
    return batch_norm_affine_into(x, mean, weight / np.sqrt(var + eps), bias, relu, y)


def batch_norm_affine_into(x, mean, scale, bias, relu, y):
    """batch_norm_eval's kernel call on checked arguments: y = (x - mean) * scale + bias
    per channel (then max(y, 0) if relu), x and y C-contiguous (N, C, *) of one float
    dtype, mean, scale and bias (C,) float64.  For layers that have checked them (no
    per-call validation).  Returns y."""
    if y.size:
        n, c = x.shape[:2]
        _kernels.batch_norm_affine(x.reshape(n, c, -1), mean, scale, bias, y.reshape(n, c, -1),
                                   relu, threads_for(x.size, n * c))
    return y


def batch_norm_backward(grad_y, x, weight, mean, invstd, training=True, need_grad_x=True, *,
                        relu_y=None, out=None):
    """Gradients of batch normalisation with respect to x, weight and bias.

    With xhat = (x - mean) * invstd and m = N * prod(*) values per channel:
    grad_bias = sum(grad_y), grad_weight = sum(grad_y * xhat) over each channel;
    in training (batch statistics, which depend on x)
    grad_x = weight * invstd * (grad_y - grad_bias / m - xhat * grad_weight / m),
    in evaluation (constants) grad_x = weight * invstd * grad_y.

    Parameters
    ----------
    grad_y : ndarray, shape ``(N, C, *)``, x's dtype
    x : ndarray, shape ``(N, C, *)``, float32 or float64
        The input of the forward call.
    weight : ndarray, shape (C,), x's dtype, or None (1)
    mean, invstd : ndarray, shape (C,), float32 or float64
        As returned by `batch_norm_train`; for evaluation, running_mean and
        1 / sqrt(running_var + eps).
    training : bool
        Whether the forward call used the batch statistics.
    need_grad_x : bool
        False skips grad_x and returns None for it.
    relu_y : ndarray, x's shape and dtype, optional
        The output of a forward call with relu=True.  grad_y is then the gradient of
        that output, and ReLU's gradient (grad_y where relu_y > 0, else 0) is taken in
        the same passes: bit for bit batch_norm_backward(relu_backward(grad_y, relu_y), ...).
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, x's shape and dtype (None when need_grad_x is False)
    grad_weight, grad_bias : ndarray, shape (C,), x's dtype
    """
    fn = "batch_norm_backward"
    training = check_flag(training, "training", fn)
    need_grad_x = check_flag(need_grad_x, "need_grad_x", fn)
    given = dict(grad_y=grad_y, x=x, weight=weight, mean=mean, invstd=invstd, relu_y=relu_y)
    x, (n, c, length) = _batch(x, fn)
    grad_y = _like_x(grad_y, "grad_y", x, fn)
    if relu_y is not None:
        relu_y = _like_x(relu_y, "relu_y", x, fn)
    weight = _per_channel(weight, "weight", c, fn, x.dtype, default=1.0)
    mean = _per_channel(mean, "mean", c, fn)
    invstd = _per_channel(invstd, "invstd", c, fn)
    grad_x = (output_array(x.shape, x.dtype, fn, "grad_x", out=out, inputs=given)
              if need_grad_x else None)
    grad_weight, grad_bias = np.zeros(c), np.zeros(c)
    if x.size:
        threads = threads_for(_BACKWARD_WORK * x.size, n * c)
        _kernels.batch_norm_backward(
            grad_y.reshape(n, c, length), x.reshape(n, c, length),
            (np.empty((0, 0, 0), x.dtype) if relu_y is None else relu_y.reshape(n, c, length)),
            weight, mean, invstd,
            grad_weight, grad_bias,
            (grad_x.reshape(n, c, length) if need_grad_x else np.empty((0, 0, 0), x.dtype)),
            scratch("batch_norm_rows", np.float64, 2, n * c),
            scratch("batch_norm_channels", np.float64, threads, 5 * c),
            training, need_grad_x, threads)
    return grad_x, grad_weight.astype(x.dtype), grad_bias.astype(x.dtype)


def relu(x, *, out=None):
    """Rectified linear unit max(x, 0), element-wise, as numpy.maximum(x, 0).

    NaN propagates; -0.0 becomes 0.0.

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, x's shape and dtype
    """
    x = contiguous(float_ndarray(x, "x", "relu")).reshape(x.shape)  # (0-d stays 0-d)
    return relu_into(x, output_array(x.shape, x.dtype, "relu", out=out, inputs=(x,)))


def relu_into(x, y):
    """relu's kernel call on checked arguments: x and y C-contiguous, of one shape and
    float dtype, not overlapping.  For layers that have checked them (no per-call
    validation).  Returns y."""
    if x.size:
        _kernels.relu_forward(x.reshape(-1), y.reshape(-1),
                              threads_for(x.size, x.size // 16384 + 1))
    return y


def relu_backward(grad_y, y, *, out=None):
    """Gradient of `relu`, from its output: grad_y where y > 0, else 0.

    y > 0 exactly where x > 0 (a NaN input gives a NaN output and gradient 0).

    Parameters
    ----------
    grad_y : ndarray, y's shape and dtype
    y : ndarray, float32 or float64
        The output of the forward call.
    out : ndarray, optional
        C-contiguous array of y's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, y's shape and dtype
    """
    fn = "relu_backward"
    y = float_ndarray(y, "y", fn)
    same_dtype(float_ndarray(grad_y, "grad_y", fn), "grad_y", y.dtype.newbyteorder("="), fn, "y")
    if grad_y.shape != y.shape:
        raise ValueError(f"{fn}: grad_y must have y's shape {y.shape}, got {grad_y.shape}")
    y, grad_y = contiguous(y).reshape(y.shape), contiguous(grad_y).reshape(y.shape)
    grad_x = output_array(y.shape, y.dtype, fn, "grad_x", out=out, inputs=(y, grad_y))
    if y.size:
        _kernels.relu_backward(grad_y.reshape(-1), y.reshape(-1), grad_x.reshape(-1),
                               threads_for(y.size, y.size // 16384 + 1))
    return grad_x
