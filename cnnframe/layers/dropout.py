"""Inverted dropout."""
import math

import numpy as np

from cnnframe.functional import activations as FA
from cnnframe.layers.base import Layer, as_shape, check_float, check_seed
from cnnframe.registry import register_layer


@register_layer("dropout")
class Dropout(Layer):
    """Inverted dropout, as torch.nn.Dropout.

    In training each element is zeroed with probability `p` and the survivors
    are scaled by 1 / (1 - p), so eval mode is the identity.  All randomness is
    drawn from ``self.rng`` (a numpy Generator; restore ``rng.bit_generator.state``
    to replay a forward pass).

    Args:
        p: drop probability in [0, 1] (default 0.5).
        seed: int seed of ``self.rng`` (None: fresh entropy).

    Input shape: any.  Output shape: same as input.
    """

    stochastic = True
    aliases = True  # eval mode returns its input

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        self.p = check_float(p, "p", 0.0, 1.0, "dropout")
        self.seed = check_seed(seed, "dropout")
        self.rng = np.random.default_rng(self.seed)
        self._mask = None

    def forward(self, x, training=True):
        self._check_input(x)
        if not training or self.p == 0.0:
            self._mask = None
            return x
        mask = self._buffer("mask", x.shape, x.dtype)
        self.rng.random(out=mask, dtype=x.dtype)
        keep = self._buffer("keep", x.shape, np.bool_)
        np.greater_equal(mask, x.dtype.type(self.p), out=keep)
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        np.multiply(keep, x.dtype.type(scale), out=mask)
        self._mask = mask
        y = self._buffer("y", x.shape, x.dtype)
        return np.multiply(x, mask, out=y)

    def backward(self, grad_y):
        if self._mask is None:
            return grad_y
        gx = self._buffer("gx", grad_y.shape, grad_y.dtype)
        return np.multiply(grad_y, self._mask, out=gx)

    def flops(self, input_shape):
        return math.prod(as_shape(input_shape))


@register_layer("dropout2d")
class Dropout2d(Layer):
    """Channel dropout, as torch.nn.Dropout2d.

    In training each (sample, channel) plane is zeroed as a whole with probability
    `p` and the surviving planes are scaled by 1 / (1 - p); eval mode is the
    identity.  Neighbouring pixels of a feature map are strongly correlated, so
    dropping single pixels (dropout) regularises convolutions little.  All
    randomness is drawn from ``self.rng`` (N * C draws per forward pass).

    Args:
        p: drop probability in [0, 1] (default 0.5).
        seed: int seed of ``self.rng`` (None: fresh entropy).

    Input shape: (N, C, H, W).  Output shape: same as input.
    """

    stochastic = True
    aliases = True  # eval mode returns its input

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        self.p = check_float(p, "p", 0.0, 1.0, "dropout2d")
        self.seed = check_seed(seed, "dropout2d")
        self.rng = np.random.default_rng(self.seed)
        self._scale = None

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="dropout2d")
        if len(shape) != 3:
            raise ValueError(f"dropout2d: expects input shape (C, H, W), got {list(shape)}")
        return shape

    def forward(self, x, training=True):
        self._check_input(x, 4)
        if not training or self.p == 0.0:
            self._scale = None
            return x
        n, c = x.shape[:2]
        keep = self.rng.random((n, c), dtype=x.dtype) >= x.dtype.type(self.p)
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self._scale = keep * x.dtype.type(scale)   # (N, C): one factor per plane
        return FA.scale_planes(x, self._scale, out=self._out("y", x))

    def backward(self, grad_y):
        if self._scale is None:
            return grad_y
        return FA.scale_planes(grad_y, self._scale, out=self._out("gx", grad_y))

    def _out(self, key, a):
        """The reused buffer for a result of a's shape, or None (a new array) if it overlaps a."""
        buf = self._buffer(key, a.shape, a.dtype)
        return None if np.may_share_memory(buf, a) else buf

    def flops(self, input_shape):
        return math.prod(as_shape(input_shape))
