"""cnnframe.functional: stateless ops on numpy arrays, backed by the Cython kernels.

Layouts are NCHW; float32 and float64 are supported and preserved.  Semantics
(output sizes, padding rules) follow torch.nn.functional.
"""
from cnnframe.functional._args import conv_output_size
from cnnframe.functional._weight_cache import WeightCache
from cnnframe.functional._workspace import release_scratch, set_scratch_limit
from cnnframe.functional.conv import conv2d, conv2d_backward
from cnnframe.functional.correlate import convolve2d, correlate2d
from cnnframe.functional.pooling import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d,
                                         global_avg_pool2d_backward, max_pool2d,
                                         max_pool2d_backward)

__all__ = [
    "conv2d", "conv2d_backward",
    "max_pool2d", "max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward",
    "global_avg_pool2d", "global_avg_pool2d_backward",
    "correlate2d", "convolve2d",
    "set_scratch_limit", "release_scratch",
    "conv_output_size",
    "WeightCache",
]

from cnnframe.functional.normalization import (batch_norm_backward, batch_norm_eval,  # noqa: E402
                                               batch_norm_train, relu, relu_backward)

__all__ += [
    "batch_norm_train", "batch_norm_eval", "batch_norm_backward",
    "relu", "relu_backward",
]

from cnnframe.functional.activations import (elu, elu_backward, gelu, gelu_backward,  # noqa: E402
                                             hardswish, hardswish_backward, prelu, prelu_backward,
                                             silu, silu_backward)
from cnnframe.functional.adaptive_pool import (adaptive_avg_pool2d,  # noqa: E402
                                               adaptive_avg_pool2d_backward, adaptive_max_pool2d,
                                               adaptive_max_pool2d_backward)
from cnnframe.functional.conv_transpose import (conv_transpose2d,  # noqa: E402
                                                conv_transpose2d_backward)
from cnnframe.functional.norms import (group_norm, group_norm_backward,  # noqa: E402
                                       instance_norm, instance_norm_backward, layer_norm,
                                       layer_norm_backward)
from cnnframe.functional.upsample import interpolate, interpolate_backward  # noqa: E402

__all__ += [
    "group_norm", "group_norm_backward", "layer_norm", "layer_norm_backward",
    "instance_norm", "instance_norm_backward",
    "gelu", "gelu_backward", "silu", "silu_backward", "hardswish", "hardswish_backward",
    "elu", "elu_backward", "prelu", "prelu_backward",
    "conv_transpose2d", "conv_transpose2d_backward",
    "interpolate", "interpolate_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
]
