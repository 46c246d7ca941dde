"""Pooling layers (forward and backward run in the Cython kernels via cnnframe.functional)."""
import numpy as np

from cnnframe import functional as F
from cnnframe.functional import pooling as F_pooling
from cnnframe.layers.base import Layer, as_shape, check_pair
from cnnframe.registry import register_layer


class _Pool2d(Layer):
    """Shared parts of max and average pooling."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = self.type_name
        self.kernel_size, self._k = check_pair(kernel_size, "kernel_size", 1, name)
        if stride is None:
            self.stride, self._s = None, self._k
        else:
            self.stride, self._s = check_pair(stride, "stride", 1, name)
        self.padding, self._p = check_pair(padding, "padding", 0, name)
        if self._p[0] > self._k[0] // 2 or self._p[1] > self._k[1] // 2:
            raise ValueError(f"{name}: padding {self.padding} must be at most half the "
                             f"kernel_size {self.kernel_size}")
        self._input_shape = None
        self._out_shapes = {}  # input shape (C, H, W) -> output shape, checked once

    def _checked_input(self, x):
        """x (N, C, H, W) checked and C-contiguous, and the output shape (N, C, OH, OW).

        The checks F.max_pool2d / F.avg_pool2d make, done once per input shape: forward
        then calls the kernel itself, so small inputs (one image) pay no per-call
        validation.
        """
        self._check_input(x, 4)
        out = self._out_shapes.get(x.shape[1:])
        if out is None:
            out = self._out_shapes[x.shape[1:]] = self.output_shape(x.shape[1:])
        return np.ascontiguousarray(x), (x.shape[0], *out)

    def _own_buffer(self, key, shape, dtype, x):
        """The reused buffer for `key`, or a new array if it overlaps x (fed its own output)."""
        buf = self._buffer(key, shape, dtype)
        return np.empty(shape, dtype) if np.may_share_memory(buf, x) else buf

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer=self.type_name)
        if len(shape) != 3:
            raise ValueError(f"{self.type_name}: expects input shape (C, H, W), got {list(shape)}")
        c, h, w = shape
        if h + 2 * self._p[0] < self._k[0] or w + 2 * self._p[1] < self._k[1]:
            raise ValueError(f"{self.type_name}: kernel_size {self.kernel_size} is larger than "
                             f"the padded input ({h + 2 * self._p[0]} x {w + 2 * self._p[1]}) "
                             f"of shape {list(shape)}")
        oh, ow = F.conv_output_size((h, w), self._k, self._s, self._p)
        return (c, oh, ow)

    def flops(self, input_shape):
        c, oh, ow = self.output_shape(input_shape)
        return c * oh * ow * self._k[0] * self._k[1]

    def receptive_step(self, input_shape):
        return self._k, self._s


@register_layer("max_pool2d")
class MaxPool2d(_Pool2d):
    """Max pooling, as torch.nn.MaxPool2d (padding acts as -inf).

    Args:
        kernel_size: int or [kh, kw].
        stride: int or [sh, sw]; default (null) = kernel_size.
        padding: int or [ph, pw], at most half the kernel size.

    Input shape: (N, C, H, W).
    Output shape: (N, C, OH, OW), OH = floor((H + 2 ph - kh) / sh) + 1.
    """

    # A Model sets this False where the input is kept until this layer's backward anyway
    # (cnnframe.graph.memory): backward then recomputes the argmax from the input, the
    # same indices by the same kernel, instead of keeping 8 bytes per output.
    keep_argmax = True

    def forward(self, x, training=True):
        x, shape = self._checked_input(x)
        y = self._own_buffer("y", shape, x.dtype, x)
        argmax = self._own_buffer("argmax", shape, np.int64, x)
        if np.may_share_memory(argmax, y):
            argmax = np.empty(shape, np.int64)
        F_pooling.max_pool2d_into(x, y, argmax, self._k, self._s, self._p)
        self._argmax, self._x = (argmax, None) if self.keep_argmax else (None, x)
        self._input_shape = x.shape
        return y

    def backward(self, grad_y):
        argmax = self._argmax
        if argmax is None:
            shape = grad_y.shape
            # y comes out as forward wrote it: rewriting it in place changes nothing
            _, argmax = F.max_pool2d(self._x, self._k, self._s, self._p,
                                     out=self._buffer("y", shape, grad_y.dtype),
                                     argmax_out=self._buffer("argmax_again", shape, np.int64))
        return F.max_pool2d_backward(grad_y, argmax, self._input_shape,
                                     out=self._buffer("grad_x", self._input_shape, grad_y.dtype))


@register_layer("avg_pool2d")
class AvgPool2d(_Pool2d):
    """Average pooling, as torch.nn.AvgPool2d (padded zeros count in the divisor).

    Args:
        kernel_size: int or [kh, kw].
        stride: int or [sh, sw]; default (null) = kernel_size.
        padding: int or [ph, pw], at most half the kernel size.

    Input shape: (N, C, H, W).
    Output shape: (N, C, OH, OW), OH = floor((H + 2 ph - kh) / sh) + 1.
    """

    def forward(self, x, training=True):
        x, shape = self._checked_input(x)
        self._input_shape = x.shape
        y = self._own_buffer("y", shape, x.dtype, x)
        F_pooling.avg_pool2d_into(x, y, self._k, self._s, self._p)
        return y

    def backward(self, grad_y):
        return F.avg_pool2d_backward(grad_y, self._input_shape, self._k, self._s, self._p,
                                     out=self._buffer("grad_x", self._input_shape, grad_y.dtype))


@register_layer("global_avg_pool2d")
class GlobalAvgPool2d(Layer):
    """Mean over each channel's plane.

    Input shape: (N, C, H, W).
    Output shape: (N, C).
    """

    def __init__(self):
        super().__init__()
        self._input_shape = None

    def forward(self, x, training=True):
        self._check_input(x, 4)
        if 0 in x.shape[1:]:
            raise ValueError(f"global_avg_pool2d: x has shape {x.shape}: channels, height and "
                             "width must be >= 1 (only the batch may be empty)")
        x = np.ascontiguousarray(x)
        self._input_shape = x.shape
        n, c = x.shape[:2]
        y = self._buffer("y", (n, c), x.dtype)
        if np.may_share_memory(y, x):
            y = np.empty((n, c), x.dtype)
        return F_pooling.global_avg_pool2d_into(x, y)

    def backward(self, grad_y):
        return F.global_avg_pool2d_backward(grad_y, self._input_shape)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="global_avg_pool2d")
        if len(shape) != 3:
            raise ValueError(f"global_avg_pool2d: expects input shape (C, H, W), got {list(shape)}")
        return (shape[0],)

    def flops(self, input_shape):
        c, h, w = as_shape(input_shape, layer="global_avg_pool2d")
        return c * h * w

    def receptive_step(self, input_shape):
        return None
