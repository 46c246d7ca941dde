"""Hypothesis strategies for layer tests: geometries, image batches, inputs away from kinks.

For example::

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
           "winograd_geometries", "direct_geometries", "image_batches", "inputs_away_from_kinks",
           "distinct_values"]


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
        """Config of the built-in pooling layers for this geometry (JSON lists)."""
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}

    def functional_kwargs(self):
        """Keyword arguments of ``cnnframe.functional.max_pool2d`` / ``avg_pool2d``."""
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)


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


def _winograd_sizes(draw, tile, min_pixels, max_size):
    """(OH, OW): multiples of `tile` with OH * OW >= min_pixels, up to max_size (raised to
    leave room for min_pixels); for tile 2 one of them is not a multiple of 4."""
    top = max(max_size, int(np.ceil(np.sqrt(min_pixels))) + 8)

    def sizes(lo, two_mod_four):
        return [v for v in range(tile, top + 1, tile)
                if v >= lo and (not two_mod_four or v % 4 == 2)]

    first_odd = tile == 2 and draw(st.booleans())  # which axis is 2 mod 4 (tile 2)
    oh = draw(st.sampled_from(sizes(-(-min_pixels // top), first_odd)))
    ow = draw(st.sampled_from(sizes(-(-min_pixels // oh), tile == 2 and not first_odd)))
    return oh, ow


@st.composite
def winograd_geometries(draw, tile=2, padding=None, max_batch=2, max_channels=24, max_size=24,
                        min_pixels=None):
    """conv2d geometries that conv2d runs with Winograd F(tile x tile, 3x3) in the forward pass.

    3x3 kernels, stride 1, dilation 1, groups 1, at least ``WINOGRAD_MIN_CHANNELS``
    (16) input and output channels, and output sizes that are multiples of `tile`
    with at least ``WINOGRAD_MIN_PIXELS`` (256) pixels for ``tile=2`` (never both
    multiples of 4: those go to F(4x4)) or ``WINOGRAD43_MIN_PIXELS`` (64) for
    ``tile=4`` (thresholds read from ``cnnframe.functional.conv_dispatch`` when drawn).
    Where the direct kernel runs (float32, AVX-512 or AVX2) conv2d's "auto" prefers it
    for many of these; pass ``algorithm="winograd"`` to reach Winograd.

    Parameters
    ----------
    tile : {2, 4}
    padding : int, optional
        The padding of both axes (0, 1 or 2; 1 keeps the input size, so the input
        gradient takes the same tile); by default each axis draws 0, 1 or 2.
    max_batch, max_channels : int
        Up to this many images and channels (at least 16 channels).
    max_size : int
        Largest output size, unless `min_pixels` needs more.
    min_pixels : int, optional
        Output maps of at least this many pixels (e.g. 1024 for the weight gradient's
        F(4x4)).

    Returns
    -------
    ConvGeometry
    """
    from cnnframe.functional import conv_dispatch as conv  # the thresholds of the tables
    if tile not in (2, 4):
        raise ValueError(f"winograd_geometries: tile must be 2 or 4, got {tile!r}")
    least = conv.WINOGRAD_MIN_PIXELS if tile == 2 else conv.WINOGRAD43_MIN_PIXELS
    oh, ow = _winograd_sizes(draw, tile, max(least, min_pixels or 0), max_size)
    lo = conv.WINOGRAD_MIN_CHANNELS
    cin = draw(st.integers(lo, max(lo, max_channels)))
    cout = draw(st.integers(lo, max(lo, max_channels)))
    ph, pw = ((padding, padding) if padding is not None
              else (draw(st.integers(0, 2)), draw(st.integers(0, 2))))
    n = draw(st.integers(1, max_batch))
    # OH = H + 2p - 2 for a 3x3 kernel at stride 1
    shape = (n, cin, oh + 2 - 2 * ph, ow + 2 - 2 * pw)
    return ConvGeometry(shape, cout, (3, 3), (1, 1), (ph, pw), (1, 1), 1)


# Kernel shapes of the direct kernel's measured domain (functional/conv_dispatch.py)
DIRECT_KERNELS = ((3, 3), (5, 5), (7, 7), (1, 1), (1, 3), (3, 1), (3, 5), (5, 3), (1, 7), (7, 1))


def _fills_vectors(pixels):
    """The direct rows' rule: the output pixels fill at least 3/4 of their 16-lane vectors."""
    return pixels >= 0.75 * -(-pixels // 16) * 16


@st.composite
def direct_geometries(draw, max_batch=2, max_channels=16, max_size=20):
    """float32 conv2d geometries in the direct kernel's domain (conv_dispatch's tables).

    Stride 1, dilation 1, groups 1; kernels of ``DIRECT_KERNELS``; padding at most
    K - 1 per axis (so the input gradient is a direct conv too); output maps whose
    pixels fill at least 3/4 of their 16-float vectors, 1x1 kernels on maps of a
    multiple of 16 pixels up to 256, and at most 16 output channels (so 3x3 convs
    stay direct where Winograd would apply).  On a CPU with the AVX-512 micro-kernels
    ``cnnframe.functional.conv2d`` runs these with the direct kernel in float32;
    elsewhere it falls back to im2col + GEMM or Winograd.

    Returns
    -------
    ConvGeometry
    """
    kh, kw = draw(st.sampled_from(DIRECT_KERNELS))
    if (kh, kw) == (1, 1):
        pixels = 16 * draw(st.integers(1, 16))
        oh = draw(st.sampled_from([d for d in range(1, max(max_size, 16) + 1)
                                   if pixels % d == 0 and pixels // d <= max(max_size, 16)]))
        ow = pixels // oh
    else:
        oh, ow = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
        while not _fills_vectors(oh * ow):
            ow += 1
    # the input size for padding p: H = OH + KH - 1 - 2p >= 1
    ph = draw(st.integers(0, min(kh - 1, (oh + kh - 2) // 2)))
    pw = draw(st.integers(0, min(kw - 1, (ow + kw - 2) // 2)))
    n = draw(st.integers(1, max_batch))
    cin, cout = draw(st.integers(1, max_channels)), draw(st.integers(1, min(16, max_channels)))
    shape = (n, cin, oh + kh - 1 - 2 * ph, ow + kw - 1 - 2 * pw)
    return ConvGeometry(shape, cout, (kh, kw), (1, 1), (ph, pw), (1, 1), 1)


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


def distinct_values(rng, shape, dtype):
    """An array of `shape` with no two equal values (a shuffled grid in [-0.5, 0.5)).

    Max pooling has a unique maximum in every window, so its argmax and the
    gradient are well defined, and the values are 1 / size apart: far more than a
    finite-difference step.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    dtype : float dtype

    Returns
    -------
    ndarray of `shape` and `dtype`
    """
    size = int(np.prod(shape))
    values = (rng.permutation(size) - size / 2) / max(size, 1)
    return values.reshape(shape).astype(dtype)
