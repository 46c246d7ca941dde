"""Hypothesis strategies for layer tests: geometries, image batches, inputs away from kinks.

    from hypothesis import given
    from cnnframe.testing import strategies as cst

    @given(cst.conv_geometries())
    def test_my_conv(geom):
        layer = MyConv(**geom.conv_config())
        x = np.zeros(geom.input_shape)
        assert layer.forward(x).shape == geom.output_shape
"""
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cnnframe.functional import conv_output_size

__all__ = ["ConvGeometry", "PoolGeometry", "conv_geometries", "pool_geometries",
           "image_batches", "inputs_away_from_kinks"]


def _out(size, k, s, p, d=1):
    return conv_output_size(size, k, s, p, d)


@dataclass(frozen=True)
class ConvGeometry:
    """A consistent conv2d geometry: shapes with the batch dimension."""
    input_shape: tuple          # (N, C, H, W)
    out_channels: int
    kernel_size: tuple          # (kh, kw)
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int

    @property
    def weight_shape(self):
        return (self.out_channels, self.input_shape[1] // self.groups) + tuple(self.kernel_size)

    @property
    def output_shape(self):
        n, _, h, w = self.input_shape
        return (n, self.out_channels,
                _out(h, self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0]),
                _out(w, self.kernel_size[1], self.stride[1], self.padding[1], self.dilation[1]))

    def conv_config(self, **extra):
        """Config of the built-in ``conv2d`` layer for this geometry (JSON lists)."""
        cfg = {"in_channels": self.input_shape[1], "out_channels": self.out_channels,
               "kernel_size": list(self.kernel_size), "stride": list(self.stride),
               "padding": list(self.padding), "dilation": list(self.dilation),
               "groups": self.groups}
        cfg.update(extra)
        return cfg

    def functional_kwargs(self):
        """Keyword arguments of ``cnnframe.functional.conv2d``."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


@dataclass(frozen=True)
class PoolGeometry:
    """A consistent pooling geometry (padding at most half the kernel, as PyTorch)."""
    input_shape: tuple
    kernel_size: tuple
    stride: tuple
    padding: tuple

    @property
    def output_shape(self):
        n, c, h, w = self.input_shape
        return (n, c, _out(h, self.kernel_size[0], self.stride[0], self.padding[0]),
                _out(w, self.kernel_size[1], self.stride[1], self.padding[1]))

    def pool_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}


@st.composite
def _axis_conv(draw, max_size, max_kernel, max_stride, max_padding, max_dilation):
    k = draw(st.integers(1, max_kernel))
    d = draw(st.integers(1, max_dilation)) if k > 1 else 1
    s = draw(st.integers(1, max_stride))
    p = draw(st.integers(0, max_padding))
    extent = d * (k - 1) + 1
    lo = max(1, extent - 2 * p)
    size = draw(st.integers(lo, max(lo, max_size)))
    return size, k, s, p, d


@st.composite
def conv_geometries(draw, max_batch=3, max_channels=6, max_size=10, max_kernel=4,
                    max_stride=3, max_padding=2, max_dilation=3, grouped=True):
    """Valid conv2d geometries: every output size >= 1, groups divide both channel counts.

    Returns :class:`ConvGeometry` (``input_shape``, ``out_channels``, ``kernel_size``,
    ``stride``, ``padding``, ``dilation``, ``groups``; ``output_shape``, ``weight_shape``,
    ``conv_config()``, ``functional_kwargs()``).
    """
    groups = draw(st.integers(1, max_channels)) if grouped else 1
    cin = groups * draw(st.integers(1, max(1, max_channels // groups)))
    cout = groups * draw(st.integers(1, max(1, max_channels // groups)))
    n = draw(st.integers(1, max_batch))
    h, kh, sh, ph, dh = draw(_axis_conv(max_size, max_kernel, max_stride, max_padding,
                                        max_dilation))
    w, kw, sw, pw, dw = draw(_axis_conv(max_size, max_kernel, max_stride, max_padding,
                                        max_dilation))
    return ConvGeometry((n, cin, h, w), cout, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups)


@st.composite
def pool_geometries(draw, max_batch=3, max_channels=4, max_size=10, max_kernel=4, max_stride=3):
    """Valid max/avg pooling geometries (padding <= kernel // 2, kernel fits the padded input)."""
    n = draw(st.integers(1, max_batch))
    c = draw(st.integers(1, max_channels))
    dims = []
    for _ in range(2):
        k = draw(st.integers(1, max_kernel))
        p = draw(st.integers(0, k // 2))
        s = draw(st.integers(1, max_stride))
        lo = max(1, k - 2 * p)
        dims.append((draw(st.integers(lo, max(lo, max_size))), k, s, p))
    (h, kh, sh, ph), (w, kw, sw, pw) = dims
    return PoolGeometry((n, c, h, w), (kh, kw), (sh, sw), (ph, pw))


def image_batches(shape=None, dtype=np.float64, min_value=-3.0, max_value=3.0, max_batch=3,
                  max_channels=4, max_size=10):
    """NCHW float arrays with finite values in [min_value, max_value].

    `shape` is a tuple, a strategy of tuples, or None (random small shapes).
    """
    if shape is None:
        shape = st.tuples(st.integers(1, max_batch), st.integers(1, max_channels),
                          st.integers(1, max_size), st.integers(1, max_size))
    width = 32 if np.dtype(dtype) == np.float32 else 64
    elements = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False,
                         width=width)
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def inputs_away_from_kinks(draw, layer, input_shape, margin=1e-3, dtype=np.float64):
    """Inputs for `layer` at least `margin` away from its kinks along every coordinate.

    Draws standard normal inputs (from a hypothesis-chosen seed) and moves the
    elements that sit within `margin` of a non-differentiable point (ReLU at 0,
    max-pool near-ties, clipping bounds), found numerically with the layer's own
    forward (in eval mode), so it works for any layer.  Returns an array, or a
    list for a list of shapes.  The layer itself is not modified.
    """
    from cnnframe.gradcheck.numeric import Probe, copy_layer, push_off_kinks
    multi = (getattr(layer, "num_inputs", 1) is None or
             (isinstance(input_shape, list) and isinstance(input_shape[0], (list, tuple))))
    shapes = list(input_shape) if multi else [input_shape]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(tuple(s)) for s in shapes]
    lay = copy_layer(layer, np.float64)
    left = push_off_kinks(Probe(lay, False, multi), xs, margin=margin, seed=seed)
    if left:
        from hypothesis import assume
        assume(False)
    xs = [x.astype(dtype) for x in xs]
    return xs if multi else xs[0]
