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
