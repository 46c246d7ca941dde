"""Layers merging several inputs: element-wise add (residual blocks) and concat (branches)."""
import math

import numpy as np

from cnnframe.layers.base import Layer, as_shape, check_int
from cnnframe.registry import register_layer


class _Merge(Layer):
    num_inputs = None
    aliases = True  # backward hands out grad_y (or views of it)

    def _check_list(self, xs):
        name = self.type_name
        if not isinstance(xs, (list, tuple)) or len(xs) < 2:
            got = f"a list of {len(xs)}" if isinstance(xs, (list, tuple)) else type(xs).__name__
            raise ValueError(f"{name}: takes a list of at least 2 arrays, got {got}")
        for i, x in enumerate(xs):
            self._check_input(x, what=f"input {i}")
        if any(x.dtype != xs[0].dtype for x in xs):
            raise TypeError(f"{name}: inputs have different dtypes "
                            f"{[str(x.dtype) for x in xs]}")
        return xs

    def _shapes(self, input_shapes):
        if not isinstance(input_shapes, (list, tuple)) or len(input_shapes) < 2 or not all(
                isinstance(s, (list, tuple)) for s in input_shapes):
            raise ValueError(f"{self.type_name}: needs a list of at least 2 input shapes, "
                             f"got {input_shapes!r}")
        return [as_shape(s, layer=self.type_name) for s in input_shapes]


@register_layer("add")
class Add(_Merge):
    """Element-wise sum of two or more inputs of the same shape (residual connections).

    Input shape: a list of equal shapes.  Output shape: that shape.
    """

    def __init__(self):
        super().__init__()
        self._n = 0

    def forward(self, xs, training=True):
        self._check_list(xs)
        shape = xs[0].shape
        if any(x.shape != shape for x in xs):
            raise ValueError(f"add: inputs must have equal shapes, got {[x.shape for x in xs]}")
        self._n = len(xs)
        y = self._buffer("y", shape, xs[0].dtype)
        np.add(xs[0], xs[1], out=y)
        for x in xs[2:]:
            y += x
        return y

    def backward(self, grad_y):
        return [grad_y] * self._n

    def output_shape(self, input_shapes):
        shapes = self._shapes(input_shapes)
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"add: inputs must have equal shapes, got {[list(s) for s in shapes]}")
        return shapes[0]

    def flops(self, input_shapes):
        shapes = self._shapes(input_shapes)
        return (len(shapes) - 1) * math.prod(shapes[0])


@register_layer("concat")
class Concat(_Merge):
    """Concatenate inputs along `axis` (default 1, the channels), as torch.cat.

    Args:
        axis: axis of the full (batched) array; negative counts from the end; not 0.

    Input shape: a list of shapes equal except along `axis`.
    Output shape: the common shape with the sizes along `axis` summed.
    """

    def __init__(self, axis=1):
        super().__init__()
        self.axis = check_int(axis, "axis", layer="concat")
        if self.axis == 0:
            raise ValueError("concat: axis 0 is the batch axis; use axis >= 1 or a negative axis")
        self._sizes = None

    def _axis(self, ndim):
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            raise ValueError(f"concat: axis={self.axis} is out of range for inputs with "
                             f"{ndim} dimensions (batch first)")
        return axis

    def forward(self, xs, training=True):
        self._check_list(xs)
        ndim = xs[0].ndim
        if any(x.ndim != ndim for x in xs):
            raise ValueError(f"concat: inputs must have the same number of dimensions, got "
                             f"{[x.shape for x in xs]}")
        axis = self._axis(ndim)
        shape = list(xs[0].shape)
        for x in xs[1:]:
            if x.shape[:axis] + x.shape[axis + 1:] != xs[0].shape[:axis] + xs[0].shape[axis + 1:]:
                raise ValueError(f"concat: inputs must match except along axis {axis}, got "
                                 f"{[x.shape for x in xs]}")
        self._sizes = [x.shape[axis] for x in xs]
        shape[axis] = sum(self._sizes)
        y = self._buffer("y", tuple(shape), xs[0].dtype)
        return np.concatenate(xs, axis=axis, out=y)

    def backward(self, grad_y):
        axis = self._axis(grad_y.ndim)
        return np.split(grad_y, np.cumsum(self._sizes)[:-1], axis=axis)

    def output_shape(self, input_shapes):
        shapes = self._shapes(input_shapes)
        ndim = len(shapes[0]) + 1
        axis = self._axis(ndim) - 1
        first = shapes[0][:axis] + shapes[0][axis + 1:]
        if any(len(s) != len(shapes[0]) or s[:axis] + s[axis + 1:] != first for s in shapes):
            raise ValueError(f"concat: input shapes must match except along axis {self.axis}, "
                             f"got {[list(s) for s in shapes]}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def flops(self, input_shapes):
        return 0
