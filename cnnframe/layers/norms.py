"""Per-sample normalisation: group, layer and instance norm (cnnframe.functional.norms kernels).

Unlike batch norm, each sample is normalised with statistics of its own values, so
the output does not depend on the rest of the batch (batch size 1 works in
training) and training and eval compute the same thing (except instance norm
with running statistics).
"""
import math

import numpy as np

from cnnframe.functional import norms as FN
from cnnframe.layers.base import Layer, as_shape, check_float, check_int
from cnnframe.registry import register_layer


def _check_bool(value, name, layer):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{layer}: {name} must be true or false, got {value!r}")
    return bool(value)


def _check_eps(eps, layer):
    eps = check_float(eps, "eps", 0.0, layer=layer)
    if eps <= 0:
        raise ValueError(f"{layer}: eps must be > 0, got {eps}")
    return eps


class _Norm(Layer):
    """Shared parts: reused output buffers that never overlap the inputs."""

    def _output_buffer(self, key, x, *inputs):
        buf = self._buffer(key, x.shape, x.dtype)
        if any(np.may_share_memory(buf, a) for a in (x, *inputs)):
            return np.empty(x.shape, x.dtype)
        return buf

    def _grad_buffer(self, x, grad_y):
        return self._output_buffer("gx", x, grad_y) if self.needs_input_grad else None

    def _store_grads(self, gw, gb):
        if "weight" in self.grads:
            np.copyto(self.grads["weight"], gw)
        if "bias" in self.grads:
            np.copyto(self.grads["bias"], gb)

    def flops(self, input_shape):
        return 5 * math.prod(as_shape(input_shape))


@register_layer("group_norm")
class GroupNorm(_Norm):
    """Group normalisation, as torch.nn.GroupNorm.

    The channels are split into `num_groups` groups of consecutive channels, and
    each (sample, group) is normalised with the mean and biased variance of its
    values (its channels at every position): y = (x - mean) / sqrt(var + eps) *
    weight[c] + bias[c].  Training and eval compute the same; the batch size does
    not matter.  num_groups = 1 normalises each sample over (C, H, W) (a layer norm
    with per-channel affine), num_groups = C each channel (instance norm).

    Args:
        num_groups: number of groups; divides num_channels.
        num_channels: channels C of the input.
        eps: added to the variance (default 1e-5).
        affine: whether to learn the per-channel weight and bias (default true).

    Params (when affine): weight (C,) = 1, bias (C,) = 0.

    Input shape: ``(N, C, *)``.  Output shape: same.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__()
        name = "group_norm"
        self.num_groups = check_int(num_groups, "num_groups", 1, name)
        self.num_channels = check_int(num_channels, "num_channels", 1, name)
        if self.num_channels % self.num_groups:
            raise ValueError(f"group_norm: num_groups ({self.num_groups}) must divide "
                             f"num_channels ({self.num_channels})")
        self.eps = _check_eps(eps, name)
        self.affine = _check_bool(affine, "affine", name)
        if self.affine:
            self.add_param("weight", np.ones(self.num_channels))
            self.add_param("bias", np.zeros(self.num_channels))
        self._cache = None

    def reset_parameters(self, seed=None):
        if self.affine:
            self.params["weight"].fill(1)
            self.params["bias"].fill(0)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="group_norm")
        if len(shape) < 1 or shape[0] != self.num_channels:
            raise ValueError(f"group_norm: expects input shape (num_channels="
                             f"{self.num_channels}, ...), got {list(shape)}")
        return shape

    def forward(self, x, training=True):
        self._check_input(x)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"group_norm: expects x of shape (N, {self.num_channels}, ...), got "
                             f"shape {x.shape}")
        x = np.ascontiguousarray(x)
        y, mean, invstd = FN.group_norm(x, self.num_groups, self.params.get("weight"),
                                        self.params.get("bias"), self.eps,
                                        out=self._output_buffer("y", x))
        self._cache = (x, mean, invstd)
        return y

    def backward(self, grad_y):
        x, mean, invstd = self._cache
        gx, gw, gb = FN.group_norm_backward(grad_y, x, self.num_groups, self.params.get("weight"),
                                            mean, invstd, self.needs_input_grad,
                                            out=self._grad_buffer(x, grad_y))
        self._store_grads(gw, gb)
        return gx


@register_layer("layer_norm")
class LayerNorm(_Norm):
    """Layer normalisation, as torch.nn.LayerNorm.

    Each sample's slice over the trailing `normalized_shape` axes is normalised
    with its own mean and biased variance: y = (x - mean) / sqrt(var + eps) *
    weight + bias, weight and bias holding one value per element of the slice.
    For (N, C, H, W) images, normalized_shape = [C, H, W] normalises each sample
    as a whole.  Training and eval compute the same.

    Args:
        normalized_shape: int or list of ints: the trailing axes (without the batch).
        eps: added to the variance (default 1e-5).
        elementwise_affine: whether to learn weight (and bias) (default true).
        bias: whether the affine part has a bias (default true; as PyTorch's ``bias``).

    Params (when elementwise_affine): weight (normalized_shape) = 1, bias
    (normalized_shape) = 0.

    Input shape: ``(N, ..., *normalized_shape)``.  Output shape: same.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        name = "layer_norm"
        if isinstance(normalized_shape, (list, tuple)):
            if not normalized_shape:
                raise ValueError("layer_norm: normalized_shape must not be empty")
            self._shape = tuple(check_int(s, "normalized_shape", 1, name)
                                for s in normalized_shape)
            self.normalized_shape = list(self._shape)
        else:
            self.normalized_shape = check_int(normalized_shape, "normalized_shape", 1, name)
            self._shape = (self.normalized_shape,)
        self.eps = _check_eps(eps, name)
        self.elementwise_affine = _check_bool(elementwise_affine, "elementwise_affine", name)
        self.bias = _check_bool(bias, "bias", name)
        if self.elementwise_affine:
            self.add_param("weight", np.ones(self._shape))
            if self.bias:
                self.add_param("bias", np.zeros(self._shape))
        self._cache = None

    def reset_parameters(self, seed=None):
        if "weight" in self.params:
            self.params["weight"].fill(1)
        if "bias" in self.params:
            self.params["bias"].fill(0)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="layer_norm")
        k = len(self._shape)
        if len(shape) < k or shape[len(shape) - k:] != self._shape:
            raise ValueError(f"layer_norm: expects an input shape ending in normalized_shape "
                             f"{list(self._shape)}, got {list(shape)}")
        return shape

    def forward(self, x, training=True):
        self._check_input(x)
        k = len(self._shape)
        if x.ndim < k + 1 or x.shape[x.ndim - k:] != self._shape:
            raise ValueError(f"layer_norm: expects x of shape (N, ..., "
                             f"{', '.join(map(str, self._shape))}), got shape {x.shape}")
        x = np.ascontiguousarray(x)
        y, mean, invstd = FN.layer_norm(x, self._shape, self.params.get("weight"),
                                        self.params.get("bias"), self.eps,
                                        out=self._output_buffer("y", x))
        self._cache = (x, mean, invstd)
        return y

    def backward(self, grad_y):
        x, mean, invstd = self._cache
        gx, gw, gb = FN.layer_norm_backward(grad_y, x, self._shape, self.params.get("weight"),
                                            mean, invstd, self.needs_input_grad,
                                            out=self._grad_buffer(x, grad_y))
        self._store_grads(gw, gb)
        return gx


@register_layer("instance_norm2d")
class InstanceNorm2d(_Norm):
    """Instance normalisation, as torch.nn.InstanceNorm2d.

    Each (sample, channel) plane is normalised with the mean and biased variance of
    its own H x W values: y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c].
    With track_running_stats, training also updates running_mean and running_var
    (running = (1 - momentum) * running + momentum * the batch average of the plane
    statistics, the variance unbiased) and eval normalises with them; without, eval
    uses each plane's own statistics, as training does.

    Args:
        num_features: channels C.
        eps: added to the variance (default 1e-5).
        momentum: running-statistics update factor in [0, 1] (default 0.1).
        affine: whether to learn a per-channel weight and bias (default false).
        track_running_stats: keep running statistics for eval (default false).

    Params (when affine): weight (C,) = 1, bias (C,) = 0.
    Buffers (when track_running_stats): running_mean (C,) = 0, running_var (C,) = 1.

    Input shape: (N, C, H, W), with H * W > 1 where the plane statistics are used.
    Output shape: same.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False):
        super().__init__()
        name = "instance_norm2d"
        self.num_features = check_int(num_features, "num_features", 1, name)
        self.eps = _check_eps(eps, name)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, name)
        self.affine = _check_bool(affine, "affine", name)
        self.track_running_stats = _check_bool(track_running_stats, "track_running_stats", name)
        c = self.num_features
        if self.affine:
            self.add_param("weight", np.ones(c))
            self.add_param("bias", np.zeros(c))
        if self.track_running_stats:
            self.add_buffer("running_mean", np.zeros(c))
            self.add_buffer("running_var", np.ones(c))
        self._cache = None

    def reset_parameters(self, seed=None):
        if self.affine:
            self.params["weight"].fill(1)
            self.params["bias"].fill(0)
        if self.track_running_stats:
            self.buffers["running_mean"].fill(0)
            self.buffers["running_var"].fill(1)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="instance_norm2d")
        if len(shape) != 3 or shape[0] != self.num_features:
            raise ValueError(f"instance_norm2d: expects input shape (num_features="
                             f"{self.num_features}, H, W), got {list(shape)}")
        return shape

    def forward(self, x, training=True):
        self._check_input(x, 4)
        if x.shape[1] != self.num_features:
            raise ValueError(f"instance_norm2d: expects {self.num_features} channels on axis 1, "
                             f"got shape {x.shape}")
        if self.track_running_stats and x.dtype != self.dtype:
            raise TypeError(f"instance_norm2d: x is {x.dtype} but the layer's running statistics "
                            f"are {self.dtype}; convert the input or call .astype({x.dtype.name})")
        x = np.ascontiguousarray(x)
        use_input_stats = training or not self.track_running_stats
        if use_input_stats and x.shape[2] * x.shape[3] < 2:
            raise ValueError(f"instance_norm2d: x has shape {x.shape}: normalising each plane "
                             "with its own statistics needs more than one value per plane "
                             "(H * W > 1)")
        # with running statistics: updated in training, used in eval
        y, mean, invstd = FN.instance_norm(
            x, self.params.get("weight"), self.params.get("bias"), self.eps,
            running_mean=self.buffers.get("running_mean"),
            running_var=self.buffers.get("running_var"), momentum=self.momentum,
            use_input_stats=use_input_stats, out=self._output_buffer("y", x))
        self._cache = (x, mean, invstd, use_input_stats)
        return y

    def backward(self, grad_y):
        x, mean, invstd, use_input_stats = self._cache
        gx, gw, gb = FN.instance_norm_backward(grad_y, x, self.params.get("weight"), mean, invstd,
                                               use_input_stats, self.needs_input_grad,
                                               out=self._grad_buffer(x, grad_y))
        self._store_grads(gw, gb)
        return gx
