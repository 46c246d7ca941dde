"""Layer behaviour beyond gradients: configs, shapes, init, dtypes, batch norm, dropout."""
import math
import re

import numpy as np
import pytest

from cnnframe import reference
from cnnframe.layers import INITIALIZERS, Layer, init_array
from cnnframe.registry import available_layers, get_layer

BUILTIN = ["conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "linear", "flatten", "relu",
           "leaky_relu", "sigmoid", "tanh", "softmax", "dropout", "batch_norm2d", "batch_norm1d",
           "add", "concat", "identity"]

# name -> (config, input shape(s) without batch)
CASES = {
    "conv2d": ({"in_channels": 3, "out_channels": 4, "kernel_size": [3, 2], "stride": 2,
                "padding": 1, "seed": 3}, (3, 7, 6)),
    "max_pool2d": ({"kernel_size": 2}, (2, 5, 5)),
    "avg_pool2d": ({"kernel_size": 3, "stride": 1, "padding": 1}, (2, 4, 4)),
    "global_avg_pool2d": ({}, (3, 4, 5)),
    "linear": ({"in_features": 6, "out_features": 3, "seed": 1}, (6,)),
    "flatten": ({}, (2, 3, 4)),
    "relu": ({}, (3, 4)),
    "leaky_relu": ({"negative_slope": 0.1}, (3, 4)),
    "sigmoid": ({}, (5,)),
    "tanh": ({}, (2, 2, 2)),
    "softmax": ({"axis": -1}, (2, 3)),
    "dropout": ({"p": 0.3, "seed": 5}, (4, 4)),
    "batch_norm2d": ({"num_features": 3, "momentum": 0.2}, (3, 2, 2)),
    "batch_norm1d": ({"num_features": 4}, (4,)),
    "add": ({}, [(2, 3), (2, 3), (2, 3)]),
    "concat": ({"axis": 2}, [(2, 3), (2, 1)]),
    "identity": ({}, (3,)),
}


def make_input(shape, rng, n=4, dtype=np.float32):
    if isinstance(shape, list):
        return [rng.standard_normal((n, *s)).astype(dtype) for s in shape]
    return rng.standard_normal((n, *shape)).astype(dtype)


def test_all_builtin_names_are_registered():
    assert set(BUILTIN) <= set(available_layers())
    assert set(CASES) == set(BUILTIN)
    for name in BUILTIN:
        assert get_layer(name).type_name == name


@pytest.mark.parametrize("name", BUILTIN)
def test_config_round_trip_gives_an_equal_layer(name, rng):
    cfg, shape = CASES[name]
    layer = get_layer(name).from_config(cfg)
    full = layer.get_config()
    for k, v in cfg.items():
        assert full[k] == v
    again = get_layer(name).from_config(full)
    assert again.get_config() == full
    for k in layer.params:
        np.testing.assert_array_equal(again.params[k], layer.params[k])
    x = make_input(shape, rng)
    np.testing.assert_array_equal(again.forward(x, training=False), layer.forward(x, training=False))


@pytest.mark.parametrize("name", BUILTIN)
def test_output_shape_matches_forward_and_grad_shapes_match_params(name, rng):
    cfg, shape = CASES[name]
    layer = get_layer(name).from_config(cfg)
    x = make_input(shape, rng)
    y = layer.forward(x)
    assert y.dtype == np.float32
    assert y.shape == (4, *layer.output_shape(shape))
    gx = layer.backward(np.ones_like(y))
    if isinstance(x, list):
        assert [g.shape for g in gx] == [a.shape for a in x]
    else:
        assert gx.shape == x.shape and gx.dtype == x.dtype
    assert layer.params.keys() == layer.grads.keys()
    for k in layer.params:
        assert layer.grads[k].shape == layer.params[k].shape


@pytest.mark.parametrize("name", BUILTIN)
def test_astype_float64_converts_everything(name, rng):
    cfg, shape = CASES[name]
    layer = get_layer(name).from_config(cfg)
    assert layer.astype(np.float64) is layer
    for store in (layer.params, layer.grads, layer.buffers):
        assert all(v.dtype == np.float64 for v in store.values())
    y = layer.forward(make_input(shape, rng, dtype=np.float64))
    assert y.dtype == np.float64


def test_parameter_layouts_follow_pytorch():
    conv = get_layer("conv2d")(6, 8, (3, 5), groups=2, bias=True)
    assert conv.params["weight"].shape == (8, 3, 3, 5) and conv.params["bias"].shape == (8,)
    assert "bias" not in get_layer("conv2d")(2, 2, 1, bias=False).params
    lin = get_layer("linear")(7, 4)
    assert lin.params["weight"].shape == (4, 7) and lin.params["bias"].shape == (4,)
    bn = get_layer("batch_norm2d")(5)
    assert set(bn.params) == {"weight", "bias"}
    assert set(bn.buffers) == {"running_mean", "running_var"}


def test_conv_and_linear_forward_match_plain_numpy(rng):
    conv = get_layer("conv2d")(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, seed=0)
    conv.params["bias"][:] = rng.standard_normal(6)
    x = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
    expected = reference.conv2d(x.astype(np.float64), conv.params["weight"].astype(np.float64),
                                conv.params["bias"].astype(np.float64), 2, 1, 1, 2)
    np.testing.assert_allclose(conv.forward(x), expected, rtol=1e-4, atol=1e-5)
    lin = get_layer("linear")(5, 3, seed=0)
    lin.params["bias"][:] = [1, 2, 3]
    x = rng.standard_normal((4, 5)).astype(np.float32)
    w = lin.params["weight"]
    expected = np.array([[sum(x[n, i] * w[o, i] for i in range(5)) + lin.params["bias"][o]
                          for o in range(3)] for n in range(4)])
    np.testing.assert_allclose(lin.forward(x), expected, rtol=1e-5, atol=1e-6)


def test_padding_same_keeps_the_size(rng):
    conv = get_layer("conv2d")(2, 3, 5, padding="same", dilation=2)
    assert conv.output_shape((2, 9, 7)) == (3, 9, 7)
    assert conv.forward(rng.standard_normal((1, 2, 9, 7)).astype(np.float32)).shape == (1, 3, 9, 7)
    with pytest.raises(ValueError, match="same"):
        get_layer("conv2d")(2, 3, 4, padding="same")


SCALED_INITIALIZERS = [i for i in INITIALIZERS if i not in ("dirac", "orthogonal", "constant")]


@pytest.mark.parametrize("init", SCALED_INITIALIZERS)
def test_initialisers_have_the_documented_scale(init):
    rng = np.random.default_rng(0)
    fan_in, fan_out = 300, 200
    w = init_array((400, 300), init, rng, fan_in, fan_out, np.float64)
    expected_std = {"he_normal": math.sqrt(2 / fan_in), "he_uniform": math.sqrt(2 / fan_in),
                    "xavier_normal": math.sqrt(2 / 500), "xavier_uniform": math.sqrt(2 / 500),
                    "lecun_normal": math.sqrt(1 / fan_in),
                    "lecun_uniform": math.sqrt(1 / fan_in) / math.sqrt(3),
                    "zeros": 0.0, "ones": 0.0}[init]
    assert w.std() == pytest.approx(expected_std, rel=0.03, abs=1e-12)
    if init == "ones":
        assert (w == 1).all()
    if init.endswith("uniform"):
        bound = {"he": math.sqrt(6 / fan_in), "xavier": math.sqrt(6 / 500),
                 "lecun": math.sqrt(1 / fan_in)}[init.split("_")[0]]
        assert np.abs(w).max() <= bound


def test_seeded_init_is_reproducible_and_seeds_differ():
    a = get_layer("conv2d")(3, 8, 3, seed=7).params["weight"]
    b = get_layer("conv2d")(3, 8, 3, seed=7).params["weight"]
    c = get_layer("conv2d")(3, 8, 3, seed=8).params["weight"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32
    assert get_layer("linear")(3, 4, init="zeros").params["weight"].sum() == 0


@pytest.mark.parametrize("name,cfg,match", [
    ("conv2d", {"in_channels": 3, "out_channels": 4}, "missing required config key 'kernel_size'"),
    ("conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "strides": 2},
     "unknown config key 'strides'; valid keys: in_channels, out_channels, kernel_size, stride"),
    ("conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2},
     "groups=2 must divide"),
    ("conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 0}, "kernel_size must be >= 1"),
    ("linear", {"in_features": 3, "out_features": 4, "init": "kaiming"}, "init must be one of"),
    ("dropout", {"p": 1.5}, "p must be"),
    ("max_pool2d", {"kernel_size": 2, "padding": 2}, "at most half"),
    ("batch_norm2d", {"num_features": 3, "momentum": -0.1}, "momentum"),
    ("softmax", {"axis": 0}, "batch axis"),
    ("relu", {"inplace": True}, "unknown config key 'inplace'; valid keys: \\(none\\)"),
])
def test_bad_layer_configs_raise_naming_the_problem(name, cfg, match):
    with pytest.raises((ValueError, TypeError), match=match):
        get_layer(name).from_config(cfg)


def test_shape_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"conv2d: expects input shape \(in_channels=3"):
        get_layer("conv2d")(3, 4, 3).output_shape((2, 8, 8))
    with pytest.raises(ValueError, match="add a flatten layer"):
        get_layer("linear")(12, 2).output_shape((3, 2, 2))
    with pytest.raises(ValueError, match="equal shapes"):
        get_layer("add")().output_shape([(2, 3), (2, 4)])
    with pytest.raises(TypeError, match="float64 but the layer's parameters are float32"):
        get_layer("linear")(2, 2).forward(np.zeros((1, 2)))


# --- batch norm --------------------------------------------------------------------------------

def test_batch_norm2d_training_normalises_and_updates_running_stats_like_pytorch(rng):
    bn = get_layer("batch_norm2d")(3, momentum=0.3)
    bn.params["weight"][:] = [1.0, 2.0, 0.5]
    bn.params["bias"][:] = [0.0, -1.0, 3.0]
    x = (rng.standard_normal((8, 3, 4, 5)) * [[[2.0]], [[0.5]], [[3.0]]] + 4).astype(np.float32)
    y = bn.forward(x, training=True)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    var = x64.var(axis=(0, 2, 3))
    expected = ((x64 - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
                * np.array([1.0, 2.0, 0.5])[:, None, None] + np.array([0, -1.0, 3])[:, None, None])
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    m = 8 * 4 * 5
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.3 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.7 + 0.3 * var * m / (m - 1), rtol=1e-5)


def test_batch_norm_eval_uses_running_stats_and_does_not_update_them(rng):
    bn = get_layer("batch_norm1d")(4)
    bn.buffers["running_mean"][:] = [1, 2, 3, 4]
    bn.buffers["running_var"][:] = [4, 1, 0.25, 9]
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = bn.forward(x, training=False)
    expected = (x - [1, 2, 3, 4]) / np.sqrt(np.array([4, 1, 0.25, 9]) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.buffers["running_mean"], [1, 2, 3, 4])


def test_batch_norm_running_stats_converge_to_the_data_stats(rng):
    bn = get_layer("batch_norm2d")(2, momentum=0.1)
    for _ in range(150):
        bn.forward((rng.standard_normal((16, 2, 3, 3)) * [[[3.0]], [[0.5]]] + [[[1.0]], [[-2.0]]])
                   .astype(np.float32))
    np.testing.assert_allclose(bn.buffers["running_mean"], [1, -2], atol=0.15)
    np.testing.assert_allclose(bn.buffers["running_var"], [9, 0.25], rtol=0.15)


def test_batch_norm_training_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match="more than one value"):
        get_layer("batch_norm1d")(3).forward(np.zeros((1, 3), np.float32))


# --- dropout -------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_mask_statistics_and_scaling(p):
    layer = get_layer("dropout")(p=p, seed=0)
    x = np.ones((200, 500), np.float32)
    y = layer.forward(x)
    kept = y != 0
    # binomial: 1e5 draws, the kept fraction is within 5 standard deviations of 1 - p
    sd = math.sqrt(p * (1 - p) / x.size)
    assert abs(kept.mean() - (1 - p)) < 5 * sd
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 5 * sd / (1 - p)
    g = layer.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(g != 0, kept)
    # masks differ between calls and columns are independent
    assert not np.array_equal(layer.forward(x) != 0, kept)


def test_dropout_is_the_identity_in_eval_mode_and_replays_from_rng_state(rng):
    layer = get_layer("dropout")(p=0.5, seed=1)
    x = rng.standard_normal((3, 10)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    np.testing.assert_array_equal(layer.backward(x), x)
    state = layer.rng.bit_generator.state
    a = layer.forward(x).copy()
    layer.rng.bit_generator.state = state
    np.testing.assert_array_equal(layer.forward(x), a)
    assert get_layer("dropout").stochastic


def test_dropout_extremes():
    x = np.ones((4, 4), np.float32)
    np.testing.assert_array_equal(get_layer("dropout")(p=0.0).forward(x), x)
    np.testing.assert_array_equal(get_layer("dropout")(p=1.0).forward(x), 0 * x)


# --- buffers, numerics -------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_reused_buffers_give_the_same_results_and_inputs_stay_untouched(name, rng):
    cfg, shape = CASES[name]
    fresh = get_layer(name).from_config(cfg)
    reuse = get_layer(name).from_config(cfg)
    reuse.reuse_buffers = True
    for _ in range(2):
        x = make_input(shape, rng)
        before = [a.copy() for a in (x if isinstance(x, list) else [x])]
        y_state = getattr(fresh, "rng", None) and fresh.rng.bit_generator.state
        if y_state:
            reuse.rng.bit_generator.state = y_state
        y1, y2 = fresh.forward(x), reuse.forward(x)
        np.testing.assert_array_equal(y1, y2)
        g = rng.standard_normal(y1.shape).astype(np.float32)
        g_before = g.copy()
        g1, g2 = fresh.backward(g), reuse.backward(g)
        for a, b in zip(g1 if isinstance(g1, list) else [g1], g2 if isinstance(g2, list) else [g2]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(x if isinstance(x, list) else [x], before):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(g, g_before)


@pytest.mark.parametrize("name", ["conv2d", "max_pool2d", "avg_pool2d"])
def test_kernel_layers_write_into_their_reused_buffers(name, rng):
    """With reuse_buffers on, a second step of the same shape writes into the first step's
    memory (fresh arrays would page-fault every step)."""
    cfg, shape = CASES[name]
    layer = get_layer(name).from_config(cfg)
    layer.reuse_buffers = True
    outs, grads = [], []
    for _ in range(2):
        y = layer.forward(make_input(shape, rng))
        outs.append(y)
        grads.append(layer.backward(rng.standard_normal(y.shape).astype(np.float32)))
    assert np.shares_memory(outs[0], outs[1])
    assert np.shares_memory(grads[0], grads[1])


# --- the grad_y rule (cnnframe.layers.Layer): input gradients in the forward input's dtype ----

def _as_list(a):
    return list(a) if isinstance(a, list) else [a]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", BUILTIN)
def test_a_grad_y_of_the_other_float_dtype_gives_input_gradients_in_the_input_dtype(name, dtype,
                                                                                   rng):
    other = np.float64 if dtype == np.float32 else np.float32
    cfg, shape = CASES[name]
    layer = get_layer(name).from_config(cfg).astype(dtype)
    x = make_input(shape, rng, dtype=dtype)
    state = getattr(layer, "rng", None) and layer.rng.bit_generator.state
    y = layer.forward(x)
    g = rng.standard_normal(y.shape).astype(other)
    got = [a.copy() for a in _as_list(layer.backward(g))]
    if state:
        layer.rng.bit_generator.state = state
    layer.forward(x)
    want = _as_list(layer.backward(g.astype(dtype)))   # what the rule says backward sees
    for a, b in zip(got, want):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", BUILTIN)
def test_a_non_float_or_wrongly_shaped_grad_y_is_refused_naming_it(name, rng):
    cfg, shape = CASES[name]
    layer = get_layer(name).from_config(cfg)
    y = layer.forward(make_input(shape, rng))
    with pytest.raises(TypeError, match=r"grad_y must be float32 or float64 \(the output of "
                                        r"forward is float32\), got int64"):
        layer.backward(np.zeros(y.shape, np.int64))
    wrong = y.shape[:-1] + (y.shape[-1] + 1,)
    with pytest.raises(ValueError, match=rf"grad_y has shape {re.escape(str(wrong))} but the "
                                         rf"output of forward has shape "
                                         rf"{re.escape(str(y.shape))}"):
        layer.backward(np.zeros(wrong, np.float32))


# --- forward values against their formulas ----------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [None, 0.2, 0.0, 1.5, -0.5])
def test_leaky_relu_forward_is_x_or_slope_times_x(slope, dtype, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    x[0, 0, :3] = [0.0, -0.0, 1e-30]
    layer = get_layer("leaky_relu")() if slope is None else get_layer("leaky_relu")(slope)
    a = 0.01 if slope is None else slope          # the documented default
    want = [[[float(v) if v > 0 else a * float(v) for v in row] for row in plane] for plane in x]
    y = layer.astype(dtype).forward(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, np.array(want), rtol=1e-6 if dtype == np.float32 else 1e-15,
                               atol=0)


def _softmax_reference(row):
    """p_i = 1 / sum_j exp(x_j - x_i): no max shift, yet no overflow to inf / inf."""
    out = []
    for xi in row:
        with np.errstate(over="ignore"):
            out.append(1.0 / sum(float(np.exp(np.float64(xj) - np.float64(xi))) for xj in row))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_forward_matches_the_formula_on_rows_with_large_values(dtype, rng):
    rows = np.array([[1000.0, 1001.0, 1002.0, 999.0],
                     [-1e4, 0.0, 1e4, 5e3],
                     [88.0, 89.0, -88.0, 0.0],              # exp(89) overflows float32
                     [-745.0, -746.0, -744.0, -750.0],      # exp(-746) underflows float64
                     [3.0, 3.0, 3.0, 3.0]], dtype)
    rows = np.concatenate([rows, rng.standard_normal((3, 4)).astype(dtype) * 30])
    y = get_layer("softmax")(axis=-1).forward(rows)
    assert y.dtype == dtype and np.all(np.isfinite(y))
    want = np.array([_softmax_reference(r) for r in rows])
    np.testing.assert_allclose(y, want, rtol=3e-6 if dtype == np.float32 else 1e-13, atol=1e-30)
    # by hand: equal entries share evenly; shifting a row by 999 changes nothing
    np.testing.assert_allclose(y[4], [0.25] * 4)
    np.testing.assert_allclose(y[0], np.exp([1.0, 2.0, 3.0, 0.0]) / np.exp([0.0, 1, 2, 3]).sum(),
                               rtol=1e-6)


def test_softmax_over_channels_of_an_image_batch_matches_the_formula(rng):
    x = rng.standard_normal((2, 3, 2, 2)) * 500
    y = get_layer("softmax")(axis=1).astype(np.float64).forward(x)
    for n, i, j in np.ndindex(2, 2, 2):
        np.testing.assert_allclose(y[n, :, i, j], _softmax_reference(x[n, :, i, j]), rtol=1e-13,
                                   atol=1e-300)


def test_sigmoid_softmax_do_not_overflow():
    x = np.array([[-1e4, 0.0, 1e4]], np.float32)
    np.testing.assert_allclose(get_layer("sigmoid")().forward(x), [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(get_layer("softmax")().forward(x), [[0.0, 0.0, 1.0]])


def test_a_custom_layer_gets_config_from_its_init_arguments():
    class Scale(Layer):
        def __init__(self, factor=2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x, training=True):
            return x * self.factor

        def backward(self, grad_y):
            return grad_y * self.factor

    layer = Scale.from_config({"factor": 3.0})
    assert layer.get_config() == {"factor": 3.0}
    assert layer.output_shape((2, 3)) == (2, 3)
    assert "Scale(factor=3.0)" == repr(layer)
    with pytest.raises(ValueError, match="unknown config key 'scale'; valid keys: factor"):
        Scale.from_config({"scale": 1})
