"""Hypothesis fuzzing of the built-in layers and the example plugin's (cases in
fuzz/layer_cases.py; other plugins installed in the environment are left out).

Random valid and broken configs, inputs of any ndim/dtype/layout/empty axes/NaN,
and right or wrong gradients: each step returns a consistent result or raises
TypeError/ValueError/MemoryError with a message.
"""
import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnframe import registry
from cnnframe.layers import Layer, Linear, ReLU
from fuzz.cases import HypothesisChooser, RandomChooser
from fuzz.layer_cases import fuzzed_layers, run_layer_case
from hypothesis_budget import scaled

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@settings(max_examples=scaled(500))
@given(st.data())
def test_layer_contract(data):
    run_layer_case(HypothesisChooser(data))


def test_random_layer_cases_cover_every_layer():
    seen = collections.Counter(run_layer_case(RandomChooser(seed)) for seed in range(1500))
    layers = {key.split(":")[1] for key in seen}
    assert layers == set(fuzzed_layers())
    ok = {key.split(":")[1] for key in seen if key.startswith("ok:")}
    assert ok == set(fuzzed_layers()), set(fuzzed_layers()) - ok


@pytest.mark.parametrize("grad, exc, match", [
    (np.ones((2, 3, 1), np.float32), ValueError, r"grad_y has shape \(2, 3, 1\) but the output"),
    (np.ones((2, 2, 3), np.float32), ValueError, "grad_y has shape"),  # would broadcast
    (np.ones((2, 3), np.float16), TypeError, "grad_y must be float32 or float64.*float16"),
    (np.ones((2, 3), np.int64), TypeError, "grad_y must be float32 or float64.*int64"),
    ([[1.0] * 3] * 2, TypeError, "grad_y must be a numpy ndarray"),
])
def test_backward_refuses_a_gradient_unlike_the_output(grad, exc, match):
    for layer in (ReLU(), Linear(4, 3, seed=0)):
        layer.forward(np.ones((2, 4) if isinstance(layer, Linear) else (2, 3), np.float32))
        with pytest.raises(exc, match=match):
            layer.backward(grad)


def test_backward_before_forward_is_a_runtime_error_for_every_layer():
    from cnnframe.registry import get_layer
    from fuzz.layer_cases import _config
    for name in fuzzed_layers():
        layer = get_layer(name).from_config(_config(RandomChooser(0), name, 2))
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.zeros((1, 2), np.float32))


class FakeGroupNorm(Layer):
    """A third-party plugin's layer: required arguments the fuzz configs cannot know."""

    def __init__(self, num_groups, num_channels):
        super().__init__()
        self.num_groups, self.num_channels = num_groups, num_channels

    def forward(self, x, training=True):
        return x

    def backward(self, grad_y):
        return grad_y


FakeGroupNorm.__module__ = "fake_groupnorm_plugin.layers"   # as if installed from elsewhere


@pytest.fixture
def third_party_layer():
    registry.register_layer("fake_group_norm")(FakeGroupNorm)
    yield "fake_group_norm"
    registry.unregister_layer("fake_group_norm")


def test_layers_of_other_installed_plugins_are_left_out(third_party_layer):
    assert registry.layer_origin(third_party_layer) == "fake_groupnorm_plugin"
    assert third_party_layer in registry.available_layers()
    assert third_party_layer not in fuzzed_layers()
    assert {"conv2d", "batch_norm2d", "swish", "separable_conv2d"} <= set(fuzzed_layers())
    test_backward_before_forward_is_a_runtime_error_for_every_layer()
    test_random_layer_cases_cover_every_layer()
