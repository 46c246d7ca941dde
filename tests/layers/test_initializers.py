"""Initialisers: dirac, orthogonal, constant, callables (registered or not), bias_init."""
import math

import numpy as np
import pytest

from cnnframe.graph import Model
from cnnframe.layers import init_array, register_initializer
from cnnframe.layers.base import _REGISTERED_INITIALIZERS
from cnnframe.registry import get_layer


@pytest.fixture
def registered():
    names = []

    def register(name, fn):
        names.append(name)
        return register_initializer(name, fn)
    yield register
    for name in names:
        _REGISTERED_INITIALIZERS.pop(name, None)


@pytest.mark.parametrize("groups,channels", [(1, 4), (2, 4), (4, 4)])
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_dirac_conv_is_the_identity(groups, channels, kernel):
    conv = get_layer("conv2d")(channels, channels, kernel, padding=kernel // 2, groups=groups,
                               init="dirac", seed=0)
    x = np.random.default_rng(0).standard_normal((2, channels, 6, 5)).astype(np.float32)
    np.testing.assert_array_equal(conv.forward(x), x)


def test_dirac_conv_transpose_and_linear_are_the_identity():
    convt = get_layer("conv_transpose2d")(4, 4, 3, padding=1, groups=2, init="dirac")
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(convt.forward(x), x)
    lin = get_layer("linear")(5, 5, init="dirac")
    np.testing.assert_array_equal(lin.params["weight"], np.eye(5, dtype=np.float32))


@pytest.mark.parametrize("shape", [(4, 12), (12, 4), (8, 3, 3, 3), (6, 6)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape, gain):
    spec = "orthogonal" if gain == 1.0 else {"type": "orthogonal", "gain": gain}
    w = init_array(shape, spec, np.random.default_rng(0), 1, 1, np.float64)
    m = w.reshape(shape[0], -1) / gain
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-12)


def test_constant_and_bias_initialisers():
    lin = get_layer("linear")(30, 20, init={"type": "constant", "value": 0.25},
                              bias_init={"type": "constant", "value": -1.5})
    assert (lin.params["weight"] == 0.25).all() and (lin.params["bias"] == -1.5).all()
    conv = get_layer("conv2d")(3, 400, 3, bias_init="lecun_uniform", seed=0)
    bound = 1 / math.sqrt(3 * 9)  # PyTorch's default bias: uniform(+-1/sqrt(fan_in))
    b = conv.params["bias"]
    assert np.abs(b).max() <= bound and b.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_default_bias_init_keeps_the_weights_of_a_seed():
    """bias_init "zeros" draws nothing, so a seed gives the weights it always gave."""
    conv = get_layer("conv2d")(3, 8, 3, seed=7)
    want = init_array((8, 3, 3, 3), "he_normal", np.random.default_rng(7), 27, 72)
    np.testing.assert_array_equal(conv.params["weight"], want)
    assert (conv.params["bias"] == 0).all()


def _ramp(shape, rng, fan_in, fan_out):
    return np.arange(math.prod(shape), dtype=np.float64).reshape(shape) / fan_in


def test_a_registered_callable_is_stored_by_name_and_round_trips(registered, tmp_path):
    registered("ramp", _ramp)
    lin = get_layer("linear")(4, 3, init=_ramp)
    np.testing.assert_array_equal(lin.params["weight"], _ramp((3, 4), None, 4, 3))
    assert lin.get_config()["init"] == "ramp"
    model = Model.from_config({"input_shape": [4], "layers": [
        {"type": "linear", "in_features": 4, "out_features": 3, "init": "ramp",
         "bias_init": "ramp"}]})
    model.save(tmp_path / "m.cnnf")
    again = Model.load(tmp_path / "m.cnnf")
    assert again.nodes["linear_1"].init == "ramp"
    np.testing.assert_array_equal(again.params["linear_1.bias"], np.arange(3) / 4)


def test_an_unregistered_callable_initialises_but_cannot_be_saved(tmp_path):
    def mine(shape, rng, fan_in, fan_out):
        return np.full(shape, 0.5)
    lin = get_layer("linear")(4, 3, init=mine)
    assert (lin.params["weight"] == 0.5).all()
    assert "Linear(" in repr(lin)
    with pytest.raises(TypeError, match=r"init is the Python function .*mine.*register_initializer"):
        lin.get_config()
    model = Model({"x": (4,)}, [("fc", lin, ["x"])])
    with pytest.raises(TypeError, match="node 'fc': linear: init is the Python function"):
        model.save(tmp_path / "m.cnnf")
    assert not (tmp_path / "m.cnnf").exists()


@pytest.mark.parametrize("kwargs,error,match", [
    ({"init": "constant"}, ValueError, r"needs a value: init = \{type = \"constant\""),
    ({"init": {"type": "constant"}}, ValueError, "'constant' needs 'value'"),
    ({"init": {"type": "constant", "value": 1, "gain": 2}}, ValueError,
     "unknown key.*'gain'.*valid keys: type, value"),
    ({"init": "he_norml"}, ValueError, "init must be one of he_normal"),
    ({"bias_init": "dirac"}, ValueError, "dirac\" needs a weight of 2 or more dimensions"),
    ({"bias_init": "orthogonal"}, ValueError, "orthogonal\" needs a weight"),
    ({"init": lambda shape, rng, fi, fo: np.zeros(3)}, ValueError, "returned float64 shape"),
    ({"init": lambda shape, rng, fi, fo: np.full(shape, np.nan)}, ValueError, "non-finite"),
])
def test_bad_initialisers_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        get_layer("linear")(4, 3, **kwargs)


def test_register_initializer_refuses_builtin_names_and_non_callables():
    with pytest.raises(ValueError, match="new string"):
        register_initializer("dirac", _ramp)
    with pytest.raises(TypeError, match="callable"):
        register_initializer("x_init", 3)


@pytest.mark.parametrize("groups,cin,cout", [(1, 3, 8), (2, 4, 10), (1, 4, 4), (1, 6, 4)])
def test_dirac_with_rest_is_airbenchs_partial_identity(groups, cin, cout):
    """The first in-channels filters of each group pass their channel on; the others are
    drawn by `rest` (here zero without it)."""
    spec = {"type": "dirac", "rest": "lecun_uniform"}
    conv = get_layer("conv2d")(cin, cout, 3, padding=1, groups=groups, init=spec, seed=0)
    w = conv.params["weight"]
    identity = init_array(w.shape, "dirac", None, 1, 1, np.float32, groups)
    per_group, per_in = cout // groups, cin // groups
    drawn = (np.arange(cout) % per_group) >= per_in
    np.testing.assert_array_equal(w[~drawn], identity[~drawn])
    if drawn.any():
        bound = 1 / math.sqrt(per_in * 9)
        assert np.abs(w[drawn]).max() <= bound and np.abs(w[drawn]).min() > 0
        np.testing.assert_array_equal(identity[drawn], 0)
    # the same seed, the same weights; the config keeps the rest
    again = get_layer("conv2d").from_config(conv.get_config())
    np.testing.assert_array_equal(again.params["weight"], w)
    assert conv.get_config()["init"] == spec


@pytest.mark.parametrize("spec, message", [
    ({"type": "dirac", "rest": "dirac"}, "rest must be an initialiser name or table other"),
    ({"type": "dirac", "rest": "nope"}, "init.rest must be one of"),
    ({"type": "dirac", "gain": 2}, "unknown key.*'gain'.*valid keys: type, rest"),
])
def test_bad_dirac_rest_is_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        get_layer("conv2d")(3, 8, 3, init=spec)
