"""Built-in layers; importing this package registers them (see cnnframe.registry).

Every layer follows the protocol of :class:`cnnframe.layers.Layer`.
"""
from cnnframe.layers.base import INITIALIZERS, Layer, init_array
from cnnframe.layers.activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from cnnframe.layers.conv import Conv2d
from cnnframe.layers.dropout import Dropout
from cnnframe.layers.linear import Linear
from cnnframe.layers.merge import Add, Concat
from cnnframe.layers.normalization import BatchNorm1d, BatchNorm2d
from cnnframe.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from cnnframe.layers.reshape import Flatten, Identity

__all__ = [
    "Layer", "INITIALIZERS", "init_array",
    "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Linear", "Flatten", "Identity",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "BatchNorm2d", "BatchNorm1d",
    "Add", "Concat",
]

from cnnframe.layers.activations_extra import ELU, GELU, Hardswish, PReLU, SiLU  # noqa: E402
from cnnframe.layers.conv_transpose import ConvTranspose2d  # noqa: E402
from cnnframe.layers.dropout import Dropout2d  # noqa: E402
from cnnframe.layers.norms import GroupNorm, InstanceNorm2d, LayerNorm  # noqa: E402
from cnnframe.layers.resample import AdaptiveAvgPool2d, AdaptiveMaxPool2d, Upsample  # noqa: E402

__all__ += [
    "GroupNorm", "LayerNorm", "InstanceNorm2d", "GELU", "SiLU", "Hardswish", "ELU", "PReLU",
    "ConvTranspose2d", "Upsample", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Dropout2d",
]

# Layers for the operations of imported ONNX graphs (cnnframe.onnx).
from cnnframe.layers.elementwise import Elementwise, ElementwiseConst, Clip  # noqa: E402
from cnnframe.layers.local_response_norm import LRN  # noqa: E402
from cnnframe.layers.matmul import MatMulConst  # noqa: E402
from cnnframe.layers.pooling_general import Pool2d  # noqa: E402
from cnnframe.layers.shape_ops import Pad, Reshape, Transpose  # noqa: E402

__all__ += ["Elementwise", "ElementwiseConst", "Clip", "LRN", "MatMulConst", "Pool2d", "Pad", "Reshape",
            "Transpose"]
