"""Convolution layers (forward and backward run in the Cython kernels via cnnframe.functional)."""
import numpy as np

from cnnframe import functional as F
from cnnframe.layers.base import (Layer, as_shape, check_init, check_int, check_pair, check_seed,
                                  init_array)
from cnnframe.registry import register_layer


@register_layer("conv2d")
class Conv2d(Layer):
    """2-D convolution (cross-correlation), as torch.nn.Conv2d.

    Args:
        in_channels: channels C of the input.
        out_channels: number of filters F.
        kernel_size: int or [kh, kw].
        stride: int or [sh, sw] (default 1).
        padding: int or [ph, pw] zero padding on each side, or "valid" (0) or
            "same" (output size = input size; needs stride 1 and an odd dilated kernel).
        dilation: int or [dh, dw] (default 1).
        groups: split channels into independent groups (groups == in_channels is depthwise).
        bias: whether to add a learned bias per filter.
        init: weight initialiser, default "he_normal": a name of
            cnnframe.layers.INITIALIZERS ("dirac" makes the identity convolution), a table
            such as {type = "orthogonal", gain = 1.4} or {type = "constant", value = 0.1},
            or a callable (see cnnframe.layers.init_array and register_initializer).
        bias_init: bias initialiser, default "zeros"; the same choices (with the
            weight's fans: "lecun_uniform" is PyTorch's default bias).
        seed: int seed of the initialisation (None: fresh entropy).

    Params: weight (F, C / groups, KH, KW), bias (F,) — PyTorch's layout.

    Input shape: (N, C, H, W).
    Output shape: (N, F, OH, OW) with OH = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, init="he_normal", bias_init="zeros", seed=None):
        super().__init__()
        name = "conv2d"
        self.in_channels = check_int(in_channels, "in_channels", 1, name)
        self.out_channels = check_int(out_channels, "out_channels", 1, name)
        self.kernel_size, self._k = check_pair(kernel_size, "kernel_size", 1, name)
        self.stride, self._s = check_pair(stride, "stride", 1, name)
        self.dilation, self._d = check_pair(dilation, "dilation", 1, name)
        self.groups = check_int(groups, "groups", 1, name)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"conv2d: groups={self.groups} must divide in_channels "
                             f"({self.in_channels}) and out_channels ({self.out_channels})")
        if padding in ("same", "valid"):
            self.padding = padding
            if padding == "valid":
                self._p = (0, 0)
            else:
                ext = [d * (k - 1) for d, k in zip(self._d, self._k)]
                if self._s != (1, 1) or ext[0] % 2 or ext[1] % 2:
                    raise ValueError("conv2d: padding='same' needs stride 1 and an odd dilated "
                                     f"kernel; got kernel_size={self.kernel_size}, "
                                     f"dilation={self.dilation}, stride={self.stride}")
                self._p = (ext[0] // 2, ext[1] // 2)
        else:
            if isinstance(padding, str):
                raise ValueError(f"conv2d: padding must be an int, [ph, pw], 'same' or 'valid', "
                                 f"got {padding!r}")
            self.padding, self._p = check_pair(padding, "padding", 0, name)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"conv2d: bias must be true or false, got {bias!r}")
        self.bias = bool(bias)
        self.init = check_init(init)
        self.bias_init = check_init(bias_init, "bias_init")
        self.seed = check_seed(seed, name)
        kh, kw = self._k
        self.add_param("weight", np.zeros((self.out_channels, self.in_channels // self.groups,
                                           kh, kw)))
        if self.bias:
            self.add_param("bias", np.zeros(self.out_channels))
        self.reset_parameters(self.seed)
        self._x = None
        # Inference passes keep the weight's packed / transformed forms here; every call
        # checks the weight is unchanged (see cnnframe.functional.WeightCache).  Thread
        # copies share it (it locks; its entries are never written once built).
        self._weight_cache = F.WeightCache()

    def reset_parameters(self, seed=None):
        rng = np.random.default_rng(seed)
        w = self.params["weight"]
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        w[...] = init_array(w.shape, self.init, rng, fan_in, fan_out, w.dtype, self.groups)
        if self.bias:
            b = self.params["bias"]
            b[...] = init_array(b.shape, self.bias_init, rng, fan_in, fan_out, b.dtype)

    def forward(self, x, training=True):
        self._check_input(x, 4)
        self._x = x
        out = self._buffer("y", (x.shape[0], *self.output_shape(x.shape[1:])), x.dtype)
        return F.conv2d(x, self.params["weight"], self.params.get("bias"), self._s, self._p,
                        self._d, self.groups, out=out,
                        weight_cache=None if training else self._weight_cache)

    def backward(self, grad_y):
        out = self._buffer("grad_x", self._x.shape, self._x.dtype) if self.needs_input_grad else None
        want_w = "weight" not in self.frozen_params
        want_b = self.bias and "bias" not in self.frozen_params
        gx, gw, gb = F.conv2d_backward(self._x, self.params["weight"], grad_y, self._s, self._p,
                                       self._d, self.groups, need_grad_x=self.needs_input_grad,
                                       need_grad_weight=want_w, out=out)
        if want_w:
            np.copyto(self.grads["weight"], gw)
        if want_b:   # a frozen weight: the bias gradient alone, from grad_y
            np.copyto(self.grads["bias"], gb if gb is not None else grad_y.sum(axis=(0, 2, 3)))
        return gx

    def _out_hw(self, h, w):
        return F.conv_output_size((h, w), self._k, self._s, self._p, self._d)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="conv2d")
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"conv2d: expects input shape (in_channels={self.in_channels}, H, W), "
                             f"got {list(shape)}")
        oh, ow = self._out_hw(*shape[1:])
        if oh < 1 or ow < 1:
            raise ValueError(f"conv2d: input {list(shape)} is too small for kernel_size "
                             f"{self.kernel_size}, dilation {self.dilation}, padding "
                             f"{self.padding}, stride {self.stride} (output would be {oh} x {ow})")
        return (self.out_channels, oh, ow)

    def flops(self, input_shape):
        _, oh, ow = self.output_shape(input_shape)
        kh, kw = self._k
        macs = self.out_channels * oh * ow * (self.in_channels // self.groups) * kh * kw
        return 2 * macs

    def receptive_step(self, input_shape):
        ext = tuple(d * (k - 1) + 1 for d, k in zip(self._d, self._k))
        return ext, self._s
