"""cnnframe-swish: an example cnnframe plugin (Swish activation, separable conv block)."""
from cnnframe_swish.layers import SeparableConv2d, Swish

__all__ = ["Swish", "SeparableConv2d"]
