"""Shape-only layers: flatten and identity (they return views, never copies)."""
import math

from cnnframe.layers.base import Layer, as_shape
from cnnframe.registry import register_layer


@register_layer("flatten")
class Flatten(Layer):
    """Flatten every axis after the batch axis, as torch.nn.Flatten().

    Input shape: (N, d1, d2, ...).  Output shape: (N, d1 * d2 * ...).
    """

    aliases = True

    def __init__(self):
        super().__init__()
        self._input_shape = None

    def forward(self, x, training=True):
        self._check_input(x)
        if x.ndim < 2:
            raise ValueError(f"flatten: x must have a batch axis and at least one more, "
                             f"got shape {x.shape}")
        self._input_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_y):
        return grad_y.reshape(self._input_shape)

    def output_shape(self, input_shape):
        return (math.prod(as_shape(input_shape, layer="flatten")),)

    def flops(self, input_shape):
        return 0


@register_layer("identity")
class Identity(Layer):
    """Returns its input unchanged (a placeholder, or a named tap in a graph).

    Input shape: any.  Output shape: same as input.
    """

    aliases = True

    def forward(self, x, training=True):
        self._check_input(x)
        return x

    def backward(self, grad_y):
        return grad_y

    def flops(self, input_shape):
        return 0
