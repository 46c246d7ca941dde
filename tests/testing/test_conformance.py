"""The conformance suite passes built-in layers and catches each kind of broken layer."""
import numpy as np
import pytest

import cnnframe.layers
from cnnframe.layers.base import Layer
from cnnframe.registry import get_layer, register_layer, unregister_layer
from cnnframe.testing import (CHECKS, ConformanceError, check_layer_conformance,
                              parametrize_layer_checks)

X = (2, 3, 5, 5)


@parametrize_layer_checks(get_layer("conv2d"), [
    {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"in_channels": 3, "out_channels": 6, "kernel_size": [3, 2], "stride": 2, "groups": 3}],
    input_shape=X)
def test_builtin_conv2d(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("batch_norm2d"), [{"num_features": 3}], input_shape=(3, 3, 4, 4))
def test_builtin_batch_norm(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("concat"), [({}, [X, (2, 2, 5, 5)])])
def test_builtin_concat(layer_check):
    layer_check()


def test_one_test_id_per_check():
    mark = parametrize_layer_checks(get_layer("relu"), [{}, {}], input_shape=X)
    ids = mark.kwargs["ids"]
    assert len(ids) == 2 * len(CHECKS) and len(set(ids)) == len(ids)
    assert "relu-cfg1-gradcheck_train" in ids


class Scale(Layer):
    """y = w * x per channel: a correct layer that the variants below break one way each."""

    def __init__(self, channels=3, seed=None):
        super().__init__()
        self.channels, self.seed = channels, seed
        self.add_param("w", np.random.default_rng(seed).uniform(0.5, 1.5, channels))

    def forward(self, x, training=True):
        self._x = x
        return x * self.params["w"].reshape(1, -1, 1, 1)

    def backward(self, grad_y):
        self.grads["w"][...] = np.sum(grad_y * self._x, axis=(0, 2, 3))
        return grad_y * self.params["w"].reshape(1, -1, 1, 1)


class TupleConfig(Scale):
    def get_config(self):
        return {"channels": self.channels, "seed": self.seed, "extra": (1, 2)}

    @classmethod
    def from_config(cls, cfg):
        cfg = dict(cfg)
        cfg.pop("extra", None)
        return cls(**cfg)


class IgnoresSeed(Scale):
    def __init__(self, channels=3, seed=None):
        super().__init__(channels, None)
        self.seed = seed


class BatchDependentEval(Scale):
    def forward(self, x, training=True):
        return super().forward(x, training) - x.mean(axis=0, keepdims=True)

    def backward(self, grad_y):
        gx = super().backward(grad_y)
        return gx - grad_y.mean(axis=0, keepdims=True)


class WrongShape(Scale):
    def output_shape(self, s):
        return (s[0], s[1] + 1, s[2])


class AlwaysFloat64(Scale):
    def forward(self, x, training=True):
        return super().forward(x.astype(np.float64), training)


class PlantedFactor(Scale):
    """backward doubles the input gradient when `factor` (left out of get_config) says so."""

    def __init__(self, channels=3, seed=None, factor=1.0):
        super().__init__(channels, seed)
        self._factor = factor

    def get_config(self):
        return {"channels": self.channels, "seed": self.seed}

    def backward(self, grad_y):
        return self._factor * super().backward(grad_y)




BROKEN = [
    ("conf_tuple_config", TupleConfig, "config_roundtrip"),
    ("conf_ignores_seed", IgnoresSeed, "config_roundtrip"),
    ("conf_batch_dependent", BatchDependentEval, "batch_independence"),
    ("conf_wrong_shape", WrongShape, "shape_inference"),
    ("conf_float64", AlwaysFloat64, "dtypes"),
]


@pytest.fixture
def registered():
    names = []

    def reg(name, cls):
        sub = type(cls.__name__, (cls,), {})
        register_layer(name)(sub)
        names.append(name)
        return sub
    yield reg
    for n in names:
        unregister_layer(n)


def test_correct_layer_passes_everything(registered):
    cls = registered("conf_scale", Scale)
    report = check_layer_conformance(cls, [{"channels": 3}], input_shape=X)
    assert report.passed, str(report)
    assert report.raise_if_failed() is report


@pytest.mark.parametrize("name,cls,check", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_layer_fails_its_check(registered, name, cls, check):
    sub = registered(name, cls)
    report = check_layer_conformance(sub, [{"channels": 3}], input_shape=X)
    failed = {k.rsplit("-", 1)[1] for k in report.failures}
    assert check in failed, str(report)
    with pytest.raises(ConformanceError):
        report.raise_if_failed()


def test_unregistered_layer_fails_registry_and_save_load():
    report = check_layer_conformance(Scale, [{"channels": 3}], input_shape=X)
    failed = {k.rsplit("-", 1)[1] for k in report.failures}
    assert failed == {"registry_roundtrip", "save_load"}, str(report)
    assert "register_layer" in str(report)


def test_configs_need_an_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        check_layer_conformance(Scale, [{"channels": 3}])
    with pytest.raises(ValueError, match="unknown checks"):
        check_layer_conformance(Scale, [{"channels": 3}], input_shape=X, checks=["nope"])


def test_state_missing_from_get_config_fails_gradcheck_and_the_config_round_trip(registered):
    cls = registered("conf_planted_factor", PlantedFactor)
    report = check_layer_conformance(cls, [{"channels": 3, "factor": 2.0}], input_shape=X)
    failed = {k.rsplit("-", 1)[1] for k in report.failures}
    assert {"gradcheck_train", "gradcheck_eval", "config_roundtrip"} <= failed, str(report)
    roundtrip = report.failures["conf_planted_factor-cfg0-config_roundtrip"]
    assert "get_config() misses state that changes the layer:" in roundtrip
    assert "input gradient" in roundtrip and "_factor (layer 2.0, rebuilt 1.0)" in roundtrip
    assert check_layer_conformance(cls, [{"channels": 3}], input_shape=X).passed


def _raw_backward(self, grad_y):
    self.grads["w"][...] = np.sum(grad_y * self._x, axis=(0, 2, 3))
    return grad_y * self.params["w"].reshape(1, -1, 1, 1)


def test_grad_y_check_catches_a_backward_the_base_class_never_wrapped(registered):
    cls = registered("conf_unwrapped", Scale)
    cls.backward = _raw_backward   # assigned after the class statement: grad_y unchecked
    report = check_layer_conformance(cls, [{"channels": 3}], input_shape=X, checks=["grad_y"])
    [message] = report.failures.values()
    assert "float32 inputs and a float64 grad_y gave a float64 input gradient 0" in message


# Every built-in layer: (config, input shape with the batch dimension).
X4 = (2, 3, 5, 5)
BUILTIN_CASES = {
    "conv2d": ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2}, X4),
    "max_pool2d": ({"kernel_size": 2}, X4),
    "avg_pool2d": ({"kernel_size": 3, "stride": 1, "padding": 1}, X4),
    "global_avg_pool2d": ({}, X4),
    "linear": ({"in_features": 6, "out_features": 3}, (3, 6)),
    "flatten": ({}, X4),
    "identity": ({}, X4),
    "relu": ({}, X4),
    "leaky_relu": ({"negative_slope": 0.2}, X4),
    "sigmoid": ({}, X4),
    "tanh": ({}, X4),
    "softmax": ({"axis": -1}, (3, 4)),
    "dropout": ({"p": 0.3}, X4),
    "batch_norm2d": ({"num_features": 3, "momentum": 0.2}, X4),
    "batch_norm1d": ({"num_features": 4}, (3, 4, 2)),
    "add": ({}, [X4, X4, X4]),
    "concat": ({"axis": 2}, [X4, (2, 3, 2, 5)]),
    "group_norm": ({"num_groups": 3, "num_channels": 3}, X4),
    "layer_norm": ({"normalized_shape": [5, 5]}, X4),
    "instance_norm2d": ({"num_features": 3, "affine": True, "track_running_stats": True}, X4),
    "gelu": ({}, X4),
    "silu": ({}, X4),
    "hardswish": ({}, X4),
    "elu": ({"alpha": 0.5}, X4),
    "prelu": ({"num_parameters": 3}, X4),
    "conv_transpose2d": ({"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2},
                         X4),
    "upsample": ({"scale_factor": 2, "mode": "bilinear"}, X4),
    "adaptive_avg_pool2d": ({"output_size": 2}, X4),
    "adaptive_max_pool2d": ({"output_size": 2}, X4),
    "dropout2d": ({"p": 0.3}, X4),
    # the layers of imported ONNX graphs (more cases: tests/layers/test_onnx_op_layers.py)
    "elementwise": ({"op": "mul"}, [X4, (2, 3, 1, 5)]),
    "elementwise_const": ({"op": "sub", "shape": [3, 1, 1]}, X4),
    "clip": ({"min": -0.5, "max": 0.5}, X4),
    "reshape": ({"shape": [15, 5]}, X4),
    "transpose": ({"perm": [0, 2, 3, 1]}, X4),
    "pad": ({"pads": [[0, 0], [1, 2], [2, 1]], "mode": "reflect"}, X4),
    "pool2d": ({"mode": "max", "kernel_size": 3, "stride": 2, "pads": [1, 0, 1, 1],
                "ceil_mode": True}, X4),
    "lrn": ({"size": 3, "alpha": 0.1, "beta": 0.75, "k": 2.0}, X4),
    "matmul_const": ({"in_features": 5, "out_features": 3, "bias": True}, X4),
}


def test_every_builtin_layer_has_a_case():
    builtin = {cls.type_name for cls in vars(cnnframe.layers).values()
               if isinstance(cls, type) and issubclass(cls, Layer) and cls.type_name}
    assert set(BUILTIN_CASES) == builtin


@pytest.mark.parametrize("name", sorted(BUILTIN_CASES))
def test_every_builtin_layer_passes_the_conformance_suite(name):
    config, shape = BUILTIN_CASES[name]
    check_layer_conformance(get_layer(name), [(config, shape)]).raise_if_failed()
