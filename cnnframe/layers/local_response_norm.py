"""Local response normalisation across channels (AlexNet, GoogLeNet v1)."""
import math

import numpy as np

from cnnframe.layers.base import Layer, as_shape, check_float, check_int
from cnnframe.registry import register_layer


def _channel_window_sum(a, before, after):
    """s[:, c] = sum of a[:, c - before : c + after + 1] (zeros outside the channels)."""
    n, c = a.shape[:2]
    padded = np.zeros((n, c + before + after + 1, *a.shape[2:]), a.dtype)
    np.cumsum(a, axis=1, out=padded[:, before + 1:before + 1 + c])
    padded[:, before + 1 + c:] = padded[:, before + c:before + 1 + c]
    return padded[:, before + after + 1:] - padded[:, :c]


@register_layer("lrn")
class LRN(Layer):
    """Local response normalisation, as torch.nn.LocalResponseNorm and ONNX LRN.

    y = x / (k + alpha / size * sum of x^2 over the channels [c - floor((size - 1) / 2),
    c + ceil((size - 1) / 2)]) ^ beta

    Args:
        size: channels in each window.
        alpha: scale (default 1e-4).
        beta: exponent (default 0.75).
        k: additive constant (default 1.0; ONNX calls it bias).

    Input shape: (C, ...) with channels on axis 1 of the batch.  Output shape: same.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = check_int(size, "size", 1, "lrn")
        self.alpha = check_float(alpha, "alpha", layer="lrn")
        self.beta = check_float(beta, "beta", layer="lrn")
        self.k = check_float(k, "k", layer="lrn")
        self._before, self._after = (self.size - 1) // 2, self.size // 2
        self._cache = None

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="lrn")
        if len(shape) < 1:
            raise ValueError(f"lrn: expects inputs with a channel axis, got {list(shape)}")
        return shape

    def forward(self, x, training=True):
        self._check_input(x)
        if x.ndim < 2:
            raise ValueError(f"lrn: x must have a batch and a channel axis, got shape {x.shape}")
        scale = _channel_window_sum(x * x, self._before, self._after)
        scale *= self.alpha / self.size
        scale += self.k
        y = self._buffer("y", x.shape, x.dtype)
        np.power(scale, -self.beta, out=y)
        y *= x
        self._cache = (x, scale, y)
        return y

    def backward(self, grad_y):
        x, scale, y = self._cache
        # dy_c/dx_j = [c = j] scale_c^-beta - 2 beta alpha / size x_c x_j scale_c^(-beta-1)
        # for j in c's window; the window's adjoint swaps `before` and `after`.
        t = grad_y * y / scale
        back = _channel_window_sum(t, self._after, self._before)
        gx = grad_y * np.power(scale, -self.beta)
        gx -= (2 * self.beta * self.alpha / self.size) * x * back
        return gx.astype(x.dtype, copy=False)

    def flops(self, input_shape):
        return 4 * math.prod(as_shape(input_shape)) + self.size
