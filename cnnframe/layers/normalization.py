"""Batch normalisation over the Cython kernels, writing into reused buffers."""
import math

import numpy as np

import cnnframe.functional as F
from cnnframe.functional.normalization import batch_norm_affine_into
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
        # Set by a Model when a ReLU is this layer's only consumer: forward returns
        # max(y, 0) and backward takes grad_y as that output's gradient.
        self.fused_relu = False

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

    def _output_buffer(self, key, x, *inputs):
        """A reused buffer for a result of x's shape that overlaps none of x, *inputs."""
        buf = self._buffer(key, x.shape)
        if any(np.may_share_memory(buf, a) for a in (x, *inputs)):
            return np.empty(x.shape, self.dtype)
        return buf

    # The kernels (cnnframe.functional.normalization) work on (N, C, L) views of x, so
    # (N, C), (N, C, L) and (N, C, H, W) inputs share one path.  Backward keeps a
    # reference to the forward input instead of a copy of x - mean (layers never modify
    # their inputs, and the conv layers keep theirs the same way).
    def forward(self, x, training=True):
        self._check_channels(x)
        x = np.ascontiguousarray(x)
        w, b = self.params["weight"], self.params["bias"]
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        out = self._output_buffer("y", x)
        if training:
            if x.size // x.shape[1] < 2:
                raise ValueError(f"{self.type_name}: training needs more than one value per "
                                 f"channel to compute a variance, got input shape {x.shape}")
            y, mean, invstd = F.batch_norm_train(x, w, b, self.eps, running_mean=rm,
                                                 running_var=rv, momentum=self.momentum,
                                                 relu=self.fused_relu, out=out)
        else:
            y, mean, invstd = self._eval(x, out)
        self._cache = (x, mean, invstd, training, y if self.fused_relu else None)
        return y

    def _eval(self, x, out):
        """Inference: F.batch_norm_eval(x, ..., relu=fused_relu, out=out) and the running
        statistics as used now (float64 mean and invstd, for a backward; a later training
        step changes the buffers).

        The same kernel call with the same arguments as F.batch_norm_eval (bit for bit its
        results), without its argument checks: forward has checked x (dtype, shape,
        channels, C-contiguous) and out, and the parameters are the layer's own, so small
        inputs (one image) pay no per-call validation.
        """
        # one float64 copy of the per-channel values; then root = sqrt(var + eps) and
        # scale = weight / root in place (the same float64 operations as the functional op)
        weight, bias, mean, root = np.array(
            (self.params["weight"], self.params["bias"], self.buffers["running_mean"],
             self.buffers["running_var"]), np.float64)
        np.add(root, self.eps, out=root)
        np.sqrt(root, out=root)
        scale = np.divide(weight, root, out=weight)
        batch_norm_affine_into(x, mean, scale, bias, self.fused_relu, out)
        return out, mean, 1.0 / root

    def backward(self, grad_y):
        x, mean, invstd, training, relu_y = self._cache
        out = self._output_buffer("gx", x, grad_y) if self.needs_input_grad else None
        gx, gw, gb = F.batch_norm_backward(grad_y, x, self.params["weight"], mean, invstd,
                                           training, self.needs_input_grad, relu_y=relu_y,
                                           out=out)
        np.copyto(self.grads["bias"], gb)
        np.copyto(self.grads["weight"], gw)
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
