"""Batch normalisation (vectorised numpy, in place into reused buffers)."""
import math

import numpy as np

from cnnframe.layers.base import Layer, as_shape, check_float, check_int
from cnnframe.registry import register_layer


class _BatchNorm(Layer):
    """Shared batch norm over every axis but the channel axis 1."""

    _ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        name = self.type_name
        self.num_features = check_int(num_features, "num_features", 1, name)
        self.eps = check_float(eps, "eps", 0.0, layer=name)
        if self.eps <= 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps}")
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, name)
        c = self.num_features
        self.add_param("weight", np.ones(c))
        self.add_param("bias", np.zeros(c))
        self.add_buffer("running_mean", np.zeros(c))
        self.add_buffer("running_var", np.ones(c))
        self._cache = None

    def reset_parameters(self, seed=None):
        self.params["weight"].fill(1)
        self.params["bias"].fill(0)
        self.buffers["running_mean"].fill(0)
        self.buffers["running_var"].fill(1)

    def _bshape(self, ndim):
        return (self.num_features,) + (1,) * (ndim - 2)

    def _axes(self, ndim):
        return (0,) + tuple(range(2, ndim))

    def _channel_sum(self, a):
        """Sum over every axis but 1, as a fresh (C,) array."""
        if a.ndim == 2:
            return a.sum(axis=0)
        n, c = a.shape[:2]
        return a.reshape(n, c, -1).sum(axis=2).sum(axis=0)

    def _channel_dot(self, a, b):
        """sum over every axis but 1 of a * b."""
        if a.ndim == 2:
            return np.einsum("nc,nc->c", a, b)
        n, c = a.shape[:2]
        return np.einsum("ncl,ncl->c", a.reshape(n, c, -1), b.reshape(n, c, -1))

    def forward(self, x, training=True):
        self._check_input(x, self._ndims)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self.type_name}: expects {self.num_features} channels on axis 1, "
                             f"got shape {x.shape}")
        x = np.ascontiguousarray(x)
        bshape = self._bshape(x.ndim)
        dt = x.dtype.type
        m = x.size // self.num_features
        w, b = self.params["weight"], self.params["bias"]
        y = self._buffer("y", x.shape)
        if training:
            if m < 2:
                raise ValueError(f"{self.type_name}: training needs more than one value per "
                                 f"channel to compute a variance, got input shape {x.shape}")
            mean = self._channel_sum(x) / dt(m)
            xc = self._buffer("xc", x.shape)  # x - mean, kept for backward
            np.subtract(x, mean.reshape(bshape), out=xc)
            var = self._channel_dot(xc, xc) / dt(m)
            invstd = 1.0 / np.sqrt(var + dt(self.eps))
            np.multiply(xc, (w * invstd).reshape(bshape), out=y)
            y += b.reshape(bshape)
            mom = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm *= dt(1.0 - mom)
            rm += dt(mom) * mean
            rv *= dt(1.0 - mom)
            rv += dt(mom * m / (m - 1)) * var  # unbiased, as PyTorch
            self._cache = (xc, invstd, None)
        else:
            # Running statistics are constants: y = x * scale + shift, two passes.
            rm = self.buffers["running_mean"].copy()
            invstd = 1.0 / np.sqrt(self.buffers["running_var"] + dt(self.eps))
            scale = w * invstd
            np.multiply(x, scale.reshape(bshape), out=y)
            y += (b - rm * scale).reshape(bshape)
            self._cache = (x, invstd, rm)
        return y

    def backward(self, grad_y):
        if self._cache is None:
            raise RuntimeError(f"{self.type_name}: backward called before forward")
        xc, invstd, running_mean = self._cache
        g = np.ascontiguousarray(grad_y)
        bshape = self._bshape(g.ndim)
        dt = g.dtype.type
        gb = self._channel_sum(g)
        if running_mean is None:  # training: xc = x - batch mean
            gw = self._channel_dot(g, xc) * invstd
        else:  # eval: xc is x; xhat = (x - running_mean) * invstd
            gw = (self._channel_dot(g, xc) - running_mean * gb) * invstd
        np.copyto(self.grads["bias"], gb)
        np.copyto(self.grads["weight"], gw)
        if not self.needs_input_grad:
            return None
        gx = self._buffer("gx", g.shape)
        scale = (self.params["weight"] * invstd).reshape(bshape)
        if running_mean is None:
            # gx = w * invstd * (g - mean(g) - xhat * mean(g * xhat)), xhat = xc * invstd
            m = g.size // self.num_features
            np.multiply(xc, (gw * invstd / dt(-m)).reshape(bshape), out=gx)
            gx += g
            gx -= (gb / dt(m)).reshape(bshape)
            gx *= scale
        else:
            np.multiply(g, scale, out=gx)
        return gx

    def flops(self, input_shape):
        return 2 * math.prod(as_shape(input_shape))


@register_layer("batch_norm2d")
class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, H, W) per channel, as torch.nn.BatchNorm2d.

    Training normalises with the batch statistics and updates the running
    statistics: running = (1 - momentum) * running + momentum * batch (the
    running variance uses the unbiased batch variance); eval mode normalises
    with the running statistics.

    Args:
        num_features: channels C.
        eps: added to the variance (default 1e-5).
        momentum: running-statistics update factor in [0, 1] (default 0.1).

    Params: weight (C,) = 1, bias (C,) = 0.  Buffers: running_mean (C,) = 0, running_var (C,) = 1.

    Input shape: (N, C, H, W).  Output shape: same.
    """

    _ndims = 4

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="batch_norm2d")
        if len(shape) != 3 or shape[0] != self.num_features:
            raise ValueError(f"batch_norm2d: expects input shape (num_features="
                             f"{self.num_features}, H, W), got {list(shape)}")
        return shape


@register_layer("batch_norm1d")
class BatchNorm1d(_BatchNorm):
    """Batch normalisation over N (and L) per feature, as torch.nn.BatchNorm1d.

    Args, params and buffers as batch_norm2d.

    Input shape: (N, C) or (N, C, L).  Output shape: same.
    """

    _ndims = (2, 3)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="batch_norm1d")
        if len(shape) not in (1, 2) or shape[0] != self.num_features:
            raise ValueError(f"batch_norm1d: expects input shape [num_features="
                             f"{self.num_features}] or [num_features, L], got {list(shape)}")
        return shape
