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

    def _check_channels(self, x):
        self._check_input(x, self._ndims)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self.type_name}: expects {self.num_features} channels on axis 1, "
                             f"got shape {x.shape}")

    def _per_channel(self, key, values, length):
        """`values` (C,) as a (C, length) array that broadcasts over (N, C, length) views.

        numpy's loops broadcast a (C, 1) column over rows of `length` one row at a time
        (about twice as slow as a same-shape operand); a filled (C, length) block - a few
        hundred KiB, reused - lets each sample be one contiguous inner loop.
        """
        if length == 1:
            return values[:, None]
        block = self._buffer(key, (values.size, length))
        np.copyto(block, values[:, None])
        return block

    # Every pass works on (N, C, L) views of the contiguous arrays; per-sample partial sums
    # (N, C) are summed over N afterwards (axis 2 is summed pairwise, as ndarray.sum does).
    def forward(self, x, training=True):
        self._check_channels(x)
        x = np.ascontiguousarray(x)
        n, c = x.shape[:2]
        dt = x.dtype.type
        m = x.size // c
        x3 = x.reshape(n, c, -1)
        length = x3.shape[2]
        y3 = self._buffer("y", x.shape).reshape(x3.shape)
        w, b = self.params["weight"], self.params["bias"]
        if training:
            if m < 2:
                raise ValueError(f"{self.type_name}: training needs more than one value per "
                                 f"channel to compute a variance, got input shape {x.shape}")
            part = self._buffer("part", (n, c))
            mean = np.add.reduce(x3, axis=2, out=part).sum(axis=0) / dt(m)
            xc3 = self._buffer("xc", x.shape).reshape(x3.shape)  # x - mean, kept for backward
            np.subtract(x3, self._per_channel("row", mean, length), out=xc3)
            var = np.einsum("ncl,ncl->nc", xc3, xc3, out=part).sum(axis=0) / dt(m)
            invstd = dt(1) / np.sqrt(var + dt(self.eps))
            np.multiply(xc3, self._per_channel("row", w * invstd, length), out=y3)
            y3 += self._per_channel("row", b, length)
            mom = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm *= dt(1.0 - mom)
            rm += dt(mom) * mean
            rv *= dt(1.0 - mom)
            rv += dt(mom * m / (m - 1)) * var  # unbiased, as PyTorch
            self._cache = (xc3, invstd, None, x.shape)
        else:
            # Running statistics are constants: y = x * scale + shift, two passes.
            rm = self.buffers["running_mean"].copy()
            invstd = dt(1) / np.sqrt(self.buffers["running_var"] + dt(self.eps))
            scale = w * invstd
            np.multiply(x3, self._per_channel("row", scale, length), out=y3)
            y3 += self._per_channel("row", b - rm * scale, length)
            self._cache = (x3, invstd, rm, x.shape)
        return y3.reshape(x.shape)

    def backward(self, grad_y):
        if self._cache is None:
            raise RuntimeError(f"{self.type_name}: backward called before forward")
        xc3, invstd, running_mean, shape = self._cache
        g3 = np.ascontiguousarray(grad_y).reshape(xc3.shape)
        n, c, length = g3.shape
        dt = g3.dtype.type
        m = g3.size // c
        part = self._buffer("part", (n, c))
        gb = np.add.reduce(g3, axis=2, out=part).sum(axis=0)
        dot = np.einsum("ncl,ncl->nc", g3, xc3, out=part).sum(axis=0)
        if running_mean is None:  # training: xc = x - batch mean
            gw = dot * invstd
        else:  # eval: xc is x; xhat = (x - running_mean) * invstd
            gw = (dot - running_mean * gb) * invstd
        np.copyto(self.grads["bias"], gb)
        np.copyto(self.grads["weight"], gw)
        if not self.needs_input_grad:
            return None
        gx3 = self._buffer("gx", shape).reshape(g3.shape)
        scale = self.params["weight"] * invstd
        if running_mean is None:
            # gx = w * invstd * (g - mean(g) - xhat * mean(g * xhat)), xhat = xc * invstd
            np.multiply(xc3, self._per_channel("row", gw * invstd / dt(-m), length), out=gx3)
            gx3 += g3
            gx3 += self._per_channel("row", gb / dt(-m), length)
            gx3 *= self._per_channel("row", scale, length)
        else:
            np.multiply(g3, self._per_channel("row", scale, length), out=gx3)
        return gx3.reshape(shape)

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
