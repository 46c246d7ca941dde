"""Resampling layers: upsampling and adaptive pooling (cnnframe_ext.resample kernels)."""
import math
import numbers

import numpy as np

from cnnframe.functional import adaptive_pool as FP
from cnnframe.functional import upsample as FU
from cnnframe.layers.base import Layer, as_shape, to_json
from cnnframe.registry import register_layer


def _image_shape(input_shape, name):
    shape = as_shape(input_shape, layer=name)
    if len(shape) != 3:
        raise ValueError(f"{name}: expects input shape (C, H, W), got {list(shape)}")
    return shape


@register_layer("upsample")
class Upsample(Layer):
    """Resize images by nearest or bilinear interpolation, as torch.nn.Upsample.

    Give exactly one of `size` and `scale_factor`.

    Args:
        size: int or [oh, ow]: the output size.
        scale_factor: number or [sh, sw]: OH = floor(H * sh).  Unless
            recompute_scale_factor is true, source coordinates use 1 / scale_factor,
            as PyTorch does.
        mode: "nearest" (default; PyTorch's legacy nearest: pixel floor(o * H / OH))
            or "bilinear".
        align_corners: bilinear only: true maps corner pixels onto each other; false
            or null (default) uses pixel centres.  Must be null for "nearest".
        recompute_scale_factor: true computes the coordinates from the output size.

    Input shape: (N, C, H, W).  Output shape: (N, C, OH, OW).
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.size, self.scale_factor = to_json(size), to_json(scale_factor)
        if isinstance(self.scale_factor, numbers.Real) and not isinstance(self.scale_factor, bool):
            self.scale_factor = float(self.scale_factor)
        elif isinstance(self.scale_factor, list):
            self.scale_factor = [float(s) if isinstance(s, numbers.Real) and not isinstance(
                s, bool) else s for s in self.scale_factor]
        self.mode, self.align_corners = mode, align_corners
        self.recompute_scale_factor = recompute_scale_factor
        self._args = dict(size=self.size, scale_factor=self.scale_factor, mode=mode,
                          align_corners=align_corners,
                          recompute_scale_factor=recompute_scale_factor)
        FU.check_resize_args(**self._args, fn="upsample")
        self._input_shape = None

    def output_shape(self, input_shape):
        c, h, w = _image_shape(input_shape, "upsample")
        out_hw, _, _ = FU.resize_plan((h, w), **self._args, fn="upsample")
        return (c, *out_hw)

    def forward(self, x, training=True):
        self._check_input(x, 4)
        self._input_shape = x.shape
        shape = (x.shape[0], *self.output_shape(x.shape[1:]))
        return FU.interpolate(x, **self._args, out=self._buffer("y", shape, x.dtype))

    def backward(self, grad_y):
        return FU.interpolate_backward(grad_y, self._input_shape, **self._args,
                                       out=self._buffer("grad_x", self._input_shape,
                                                        grad_y.dtype))

    def flops(self, input_shape):
        c, oh, ow = self.output_shape(input_shape)
        return (1 if self.mode == "nearest" else 6) * c * oh * ow

    def receptive_step(self, input_shape):
        # upsampling cannot shrink the receptive-field jump below 1: stride 1
        return ((1, 1) if self.mode == "nearest" else (2, 2)), (1, 1)


class _AdaptivePool2d(Layer):
    """Shared parts of adaptive average and max pooling."""

    def __init__(self, output_size):
        super().__init__()
        name = self.type_name
        self.output_size = to_json(output_size)
        if isinstance(self.output_size, list):
            if len(self.output_size) != 2:
                raise ValueError(f"{name}: output_size must be an int or a pair [oh, ow] "
                                 f"(null keeps that input size), got {output_size!r}")
            FP.output_hw(self.output_size, (1, 1), name)
        else:
            FP.output_hw(self.output_size, None, name)
        self._input_shape = None

    def output_shape(self, input_shape):
        c, h, w = _image_shape(input_shape, self.type_name)
        return (c, *FP.output_hw(self.output_size, (h, w), self.type_name))

    def flops(self, input_shape):
        c, h, w = _image_shape(input_shape, self.type_name)
        _, oh, ow = self.output_shape(input_shape)
        return c * oh * ow * math.ceil(h / oh) * math.ceil(w / ow)

    def receptive_step(self, input_shape):
        _, h, w = _image_shape(input_shape, self.type_name)
        _, oh, ow = self.output_shape(input_shape)
        if (oh, ow) == (1, 1):
            return None  # global pooling: each output sees its whole plane
        # the largest window and the smallest step between windows
        return ((-(-h // oh) + (h % oh > 0), -(-w // ow) + (w % ow > 0)),
                (max(1, h // oh), max(1, w // ow)))


@register_layer("adaptive_avg_pool2d")
class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Adaptive average pooling to a fixed output size, as torch.nn.AdaptiveAvgPool2d.

    Output row i averages input rows [floor(i H / OH), ceil((i + 1) H / OH)), and
    likewise for columns (output_size 1 is global average pooling, keeping H = W = 1).

    Args:
        output_size: int or [oh, ow]; null in the pair keeps that input size.

    Input shape: (N, C, H, W).  Output shape: (N, C, OH, OW).
    """

    def forward(self, x, training=True):
        self._check_input(x, 4)
        self._input_shape = x.shape
        shape = (x.shape[0], *self.output_shape(x.shape[1:]))
        return FP.adaptive_avg_pool2d(x, self.output_size, out=self._buffer("y", shape, x.dtype))

    def backward(self, grad_y):
        return FP.adaptive_avg_pool2d_backward(
            grad_y, self._input_shape,
            out=self._buffer("grad_x", self._input_shape, grad_y.dtype))


@register_layer("adaptive_max_pool2d")
class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Adaptive max pooling to a fixed output size, as torch.nn.AdaptiveMaxPool2d.

    Output row i takes the maximum over input rows [floor(i H / OH),
    ceil((i + 1) H / OH)), and likewise for columns; a NaN propagates.

    Args:
        output_size: int or [oh, ow]; null in the pair keeps that input size.

    Input shape: (N, C, H, W).  Output shape: (N, C, OH, OW).
    """

    def forward(self, x, training=True):
        self._check_input(x, 4)
        self._input_shape = x.shape
        shape = (x.shape[0], *self.output_shape(x.shape[1:]))
        y, self._argmax = FP.adaptive_max_pool2d(
            x, self.output_size, out=self._buffer("y", shape, x.dtype),
            argmax_out=self._buffer("argmax", shape, np.int64))
        return y

    def backward(self, grad_y):
        return FP.adaptive_max_pool2d_backward(
            grad_y, self._argmax, self._input_shape,
            out=self._buffer("grad_x", self._input_shape, grad_y.dtype))
