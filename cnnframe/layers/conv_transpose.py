"""Transposed convolution (through the conv2d kernels, cnnframe.functional.conv_transpose)."""
import math

import numpy as np

from cnnframe.functional import conv_transpose as FT
from cnnframe.layers.base import (Layer, as_shape, check_init, check_int, check_pair, check_seed,
                                  init_array)
from cnnframe.registry import register_layer


@register_layer("conv_transpose2d")
class ConvTranspose2d(Layer):
    """2-D transposed convolution, as torch.nn.ConvTranspose2d (U-Net and decoder upsampling).

    The adjoint of conv2d: each input pixel adds weight-scaled copies of the kernel
    to the output, `stride` apart; `padding` rows and columns are cut from each side
    of the result and `output_padding` added at the bottom and right.

    Args:
        in_channels: channels C of the input.
        out_channels: channels F of the output.
        kernel_size: int or [kh, kw].
        stride: int or [sh, sw] (default 1).
        padding: int or [ph, pw] (default 0).
        output_padding: int or [oh, ow], smaller than stride or dilation (default 0).
        groups: independent channel groups; divides in_channels and out_channels.
        bias: whether to add a learned bias per output channel.
        dilation: int or [dh, dw] (default 1).
        init: weight initialiser (a name of cnnframe.layers.INITIALIZERS, a table such as
            {type = "constant", value = 0.1}, or a callable; see cnnframe.layers.init_array),
            default "he_normal", with PyTorch's fans for this layout: fan_in =
            F / groups * kh * kw, fan_out = C * kh * kw; "dirac" makes the identity.
        bias_init: bias initialiser, default "zeros"; the same choices and fans.
        seed: int seed of the initialisation (None: fresh entropy).

    Params: weight (C, F / groups, KH, KW), bias (F,) — PyTorch's layout.

    Input shape: (N, C, H, W).
    Output shape: (N, F, OH, OW), OH = (H - 1) sh - 2 ph + dh (kh - 1) + oh + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, init="he_normal",
                 bias_init="zeros", seed=None):
        super().__init__()
        name = "conv_transpose2d"
        self.in_channels = check_int(in_channels, "in_channels", 1, name)
        self.out_channels = check_int(out_channels, "out_channels", 1, name)
        self.kernel_size, self._k = check_pair(kernel_size, "kernel_size", 1, name)
        self.stride, self._s = check_pair(stride, "stride", 1, name)
        self.padding, self._p = check_pair(padding, "padding", 0, name)
        self.output_padding, self._op = check_pair(output_padding, "output_padding", 0, name)
        self.dilation, self._d = check_pair(dilation, "dilation", 1, name)
        self.groups = check_int(groups, "groups", 1, name)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"conv_transpose2d: groups={self.groups} must divide in_channels "
                             f"({self.in_channels}) and out_channels ({self.out_channels})")
        for a in (0, 1):
            if self._op[a] >= max(self._s[a], self._d[a]):
                raise ValueError(f"conv_transpose2d: output_padding {self.output_padding} must "
                                 f"be smaller than either stride {self.stride} or dilation "
                                 f"{self.dilation} in each dimension")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"conv_transpose2d: bias must be true or false, got {bias!r}")
        self.bias = bool(bias)
        self.init = check_init(init)
        self.bias_init = check_init(bias_init, "bias_init")
        self.seed = check_seed(seed, name)
        kh, kw = self._k
        self.add_param("weight", np.zeros((self.in_channels, self.out_channels // self.groups,
                                           kh, kw)))
        if self.bias:
            self.add_param("bias", np.zeros(self.out_channels))
        self.reset_parameters(self.seed)
        self._x = None

    def reset_parameters(self, seed=None):
        rng = np.random.default_rng(seed)
        w = self.params["weight"]
        taps = w.shape[2] * w.shape[3]
        fan_in, fan_out = w.shape[1] * taps, w.shape[0] * taps
        w[...] = init_array(w.shape, self.init, rng, fan_in, fan_out, w.dtype, self.groups)
        if self.bias:
            b = self.params["bias"]
            b[...] = init_array(b.shape, self.bias_init, rng, fan_in, fan_out, b.dtype)

    def _geometry(self):
        return dict(stride=self._s, padding=self._p, output_padding=self._op, groups=self.groups,
                    dilation=self._d)

    def forward(self, x, training=True):
        self._check_input(x, 4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"conv_transpose2d: expects x of shape (N, {self.in_channels}, H, W), "
                             f"got shape {x.shape}")
        self._x = x
        out = self._buffer("y", (x.shape[0], *self.output_shape(x.shape[1:])), x.dtype)
        return FT.conv_transpose2d(x, self.params["weight"], self.params.get("bias"),
                                   out=out, **self._geometry())

    def backward(self, grad_y):
        out = self._buffer("grad_x", self._x.shape, self._x.dtype) if self.needs_input_grad else None
        gx, gw, gb = FT.conv_transpose2d_backward(self._x, self.params["weight"], grad_y,
                                                  need_grad_x=self.needs_input_grad, out=out,
                                                  **self._geometry())
        if "weight" not in self.frozen_params:
            np.copyto(self.grads["weight"], gw)
        if self.bias:
            np.copyto(self.grads["bias"], gb)
        return gx

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="conv_transpose2d")
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"conv_transpose2d: expects input shape (in_channels="
                             f"{self.in_channels}, H, W), got {list(shape)}")
        oh, ow = ((size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, s, p, d, k, op in zip(
            shape[1:], self._s, self._p, self._d, self._k, self._op))
        if oh < 1 or ow < 1:
            raise ValueError(f"conv_transpose2d: input {list(shape)} is too small for padding "
                             f"{self.padding} with kernel_size {self.kernel_size}, stride "
                             f"{self.stride}, dilation {self.dilation} (output would be "
                             f"{oh} x {ow})")
        return (self.out_channels, oh, ow)

    def flops(self, input_shape):
        c, h, w = as_shape(input_shape, layer="conv_transpose2d")
        self.output_shape(input_shape)
        kh, kw = self._k
        return 2 * c * h * w * (self.out_channels // self.groups) * kh * kw

    def receptive_step(self, input_shape):
        # An output pixel sees about ceil(extent / stride) input pixels per axis; the
        # receptive-field jump cannot shrink below 1 (upsampling), so stride 1.
        ext = tuple(math.ceil((d * (k - 1) + 1) / s) for d, k, s in zip(self._d, self._k, self._s))
        return ext, (1, 1)
