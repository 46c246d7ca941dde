"""Element-wise activations and softmax (numpy, writing into reused buffers inside a Model)."""
import math

import numpy as np

import cnnframe.functional as F
from cnnframe.functional.normalization import relu_into
from cnnframe.layers.base import Layer, as_shape, check_float, check_int
from cnnframe.registry import register_layer


class _Elementwise(Layer):
    """Shared parts of shape-preserving activations."""

    def flops(self, input_shape):
        return math.prod(as_shape(input_shape))


@register_layer("relu")
class ReLU(_Elementwise):
    """Rectified linear unit, max(x, 0).

    Inside a Model, a ReLU that is the only consumer of a batch norm is fused into it
    (the Model sets ``fused``): the batch norm applies max(., 0) and ReLU's gradient
    itself, and this layer passes its input and grad_y through unchanged.

    Input shape: any.  Output shape: same as input.
    """

    def __init__(self):
        super().__init__()
        self._y = None
        self.fused = False

    @property
    def aliases(self):  # fused: returns its input and grad_y themselves
        return self.fused

    def forward(self, x, training=True):
        self._check_input(x)
        if self.fused:
            return x
        y = self._buffer("y", x.shape, x.dtype)
        if np.may_share_memory(y, x):  # fed its own output: keep x intact
            y = np.empty(x.shape, x.dtype)
        # backward reads the output (y > 0 exactly where x > 0): no separate mask
        # F.relu without its per-call checks (x and y are checked above)
        self._y = relu_into(np.ascontiguousarray(x), y)
        return y

    def backward(self, grad_y):
        if self.fused:
            return grad_y
        gx = self._buffer("gx", grad_y.shape, grad_y.dtype)
        if np.may_share_memory(gx, grad_y) or np.may_share_memory(gx, self._y):
            gx = np.empty(grad_y.shape, grad_y.dtype)
        return F.relu_backward(grad_y, self._y, out=gx)


@register_layer("leaky_relu")
class LeakyReLU(_Elementwise):
    """Leaky ReLU: x if x > 0 else negative_slope * x.

    Args:
        negative_slope: slope for x <= 0 (default 0.01).

    Input shape: any.  Output shape: same as input.
    """

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_float(negative_slope, "negative_slope", layer="leaky_relu")
        self._mask = None

    def forward(self, x, training=True):
        self._check_input(x)
        mask = self._buffer("mask", x.shape, np.bool_)
        np.greater(x, 0, out=mask)
        self._mask = mask
        y = self._buffer("y", x.shape, x.dtype)
        np.multiply(x, x.dtype.type(self.negative_slope), out=y)
        np.copyto(y, x, where=mask)
        return y

    def backward(self, grad_y):
        gx = self._buffer("gx", grad_y.shape, grad_y.dtype)
        np.multiply(grad_y, grad_y.dtype.type(self.negative_slope), out=gx)
        np.copyto(gx, grad_y, where=self._mask)
        return gx


@register_layer("sigmoid")
class Sigmoid(_Elementwise):
    """Logistic sigmoid 1 / (1 + exp(-x)), computed as (1 + tanh(x / 2)) / 2 (no overflow).

    Input shape: any.  Output shape: same as input.
    """

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x, training=True):
        self._check_input(x)
        y = self._buffer("y", x.shape, x.dtype)
        half = x.dtype.type(0.5)
        np.multiply(x, half, out=y)
        np.tanh(y, out=y)
        y *= half
        y += half
        self._y = y
        return y

    def backward(self, grad_y):
        y = self._y
        gx = self._buffer("gx", grad_y.shape, grad_y.dtype)
        np.subtract(1, y, out=gx)
        gx *= y
        gx *= grad_y
        return gx


@register_layer("tanh")
class Tanh(_Elementwise):
    """Hyperbolic tangent.

    Input shape: any.  Output shape: same as input.
    """

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x, training=True):
        self._check_input(x)
        self._y = np.tanh(x, out=self._buffer("y", x.shape, x.dtype))
        return self._y

    def backward(self, grad_y):
        y = self._y
        gx = self._buffer("gx", grad_y.shape, grad_y.dtype)
        np.multiply(y, y, out=gx)
        np.subtract(1, gx, out=gx)
        gx *= grad_y
        return gx


@register_layer("softmax")
class Softmax(_Elementwise):
    """Softmax along `axis` (max-shifted, so large inputs do not overflow).

    For training a classifier use the fused softmax cross-entropy loss on the
    logits instead; this layer is for models that must output probabilities.

    Args:
        axis: axis of the full (batched) array to normalise over (default 1;
            negative values count from the end; the batch axis 0 is not allowed).

    Input shape: any with at least that axis.  Output shape: same as input.
    """

    def __init__(self, axis=1):
        super().__init__()
        self.axis = check_int(axis, "axis", layer="softmax")
        if self.axis == 0:
            raise ValueError("softmax: axis 0 is the batch axis; use axis >= 1 or a negative axis")
        self._y = None

    def _axis(self, ndim):
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            raise ValueError(f"softmax: axis={self.axis} is out of range for inputs with "
                             f"{ndim} dimensions (batch first)")
        return axis

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="softmax")
        self._axis(len(shape) + 1)
        return shape

    def forward(self, x, training=True):
        self._check_input(x)
        axis = self._axis(x.ndim)
        y = self._buffer("y", x.shape, x.dtype)
        np.subtract(x, x.max(axis=axis, keepdims=True), out=y)
        np.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        self._y = y
        return y

    def backward(self, grad_y):
        y = self._y
        axis = self._axis(y.ndim)
        gx = self._buffer("gx", grad_y.shape, grad_y.dtype)
        np.multiply(grad_y, y, out=gx)
        dot = gx.sum(axis=axis, keepdims=True)
        np.subtract(grad_y, dot, out=gx)
        gx *= y
        return gx

    def flops(self, input_shape):
        return 4 * math.prod(as_shape(input_shape))

    def receptive_step(self, input_shape):
        # Normalising over a spatial axis (or over the features of a flat vector) mixes them all.
        ndim = len(as_shape(input_shape)) + 1
        return ((1, 1), (1, 1)) if (ndim == 4 and self._axis(ndim) == 1) else None
