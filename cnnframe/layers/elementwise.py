"""Element-wise arithmetic with broadcasting, and clipping.

These layers carry the arithmetic that imported ONNX graphs hold between the
usual layers (input normalisation ``(x - mean) / std``, squeeze-and-excitation
gates ``x * s``, ReLU6 as ``clip(x, 0, 6)``).  Broadcasting follows numpy's rules
over the whole batched arrays; the batch axis itself is never broadcast.
"""
import math

import numpy as np

from cnnframe.layers.base import Layer, as_shape, check_float
from cnnframe.registry import register_layer

ELEMENTWISE_OPS = ("add", "sub", "mul", "div")
ELEMENTWISE_CONST_OPS = ELEMENTWISE_OPS + ("rsub", "rdiv")


def _reduce_to(grad, shape):
    """Sum `grad` over the axes along which an operand of `shape` was broadcast."""
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=axes).reshape(shape) if axes else grad.reshape(shape)


def _check_op(op, valid, name):
    if op not in valid:
        raise ValueError(f"{name}: op must be one of {', '.join(valid)}, got {op!r}")
    return op


@register_layer("elementwise")
class Elementwise(Layer):
    """Element-wise add, sub, mul or div of two inputs, with numpy broadcasting.

    Both inputs have the batch axis first and the same number of dimensions; any
    other axis of size 1 in one input is broadcast against the other (a
    squeeze-and-excitation gate (N, C, 1, 1) times features (N, C, H, W)).

    Args:
        op: "add", "sub" (x0 - x1), "mul" or "div" (x0 / x1).

    Input shape: a list of two shapes of the same rank, broadcastable.
    Output shape: their broadcast shape.
    """

    num_inputs = None

    def __init__(self, op="mul"):
        super().__init__()
        self.op = _check_op(op, ELEMENTWISE_OPS, "elementwise")
        self._xs = None

    def output_shape(self, input_shapes):
        if not isinstance(input_shapes, (list, tuple)) or len(input_shapes) != 2:
            raise ValueError(f"elementwise: takes exactly 2 inputs, got {input_shapes!r}")
        a, b = (as_shape(s, layer="elementwise") for s in input_shapes)
        if len(a) != len(b):
            raise ValueError(f"elementwise: inputs must have the same number of dimensions, got "
                             f"{list(a)} and {list(b)}")
        try:
            return tuple(np.broadcast_shapes(a, b))
        except ValueError:
            raise ValueError(f"elementwise: input shapes {list(a)} and {list(b)} do not "
                             "broadcast") from None

    def forward(self, xs, training=True):
        if not isinstance(xs, (list, tuple)) or len(xs) != 2:
            raise ValueError("elementwise: takes a list of exactly 2 arrays")
        a, b = (self._check_input(x, what=f"input {i}") for i, x in enumerate(xs))
        if a.dtype != b.dtype:
            raise TypeError(f"elementwise: inputs have different dtypes {a.dtype} and {b.dtype}")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"elementwise: inputs must have the same batch size, got {a.shape} "
                             f"and {b.shape}")
        shape = (a.shape[0], *self.output_shape([a.shape[1:], b.shape[1:]]))
        self._xs = (a, b)
        y = self._buffer("y", shape, a.dtype)
        fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[self.op]
        return fn(a, b, out=y)

    def backward(self, grad_y):
        a, b = self._xs
        if self.op == "add":
            ga, gb = grad_y, grad_y
        elif self.op == "sub":
            ga, gb = grad_y, -grad_y
        elif self.op == "mul":
            ga, gb = grad_y * b, grad_y * a
        else:
            ga = grad_y / b
            gb = -ga * a / b
        return [np.array(_reduce_to(ga, a.shape)), np.array(_reduce_to(gb, b.shape))]

    def flops(self, input_shapes):
        return math.prod(self.output_shape(input_shapes))


@register_layer("elementwise_const")
class ElementwiseConst(Layer):
    """Element-wise arithmetic of the input with a stored constant array.

    y = x + c, x - c, x * c, x / c, c - x ("rsub") or c / x ("rdiv"); `c` broadcasts
    against each sample as numpy does (aligned at the last axis).

    Args:
        op: "add", "sub", "mul", "div", "rsub" or "rdiv".
        shape: the constant's shape (default [] for a scalar); at most the input's
            rank without the batch axis.
        trainable: false (default) keeps the constant as a buffer "value"; true makes
            it a parameter "value" that optimizers update.
        value: the number the constant starts as (default 1.0), e.g. op "mul" with
            value 1/9 scales by 1/9 (airbench's logit scale).

    Buffers (or params when trainable): value (shape) = `value`.

    Input shape: any that broadcasts with `shape` to itself.  Output shape: same.
    """

    def __init__(self, op="mul", shape=(), trainable=False, value=1.0):
        super().__init__()
        self.op = _check_op(op, ELEMENTWISE_CONST_OPS, "elementwise_const")
        if not isinstance(shape, (list, tuple)) or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                for s in shape):
            raise ValueError(f"elementwise_const: shape must be a list of ints >= 1, got {shape!r}")
        self.shape = [int(s) for s in shape]
        if not isinstance(trainable, (bool, np.bool_)):
            raise TypeError(f"elementwise_const: trainable must be true or false, got {trainable!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(value):
            raise ValueError(f"elementwise_const: value must be a finite number, got {value!r}")
        self.fill = float(value)
        # Not self.trainable: that is Layer's freezing switch (True for a layer without params).
        value = np.full(self.shape or [1], self.fill)  # a scalar is kept as (1,)
        if trainable:
            self.add_param("value", value)
        else:
            self.add_buffer("value", value)
        self._x = None

    @property
    def _learned(self):
        return "value" in self.params

    @property
    def value(self):
        return self.params["value"] if self._learned else self.buffers["value"]

    def get_config(self):
        cfg = {"op": self.op, "shape": list(self.shape), "trainable": self._learned}
        if self.fill != 1.0:  # configs written before `value` existed stay as they were
            cfg["value"] = self.fill
        return cfg

    def reset_parameters(self, seed=None):
        if self._learned:
            self.params["value"].fill(self.fill)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="elementwise_const")
        if (len(self.shape) > len(shape) or not _broadcasts(shape, self.shape)
                or tuple(np.broadcast_shapes(shape, tuple(self.shape))) != shape):
            raise ValueError(f"elementwise_const: the constant of shape {self.shape} does not "
                             f"broadcast to the input shape {list(shape)}")
        return shape

    def forward(self, x, training=True):
        self._check_input(x)
        self.output_shape(x.shape[1:])
        self._x = x
        c = self.value.astype(x.dtype, copy=False)
        y = self._buffer("y", x.shape, x.dtype)
        op = self.op
        if op == "add":
            return np.add(x, c, out=y)
        if op == "sub":
            return np.subtract(x, c, out=y)
        if op == "mul":
            return np.multiply(x, c, out=y)
        if op == "div":
            return np.divide(x, c, out=y)
        if op == "rsub":
            return np.subtract(c, x, out=y)
        return np.divide(c, x, out=y)

    def backward(self, grad_y):
        x, c, op = self._x, self.value.astype(grad_y.dtype, copy=False), self.op
        if op == "add":
            gx, gc = grad_y, grad_y
        elif op == "sub":
            gx, gc = grad_y, -grad_y
        elif op == "mul":
            gx, gc = grad_y * c, grad_y * x
        elif op == "div":
            gx = grad_y / c
            gc = -gx * x / c
        elif op == "rsub":
            gx, gc = -grad_y, grad_y
        else:
            gx = -grad_y * c / (x * x)
            gc = grad_y / x
        if self._learned:
            np.copyto(self.grads["value"], _reduce_to(gc, tuple(self.shape)).reshape(
                self.grads["value"].shape))
        if not self.needs_input_grad:
            return None
        out = self._buffer("gx", x.shape, x.dtype)
        np.copyto(out, gx)
        return out

    def flops(self, input_shape):
        return math.prod(as_shape(input_shape))


def _broadcasts(shape, const_shape):
    try:
        np.broadcast_shapes(tuple(shape), tuple(const_shape))
        return True
    except ValueError:
        return False


@register_layer("clip")
class Clip(Layer):
    """Clamp every element to [min, max], as torch.clamp (ReLU6 is clip(0, 6)).

    The gradient passes where min < x < max (PyTorch's hardtanh rule).

    Args:
        min: lower bound, or null for none.
        max: upper bound, or null for none.

    Input shape: any.  Output shape: same as input.
    """

    def __init__(self, min=None, max=None):  # noqa: A002 - torch.clamp's names
        super().__init__()
        self.min = None if min is None else check_float(min, "min", layer="clip")
        self.max = None if max is None else check_float(max, "max", layer="clip")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"clip: min ({self.min}) must not exceed max ({self.max})")
        self._x = None

    def forward(self, x, training=True):
        self._check_input(x)
        self._x = x
        y = self._buffer("y", x.shape, x.dtype)
        return np.clip(x, self.min, self.max, out=y)

    def backward(self, grad_y):
        x = self._x
        keep = np.ones(x.shape, bool)
        if self.min is not None:
            keep &= x > self.min
        if self.max is not None:
            keep &= x < self.max
        gx = self._buffer("gx", x.shape, grad_y.dtype)
        return np.multiply(grad_y, keep, out=gx)

    def flops(self, input_shape):
        return math.prod(as_shape(input_shape))
