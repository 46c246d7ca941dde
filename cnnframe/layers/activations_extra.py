"""GELU, SiLU, Hardswish, ELU (cnnframe_ext.activation kernels) and PReLU.

Backward recomputes the derivative from the forward input, which the layer keeps
a reference to (layers never modify their inputs).
"""
import math

import numpy as np

from cnnframe.functional import activations as FA
from cnnframe.layers.base import Layer, as_shape, check_float, check_int
from cnnframe.registry import register_layer


class _Pointwise(Layer):
    """An activation computed by a forward/backward pair of cnnframe.functional.activations."""

    def __init__(self):
        super().__init__()
        self._x = None

    def forward(self, x, training=True):
        self._check_input(x)
        self._x = x
        return self._forward(x, out=self._buffer_for("y", x))

    def backward(self, grad_y):
        return self._backward(grad_y, self._x, out=self._buffer_for("gx", self._x, grad_y))

    def _buffer_for(self, key, x, *more):
        """A reused buffer of x's shape and dtype that overlaps none of x, *more (a layer
        fed its own output back gets a fresh array)."""
        buf = self._buffer(key, x.shape, x.dtype)
        if any(np.may_share_memory(buf, a) for a in (x, *more)):
            return np.empty(x.shape, x.dtype)
        return buf

    def flops(self, input_shape):
        return math.prod(as_shape(input_shape))


@register_layer("gelu")
class GELU(_Pointwise):
    """Gaussian error linear unit, as torch.nn.GELU.

    approximate="none": y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)));
    approximate="tanh": y = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).

    Args:
        approximate: "none" (default) or "tanh".

    Input shape: any.  Output shape: same as input.
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _forward(self, x, out):
        return FA.gelu(x, self.approximate, out=out)

    def _backward(self, grad_y, x, out):
        return FA.gelu_backward(grad_y, x, self.approximate, out=out)


@register_layer("silu")
class SiLU(_Pointwise):
    """Sigmoid linear unit (swish), y = x * sigmoid(x), as torch.nn.SiLU.

    Input shape: any.  Output shape: same as input.
    """

    def _forward(self, x, out):
        return FA.silu(x, out=out)

    def _backward(self, grad_y, x, out):
        return FA.silu_backward(grad_y, x, out=out)


@register_layer("hardswish")
class Hardswish(_Pointwise):
    """Hardswish, y = x * min(max(x + 3, 0), 6) / 6, as torch.nn.Hardswish (MobileNetV3).

    Input shape: any.  Output shape: same as input.
    """

    def _forward(self, x, out):
        return FA.hardswish(x, out=out)

    def _backward(self, grad_y, x, out):
        return FA.hardswish_backward(grad_y, x, out=out)


@register_layer("elu")
class ELU(_Pointwise):
    """Exponential linear unit, y = x if x > 0 else alpha (exp(x) - 1), as torch.nn.ELU.

    Args:
        alpha: the scale of the negative part (default 1.0).

    Input shape: any.  Output shape: same as input.
    """

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_float(alpha, "alpha", layer="elu")

    def _forward(self, x, out):
        return FA.elu(x, self.alpha, out=out)

    def _backward(self, grad_y, x, out):
        return FA.elu_backward(grad_y, x, self.alpha, out=out)


@register_layer("prelu")
class PReLU(_Pointwise):
    """Parametric ReLU, y = x if x > 0 else weight * x, as torch.nn.PReLU.

    Args:
        num_parameters: 1 (one slope shared by every channel, the default) or the
            number of channels C (one slope per channel, on axis 1).
        init: the initial slope (default 0.25).

    Params: weight (num_parameters,) = init.

    Input shape: any when num_parameters is 1, else (C, ...).  Output shape: same.
    """

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.num_parameters = check_int(num_parameters, "num_parameters", 1, "prelu")
        self.init = check_float(init, "init", layer="prelu")
        self.add_param("weight", np.full(self.num_parameters, self.init))

    def reset_parameters(self, seed=None):
        self.params["weight"].fill(self.init)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="prelu")
        if self.num_parameters > 1 and (len(shape) < 1 or shape[0] != self.num_parameters):
            raise ValueError(f"prelu: num_parameters={self.num_parameters} expects input shape "
                             f"({self.num_parameters}, ...) (one slope per channel), got "
                             f"{list(shape)}")
        return shape

    def forward(self, x, training=True):
        self._check_input(x)
        if self.num_parameters > 1 and (x.ndim < 2 or x.shape[1] != self.num_parameters):
            raise ValueError(f"prelu: num_parameters={self.num_parameters} expects x of shape "
                             f"(N, {self.num_parameters}, ...), got shape {x.shape}")
        self._x = x
        return FA.prelu(x, self.params["weight"], out=self._buffer_for("y", x))

    def backward(self, grad_y):
        out = self._buffer_for("gx", self._x, grad_y) if self.needs_input_grad else None
        gx, gw = FA.prelu_backward(grad_y, self._x, self.params["weight"],
                                   self.needs_input_grad, out=out)
        np.copyto(self.grads["weight"], gw)
        return gx

    def flops(self, input_shape):
        return 2 * math.prod(as_shape(input_shape))
