"""The example plugin (examples/plugins/cnnframe_swish) passes the conformance suite and
builds from a config that names its layers, without being imported by hand.

The plugin is installed into the venv by `make setup`
(pip install --no-build-isolation -e examples/plugins/cnnframe_swish).
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cnnframe.registry import get_layer, layer_origin
from cnnframe.testing import parametrize_layer_checks


def _plugin_layer(name):
    try:
        return get_layer(name)
    except KeyError as exc:  # not silently skipped: the plugin is part of the test setup
        raise AssertionError(
            f"{exc}; install the example plugin: pip install --no-build-isolation -e "
            "examples/plugins/cnnframe_swish") from None


SWISH_CONFIGS = [{}, {"beta": 1.7, "trainable": True}, {"beta": 0.5}]
SEPARABLE_CONFIGS = [
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1}, (2, 3, 5, 5)),
    ({"in_channels": 2, "out_channels": 3, "kernel_size": [3, 2], "stride": 2, "dilation": [1, 2],
      "depth_multiplier": 2, "activation": "swish"}, (2, 2, 7, 6)),
    ({"in_channels": 3, "out_channels": 2, "kernel_size": 2, "bias": False, "activation": "relu"},
     (3, 3, 4, 4)),
]


@parametrize_layer_checks(_plugin_layer("swish"), SWISH_CONFIGS, input_shape=(2, 3, 4, 5))
def test_swish_conformance(layer_check):
    layer_check()


@parametrize_layer_checks(_plugin_layer("separable_conv2d"), SEPARABLE_CONFIGS)
def test_separable_conv_conformance(layer_check):
    layer_check()


def test_registered_from_the_plugin_distribution():
    assert layer_origin("swish") == layer_origin("separable_conv2d") == "cnnframe-swish"


def test_swish_values():
    x = np.linspace(-4, 4, 9).reshape(1, 1, 3, 3)
    y = _plugin_layer("swish")(beta=2.0).astype(np.float64).forward(x)
    np.testing.assert_allclose(y, x / (1 + np.exp(-2 * x)), rtol=1e-12)


def test_separable_conv_equals_depthwise_then_pointwise():
    from cnnframe import reference
    layer = _plugin_layer("separable_conv2d")(2, 3, 3, padding=1, depth_multiplier=2,
                                               seed=0).astype(np.float64)
    layer.params["bias"][...] = [0.1, -0.2, 0.3]
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    mid = reference.conv2d(x, layer.params["depthwise"], padding=1, groups=2)
    want = reference.conv2d(mid, layer.params["pointwise"], layer.params["bias"])
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-10, atol=1e-12)


def test_model_config_names_plugin_layers_without_importing_the_plugin():
    cfg = {"input_shape": [3, 8, 8], "seed": 0, "layers": [
        {"type": "separable_conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3,
         "padding": 1}, {"type": "swish"}, {"type": "global_avg_pool2d"}]}
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from cnnframe import Model
        assert "cnnframe_swish" not in sys.modules
        m = Model.from_config(json.loads({json.dumps(json.dumps(cfg))}))
        y = m.forward(np.ones((2, 3, 8, 8), np.float32))
        print(type(m.nodes["separable_conv2d_1"]).__module__, y.shape)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cnnframe_swish.layers", "(2,", "4)"]


@pytest.mark.parametrize("name", ["swish", "separable_conv2d"])
def test_plugin_layers_have_docstrings(name):
    doc = _plugin_layer(name).__doc__
    assert "Args:" in doc and "Input shape" in doc
