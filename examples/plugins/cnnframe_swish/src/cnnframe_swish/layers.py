"""Plugin layers: Swish and a depthwise-separable convolution block.

Importing this module registers both layers with cnnframe (cnnframe imports it
through the ``cnnframe.layers`` entry point, so configs can name them without
any import).  Each layer follows the cnnframe Layer protocol: ``forward``
caches what ``backward`` needs, ``backward`` returns the input gradient and
overwrites ``self.grads``, ``get_config`` mirrors ``__init__`` (the base class
reads the attributes named like the arguments), dtype follows ``astype``.  The
base class checks ``grad_y`` (and refuses backward before forward) for every
layer, so ``backward`` starts with the work.
"""
import numpy as np

from cnnframe import Layer, register_layer
from cnnframe import functional as F
from cnnframe.layers.base import (as_shape, check_float, check_init, check_int, check_pair,
                                  check_seed, init_array)

__all__ = ["Swish", "SeparableConv2d"]


def _sigmoid(z):
    """Overflow-free logistic function (same dtype as z)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _swish_forward(x, beta):
    s = _sigmoid(beta * x)
    return x * s, s


def _swish_backward(grad_y, x, s, beta):
    """(grad_x, grad_beta): d/dx x s(bx) = s + b x s (1 - s); d/db = x^2 s (1 - s)."""
    ds = s * (1 - s)
    return grad_y * (s + beta * x * ds), float(np.sum(grad_y * x * x * ds))


@register_layer("swish")
class Swish(Layer):
    """Swish (SiLU when beta = 1): y = x * sigmoid(beta * x).

    Args:
        beta: slope of the gate (default 1.0).
        trainable: learn beta (a parameter "beta" of shape (1,)) instead of fixing it.

    Input shape: any, batch first.  Output shape: the same.
    """

    def __init__(self, beta=1.0, trainable=False):
        super().__init__()
        self.beta = check_float(beta, "beta", layer="swish")
        if not isinstance(trainable, (bool, np.bool_)):
            raise TypeError(f"swish: trainable must be true or false, got {trainable!r}")
        self.trainable = bool(trainable)
        if self.trainable:
            self.add_param("beta", np.array([self.beta]))
        self._x = self._s = None

    def get_config(self):
        beta = float(self.params["beta"][0]) if self.trainable else self.beta
        return {"beta": beta, "trainable": self.trainable}

    def _beta(self):
        return self.params["beta"][0] if self.trainable else self.dtype.type(self.beta)

    def forward(self, x, training=True):
        self._check_input(x)
        b = x.dtype.type(self._beta())
        y, self._s = _swish_forward(x, b)
        self._x = x
        return y

    def backward(self, grad_y):
        b = self._x.dtype.type(self._beta())
        gx, gb = _swish_backward(grad_y, self._x, self._s, b)
        if self.trainable:
            self.grads["beta"][0] = gb
        return gx

    def flops(self, input_shape):
        return 5 * int(np.prod(as_shape(input_shape, layer="swish")))


@register_layer("separable_conv2d")
class SeparableConv2d(Layer):
    """Depthwise-separable convolution block (MobileNet): a depthwise k x k convolution
    (each input channel filtered on its own, `depth_multiplier` filters per channel),
    then a pointwise 1 x 1 convolution mixing channels, a bias and an optional activation.

    Args:
        in_channels: channels C of the input.
        out_channels: channels F of the output.
        kernel_size: int or [kh, kw] of the depthwise filters.
        stride, padding, dilation: of the depthwise convolution (int or [h, w]).
        depth_multiplier: depthwise filters per input channel (default 1).
        bias: add a learned bias per output channel.
        activation: None, "relu" or "swish" (applied after the bias).
        init: initialiser of both weights (default "he_normal"); the bias starts at 0.
        seed: int seed of the initialisation (None: fresh entropy).

    Params: depthwise (C * m, 1, KH, KW), pointwise (F, C * m, 1, 1), bias (F,).
    Input shape: (N, C, H, W).
    Output shape: (N, F, OH, OW), OH = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 depth_multiplier=1, bias=True, activation=None, init="he_normal", seed=None):
        super().__init__()
        name = "separable_conv2d"
        self.in_channels = check_int(in_channels, "in_channels", 1, name)
        self.out_channels = check_int(out_channels, "out_channels", 1, name)
        self.kernel_size, self._k = check_pair(kernel_size, "kernel_size", 1, name)
        self.stride, self._s = check_pair(stride, "stride", 1, name)
        self.padding, self._p = check_pair(padding, "padding", 0, name)
        self.dilation, self._d = check_pair(dilation, "dilation", 1, name)
        self.depth_multiplier = check_int(depth_multiplier, "depth_multiplier", 1, name)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{name}: bias must be true or false, got {bias!r}")
        self.bias = bool(bias)
        if activation not in (None, "relu", "swish"):
            raise ValueError(f"{name}: activation must be null, 'relu' or 'swish', "
                             f"got {activation!r}")
        self.activation = activation
        self.init = check_init(init)
        self.seed = check_seed(seed, name)
        mid = self.in_channels * self.depth_multiplier
        self.add_param("depthwise", np.zeros((mid, 1) + self._k))
        self.add_param("pointwise", np.zeros((self.out_channels, mid, 1, 1)))
        if self.bias:
            self.add_param("bias", np.zeros(self.out_channels))
        self.reset_parameters(self.seed)
        self._cache = None

    def reset_parameters(self, seed=None):
        rng = np.random.default_rng(seed)
        kh, kw = self._k
        dw, pw = self.params["depthwise"], self.params["pointwise"]
        dw[...] = init_array(dw.shape, self.init, rng, kh * kw, self.depth_multiplier * kh * kw,
                             dw.dtype)
        pw[...] = init_array(pw.shape, self.init, rng, pw.shape[1], pw.shape[0], pw.dtype)
        if self.bias:
            self.params["bias"].fill(0)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="separable_conv2d")
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"separable_conv2d: expects input shape (in_channels="
                             f"{self.in_channels}, H, W), got {list(shape)}")
        oh, ow = F.conv_output_size(shape[1:], self._k, self._s, self._p, self._d)
        if oh < 1 or ow < 1:
            raise ValueError(f"separable_conv2d: input {list(shape)} is too small for "
                             f"kernel_size {self.kernel_size} (output would be {oh} x {ow})")
        return (self.out_channels, oh, ow)

    def forward(self, x, training=True):
        self._check_input(x, 4)
        mid = F.conv2d(x, self.params["depthwise"], None, self._s, self._p, self._d,
                       groups=self.in_channels)
        z = F.conv2d(mid, self.params["pointwise"], self.params.get("bias"))
        s = None
        if self.activation == "relu":
            y = np.maximum(z, 0)
        elif self.activation == "swish":
            y, s = _swish_forward(z, z.dtype.type(1))
        else:
            y = z
        self._cache = (x, mid, z, s)
        return y

    def backward(self, grad_y):
        x, mid, z, s = self._cache
        if self.activation == "relu":
            grad_y = grad_y * (z > 0)
        elif self.activation == "swish":
            grad_y = _swish_backward(grad_y, z, s, z.dtype.type(1))[0]
        g_mid, g_pw, g_b = F.conv2d_backward(mid, self.params["pointwise"], grad_y)
        gx, g_dw, _ = F.conv2d_backward(x, self.params["depthwise"], g_mid, self._s, self._p,
                                        self._d, groups=self.in_channels,
                                        need_grad_x=self.needs_input_grad)
        np.copyto(self.grads["depthwise"], g_dw)
        np.copyto(self.grads["pointwise"], g_pw)
        if self.bias:
            np.copyto(self.grads["bias"], g_b)
        return gx

    def flops(self, input_shape):
        _, oh, ow = self.output_shape(input_shape)
        kh, kw = self._k
        mid = self.in_channels * self.depth_multiplier
        return 2 * oh * ow * (mid * kh * kw + mid * self.out_channels)

    def receptive_step(self, input_shape):
        return tuple(d * (k - 1) + 1 for d, k in zip(self._d, self._k)), self._s
