"""Layers that move data without arithmetic: reshape, transpose (permute) and pad.

The batch axis always stays first and keeps its size.
"""
import math

import numpy as np

from cnnframe.layers.base import Layer, as_shape, check_float
from cnnframe.registry import register_layer

PAD_MODES = ("constant", "reflect", "edge")


def _int_list(value, what, name, minimum):
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum
            for v in value):
        raise ValueError(f"{name}: {what} must be a list of ints >= {minimum}, got {value!r}")
    return [int(v) for v in value]


@register_layer("reshape")
class Reshape(Layer):
    """Give each sample a new shape with the same number of elements, as torch.reshape.

    Args:
        shape: the new shape of each sample (without the batch axis), e.g. [16, 7, 7].

    Input shape: any with prod(shape) elements per sample.  Output shape: (N, *shape).
    """

    aliases = True  # returns a view of its input when it can

    def __init__(self, shape):
        super().__init__()
        self.shape = _int_list(shape, "shape", "reshape", 1)
        if not self.shape:
            raise ValueError("reshape: shape must have at least one axis, got []")
        self._input_shape = None

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="reshape")
        if math.prod(shape) != math.prod(self.shape):
            raise ValueError(f"reshape: cannot reshape samples of shape {list(shape)} "
                             f"({math.prod(shape)} elements) to {self.shape} "
                             f"({math.prod(self.shape)} elements)")
        return tuple(self.shape)

    def forward(self, x, training=True):
        self._check_input(x)
        self.output_shape(x.shape[1:])
        self._input_shape = x.shape
        return x.reshape(x.shape[0], *self.shape)

    def backward(self, grad_y):
        return grad_y.reshape(self._input_shape)

    def flops(self, input_shape):
        return 0


@register_layer("transpose")
class Transpose(Layer):
    """Permute the axes of each sample, as torch.permute (the batch axis stays first).

    Args:
        perm: a permutation of the batched array's axes [0, 1, ..., ndim - 1] with
            perm[0] == 0, e.g. [0, 2, 3, 1] for NCHW -> NHWC.

    Input shape: any of rank len(perm) - 1.  Output shape: the permuted shape.
    """

    def __init__(self, perm):
        super().__init__()
        self.perm = _int_list(perm, "perm", "transpose", 0)
        if sorted(self.perm) != list(range(len(self.perm))) or len(self.perm) < 2:
            raise ValueError(f"transpose: perm must be a permutation of 0..ndim-1 with at "
                             f"least 2 axes, got {self.perm}")
        if self.perm[0] != 0:
            raise ValueError(f"transpose: perm[0] must be 0 (the batch axis stays first), "
                             f"got {self.perm}")
        self._inverse = [int(i) for i in np.argsort(self.perm)]

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="transpose")
        if len(shape) + 1 != len(self.perm):
            raise ValueError(f"transpose: perm {self.perm} needs inputs of rank "
                             f"{len(self.perm)} (batch first), got sample shape {list(shape)}")
        full = (1, *shape)
        return tuple(full[p] for p in self.perm[1:])

    def forward(self, x, training=True):
        self._check_input(x, len(self.perm))
        y = self._buffer("y", (x.shape[0], *self.output_shape(x.shape[1:])), x.dtype)
        np.copyto(y, x.transpose(self.perm))
        return y

    def backward(self, grad_y):
        gx = self._buffer("gx", grad_y.transpose(self._inverse).shape, grad_y.dtype)
        np.copyto(gx, grad_y.transpose(self._inverse))
        return gx

    def flops(self, input_shape):
        return 0


@register_layer("pad")
class Pad(Layer):
    """Pad each sample along its axes, as torch.nn.functional.pad.

    Args:
        pads: one [before, after] pair per axis of the sample (not the batch axis),
            e.g. [[0, 0], [1, 1], [2, 2]] pads H by 1 and W by 2 on each side of (C, H, W).
        mode: "constant" (default, fills with `value`), "reflect" (mirrors without
            repeating the edge; needs pads smaller than the axis) or "edge" (repeats
            the edge).
        value: the fill value of mode "constant" (default 0).

    Input shape: any of rank len(pads).  Output shape: each axis grown by its pads.
    """

    def __init__(self, pads, mode="constant", value=0.0):
        super().__init__()
        if not isinstance(pads, (list, tuple)) or not pads or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in pads):
            raise ValueError(f"pad: pads must be a list of [before, after] pairs, one per axis "
                             f"of the sample, got {pads!r}")
        self.pads = [_int_list(p, "each pad", "pad", 0) for p in pads]
        if mode not in PAD_MODES:
            raise ValueError(f"pad: mode must be one of {', '.join(PAD_MODES)}, got {mode!r}")
        self.mode = mode
        self.value = check_float(value, "value", layer="pad")
        self._input_shape = None

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="pad")
        if len(shape) != len(self.pads):
            raise ValueError(f"pad: pads {self.pads} are for samples of rank {len(self.pads)}, "
                             f"got sample shape {list(shape)}")
        if self.mode == "reflect" and any(max(p) >= s for p, s in zip(self.pads, shape)
                                          if max(p) > 0):
            raise ValueError(f"pad: mode 'reflect' needs each pad smaller than its axis; pads "
                             f"{self.pads}, sample shape {list(shape)}")
        return tuple(s + b + a for s, (b, a) in zip(shape, self.pads))

    def forward(self, x, training=True):
        self._check_input(x)
        shape = (x.shape[0], *self.output_shape(x.shape[1:]))
        self._input_shape = x.shape
        widths = [(0, 0)] + [tuple(p) for p in self.pads]
        if self.mode == "constant":
            y = self._buffer("y", shape, x.dtype)
            y.fill(self.value)
            y[self._core(x.shape)] = x
            return y
        return np.pad(x, widths, mode="reflect" if self.mode == "reflect" else "edge")

    def _core(self, input_shape):
        return (slice(None),) + tuple(slice(b, b + s) for (b, _), s in zip(self.pads,
                                                                         input_shape[1:]))

    def backward(self, grad_y):
        if self.mode == "constant":
            return np.array(grad_y[self._core(self._input_shape)])
        g = np.array(grad_y)
        # np.pad pads one axis after another, so undo the axes in reverse order: fold each
        # padded border back onto the elements it copies, then cut it off.
        for axis in range(len(self.pads), 0, -1):
            before, after = self.pads[axis - 1]
            n = self._input_shape[axis]
            g = np.moveaxis(g, axis, 0)
            core = np.array(g[before:before + n])
            if self.mode == "edge":
                core[0] += g[:before].sum(axis=0)
                core[n - 1] += g[before + n:].sum(axis=0)
            else:
                if before:
                    core[1:before + 1] += g[before - 1::-1][:before]
                if after:
                    core[n - 1 - after:n - 1] += g[before + n:][::-1]
            g = np.moveaxis(core, 0, axis)
        return np.ascontiguousarray(g)

    def flops(self, input_shape):
        return 0
