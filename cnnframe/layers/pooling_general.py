"""Pooling with every option of ONNX's MaxPool/AveragePool (numpy, one pass per kernel tap).

max_pool2d and avg_pool2d (cnnframe.layers.pooling) run in the Cython kernels but take
symmetric padding of at most half the kernel, no dilation, floor rounding and, for
averages, padded zeros in the divisor.  This layer takes the rest: asymmetric pads,
dilation, ceil_mode and count_include_pad.
"""
import numpy as np

from cnnframe.layers.base import Layer, as_shape, check_pair
from cnnframe.registry import register_layer

POOL_MODES = ("max", "avg")


def pool_output_size(size, kernel, stride, dilation, pad_begin, pad_end, ceil_mode):
    """Output length of one axis (PyTorch's rule: with ceil_mode the last window must
    start inside the input or the leading padding)."""
    extent = dilation * (kernel - 1) + 1
    span = size + pad_begin + pad_end - extent
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


@register_layer("pool2d")
class Pool2d(Layer):
    """Max or average pooling over (H, W) with asymmetric pads, dilation and ceil_mode.

    Args:
        mode: "max" (padding acts as -inf) or "avg".
        kernel_size: int or [kh, kw].
        stride: int or [sh, sw] (default 1).
        dilation: int or [dh, dw] (default 1).
        pads: [top, left, bottom, right] (default [0, 0, 0, 0]), ONNX's order.
        ceil_mode: round the output size up (a last window may run past the padded
            input, and averages then count only its part inside).
        count_include_pad: avg only: padded zeros count in the divisor (default false,
            ONNX's default; PyTorch's AvgPool2d counts them).

    Input shape: (N, C, H, W).
    Output shape: (N, C, OH, OW), OH = floor or ceil((H + top + bottom - dh (kh - 1) - 1)
    / sh) + 1.
    """

    def __init__(self, mode, kernel_size, stride=1, dilation=1, pads=(0, 0, 0, 0),
                 ceil_mode=False, count_include_pad=False):
        super().__init__()
        if mode not in POOL_MODES:
            raise ValueError(f"pool2d: mode must be 'max' or 'avg', got {mode!r}")
        self.mode = mode
        self.kernel_size, self._k = check_pair(kernel_size, "kernel_size", 1, "pool2d")
        self.stride, self._s = check_pair(stride, "stride", 1, "pool2d")
        self.dilation, self._d = check_pair(dilation, "dilation", 1, "pool2d")
        if (not isinstance(pads, (list, tuple)) or len(pads) != 4 or not all(
                isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0
                for p in pads)):
            raise ValueError(f"pool2d: pads must be [top, left, bottom, right] ints >= 0, "
                             f"got {pads!r}")
        self.pads = [int(p) for p in pads]
        for name, flag in (("ceil_mode", ceil_mode), ("count_include_pad", count_include_pad)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"pool2d: {name} must be true or false, got {flag!r}")
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self._cache = None

    def _out_hw(self, h, w):
        t, l, b, r = self.pads
        return (pool_output_size(h, self._k[0], self._s[0], self._d[0], t, b, self.ceil_mode),
                pool_output_size(w, self._k[1], self._s[1], self._d[1], l, r, self.ceil_mode))

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="pool2d")
        if len(shape) != 3:
            raise ValueError(f"pool2d: expects input shape (C, H, W), got {list(shape)}")
        oh, ow = self._out_hw(*shape[1:])
        if oh < 1 or ow < 1:
            raise ValueError(f"pool2d: input {list(shape)} is too small for kernel_size "
                             f"{self.kernel_size}, dilation {self.dilation}, pads {self.pads} "
                             f"(output would be {oh} x {ow})")
        return (shape[0], oh, ow)

    def _taps(self, oh, ow):
        """(tap index, the slices of the padded array each output reads for that tap)."""
        (kh, kw), (sh, sw), (dh, dw) = self._k, self._s, self._d
        for i in range(kh):
            for j in range(kw):
                yield i * kw + j, (slice(None), slice(None),
                                   slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                                   slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))

    def _padded_hw(self, h, w, oh, ow):
        """The padded plane: the pads plus room for ceil_mode's last windows."""
        t, l, b, r = self.pads
        need_h = self._s[0] * (oh - 1) + self._d[0] * (self._k[0] - 1) + 1
        need_w = self._s[1] * (ow - 1) + self._d[1] * (self._k[1] - 1) + 1
        return max(need_h, h + t + b), max(need_w, w + l + r)

    def forward(self, x, training=True):
        self._check_input(x, 4)
        n, c, h, w = x.shape
        _, oh, ow = self.output_shape(x.shape[1:])
        ph, pw = self._padded_hw(h, w, oh, ow)
        t, l, b, r = self.pads
        fill = -np.inf if self.mode == "max" else 0.0
        xp = np.full((n, c, ph, pw), fill, x.dtype)
        xp[:, :, t:t + h, l:l + w] = x
        y = self._buffer("y", (n, c, oh, ow), x.dtype)
        if self.mode == "max":
            arg = np.zeros((n, c, oh, ow), np.int32)
            y.fill(-np.inf)
            for tap, sl in self._taps(oh, ow):
                window = xp[sl]
                better = window > y
                np.copyto(y, window, where=better)
                arg[better] = tap
            self._cache = (x.shape, (ph, pw), arg, None)
            return y
        y.fill(0)
        for _, sl in self._taps(oh, ow):
            y += xp[sl]
        # The divisor counts the taps inside the input, or inside input and pads.
        inside = np.zeros((1, 1, ph, pw), x.dtype)
        if self.count_include_pad:
            inside[:, :, :h + t + b, :w + l + r] = 1
        else:
            inside[:, :, t:t + h, l:l + w] = 1
        count = np.zeros((1, 1, oh, ow), x.dtype)
        for _, sl in self._taps(oh, ow):
            count += inside[sl]
        np.maximum(count, 1, out=count)
        y /= count
        self._cache = (x.shape, (ph, pw), None, count)
        return y

    def backward(self, grad_y):
        shape, (ph, pw), arg, count = self._cache
        n, c, h, w = shape
        oh, ow = grad_y.shape[2:]
        t, l = self.pads[:2]
        gp = np.zeros((n, c, ph, pw), grad_y.dtype)
        if self.mode == "max":
            for tap, sl in self._taps(oh, ow):
                gp[sl] += np.where(arg == tap, grad_y, 0)
        else:
            g = grad_y / count
            for _, sl in self._taps(oh, ow):
                gp[sl] += g
        return np.ascontiguousarray(gp[:, :, t:t + h, l:l + w])

    def flops(self, input_shape):
        c, oh, ow = self.output_shape(input_shape)
        return c * oh * ow * self._k[0] * self._k[1]

    def receptive_step(self, input_shape):
        ext = tuple(d * (k - 1) + 1 for d, k in zip(self._d, self._k))
        return ext, self._s
