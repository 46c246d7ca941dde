"""The hypothesis strategies produce what they promise."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnframe.layers  # noqa: F401
from cnnframe import functional as F
from cnnframe import reference
from cnnframe.registry import get_layer
from cnnframe.testing import strategies as cst
from hypothesis_budget import scaled


@given(cst.conv_geometries())
def test_conv_geometries_are_valid(g):
    n, c, h, w = g.input_shape
    assert c % g.groups == 0 and g.out_channels % g.groups == 0
    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.input_shape)
    wt = rng.standard_normal(g.weight_shape)
    y = F.conv2d(x, wt, **g.functional_kwargs())
    assert y.shape == g.output_shape and min(g.output_shape) >= 1
    np.testing.assert_allclose(y, reference.conv2d(x, wt, **g.functional_kwargs()), atol=1e-10)
    layer = get_layer("conv2d").from_config(g.conv_config())
    assert (n,) + layer.output_shape(g.input_shape[1:]) == g.output_shape


@given(cst.pool_geometries())
def test_pool_geometries_are_valid(g):
    x = np.random.default_rng(0).standard_normal(g.input_shape)
    y, _ = F.max_pool2d(x, g.kernel_size, g.stride, g.padding)
    assert y.shape == g.output_shape
    assert F.avg_pool2d(x, g.kernel_size, g.stride, g.padding).shape == g.output_shape
    layer = get_layer("max_pool2d").from_config(g.pool_config())
    assert layer.output_shape(g.input_shape[1:]) == g.output_shape[1:]


@given(cst.image_batches(dtype=np.float32, min_value=-2, max_value=2))
def test_image_batches(x):
    assert x.ndim == 4 and x.dtype == np.float32
    assert np.all(np.isfinite(x)) and np.all(np.abs(x) <= 2)


@given(cst.image_batches(shape=st.just((2, 3, 4, 4))))
def test_image_batches_fixed_shape(x):
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float64


@settings(max_examples=scaled(10))
@given(cst.inputs_away_from_kinks(get_layer("relu")(), (2, 3, 4, 4), margin=1e-2))
def test_relu_inputs_away_from_zero(x):
    assert np.min(np.abs(x)) >= 1e-2 * 0.9


@settings(max_examples=scaled(10))
@given(cst.inputs_away_from_kinks(get_layer("max_pool2d")(kernel_size=2), (1, 2, 4, 4),
                                  margin=1e-2))
def test_max_pool_inputs_without_near_ties(x):
    windows = x.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4)
    top2 = np.sort(windows, axis=1)[:, -2:]
    assert np.min(top2[:, 1] - top2[:, 0]) >= 1e-2 * 0.9


def test_near_kink_inputs_are_moved():
    from cnnframe.gradcheck import push_off_kinks
    from cnnframe.gradcheck.numeric import Probe, copy_layer
    layer = copy_layer(get_layer("relu")())
    x = np.array([[0.0, 1e-4, -1e-4, 0.5]])
    assert push_off_kinks(Probe(layer, False, False), [x], margin=1e-3) == 0
    assert np.min(np.abs(x)) >= 0.9e-3 and x[0, 3] == 0.5


@given(tile=st.sampled_from([2, 4]), data=st.data())
def test_winograd_geometries_are_in_winograds_domain(tile, data):
    """Every table's Winograd rows take them in float64 (no direct rows there)."""
    from cnnframe.functional import conv_dispatch
    from cnnframe.functional._args import conv_geometry
    g = data.draw(cst.winograd_geometries(tile=tile))
    geom = conv_geometry(g.input_shape, g.weight_shape, **g.functional_kwargs())
    for isa in conv_dispatch.TABLES:
        assert conv_dispatch.choose_algorithm("forward", geom, np.float64,
                                              isa) == f"winograd{tile}"
    assert g.kernel_size == (3, 3) and g.groups == 1 and max(g.padding) <= 2
    assert min(g.input_shape[1], g.out_channels) >= conv_dispatch.WINOGRAD_MIN_CHANNELS


@given(cst.winograd_geometries(tile=4, padding=1, min_pixels=1024, max_batch=1))
def test_winograd_geometries_min_pixels(g):
    from cnnframe.functional import conv_dispatch
    from cnnframe.functional._args import conv_geometry
    oh, ow = g.output_shape[2:]
    assert oh * ow >= 1024 and g.padding == (1, 1) and g.input_shape[2:] == (oh, ow)
    geom = conv_geometry(g.input_shape, g.weight_shape, **g.functional_kwargs())
    _, grad_weight = conv_dispatch.backward_algorithms("auto", geom, np.float64, False)
    assert grad_weight == "winograd4"


@given(cst.direct_geometries())
def test_direct_geometries_are_in_the_direct_domain(g):
    """The AVX-512 table takes them direct in float32, forward and grad_x (whatever this CPU
    has: the table is a pure function of the geometry)."""
    from cnnframe.functional import conv_dispatch
    from cnnframe.functional._args import conv_geometry
    assert g.stride == (1, 1) and g.dilation == (1, 1) and g.groups == 1
    assert all(p < k for p, k in zip(g.padding, g.kernel_size))  # a direct grad_x too
    geom = conv_geometry(g.input_shape, g.weight_shape, **g.functional_kwargs())
    assert conv_dispatch.choose_algorithm("forward", geom, np.float32, "avx512") == "direct"
    y = F.conv2d(np.zeros(g.input_shape, np.float32), np.zeros(g.weight_shape, np.float32),
                 **g.functional_kwargs())
    assert y.shape == g.output_shape


def test_distinct_values_have_no_ties():
    x = cst.distinct_values(np.random.default_rng(0), (2, 3, 5, 7), np.float32)
    assert x.shape == (2, 3, 5, 7) and x.dtype == np.float32
    assert len(np.unique(x)) == x.size and np.all(np.abs(x) <= 0.5)


@given(cst.pool_geometries())
def test_pool_functional_kwargs(g):
    x = np.zeros(g.input_shape)
    assert F.avg_pool2d(x, **g.functional_kwargs()).shape == g.output_shape
