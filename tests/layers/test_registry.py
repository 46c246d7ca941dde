"""The registry: names, duplicates, unknown names, entry-point plugins and their failures."""
import types

import numpy as np
import pytest

from fake_plugins import Double, FakeEntryPoint

from cnnframe import registry
from cnnframe.layers import Layer
from cnnframe.registry import get_layer, register_layer


def test_unknown_name_lists_known_names_and_closest_match(plugins):
    plugins()
    with pytest.raises(ValueError, match=r"unknown layer type 'conv_2d' \(did you mean 'conv2d'\?\)"
                       r"; known layer types: (adaptive_\w+, )*add, avg_pool2d, .*conv2d"):
        get_layer("conv_2d")
    with pytest.raises(KeyError):  # also a KeyError, for dict-like lookups
        get_layer("nothing_like_it")


def test_duplicate_name_names_both_classes(plugins):
    plugins()

    class MyReLU(Layer):
        pass

    with pytest.raises(ValueError, match=r"'relu' is already registered to "
                       r"cnnframe\.layers\.activations\.ReLU .*cannot register .*MyReLU"):
        register_layer("relu")(MyReLU)
    assert get_layer("relu").__name__ == "ReLU"


def test_register_checks_names_and_classes(plugins):
    plugins()
    with pytest.raises(ValueError, match="identifier"):
        register_layer("my layer")
    with pytest.raises(TypeError, match="not a subclass"):
        register_layer("not_a_layer")(object)


def test_plugins_are_loaded_lazily_from_entry_points(plugins):
    loaded = []

    def load_module():
        loaded.append("module")
        mod = types.ModuleType("fake_plugin_pkg.layers")

        @register_layer("fake_double")
        class FakeDouble(Double):
            pass

        mod.FakeDouble = FakeDouble
        return mod

    class Triple(Double):
        def forward(self, x, training=True):
            return 3 * x

    plugins(FakeEntryPoint("fake", "fake_plugin_pkg.layers", "fake-plugin-pkg", load_module),
            FakeEntryPoint("fake_triple", "fake_plugin_pkg.layers:Triple", "fake-plugin-pkg",
                           lambda: Triple))
    assert get_layer("relu")  # built-ins do not trigger discovery
    assert loaded == []
    assert get_layer("fake_double").type_name == "fake_double"
    assert loaded == ["module"]
    assert get_layer("fake_triple") is Triple and Triple.type_name == "fake_triple"
    assert registry.layer_origin("fake_double") == "fake-plugin-pkg"
    assert {"fake_double", "fake_triple"} <= set(registry.available_layers())
    get_layer("fake_double")
    assert loaded == ["module"]  # discovered once
    # a config naming a plugin layer builds without importing the plugin by hand
    from cnnframe.graph import Model
    model = Model.from_config({"input_shape": [2], "layers": [{"type": "fake_triple"}]})
    np.testing.assert_array_equal(model.forward(np.ones((1, 2), np.float32)), [[3, 3]])


def test_a_failing_plugin_is_reported_and_the_rest_still_works(plugins):
    def broken():
        raise ImportError("No module named 'missing_dependency'")

    @register_layer("good_plugin_layer")
    class Good(Double):
        pass

    registry.unregister_layer("good_plugin_layer")
    plugins(FakeEntryPoint("broken", "broken_pkg.layers", "broken-pkg", broken),
            FakeEntryPoint("good_plugin_layer", "good_pkg:Good", "good-pkg", lambda: Good))
    with pytest.warns(RuntimeWarning, match="'broken'.*from package 'broken-pkg' failed to load: "
                      "ImportError: No module named 'missing_dependency'"):
        assert get_layer("good_plugin_layer") is Good
    assert get_layer("conv2d").type_name == "conv2d"
    [err] = registry.plugin_errors()
    assert err.distribution == "broken-pkg"
    with pytest.raises(ValueError, match="broken-pkg"):  # unknown-name errors mention it
        get_layer("from_the_broken_plugin")


def test_a_plugin_registering_a_taken_name_is_a_reported_failure(plugins):
    class Clash(Double):
        pass

    plugins(FakeEntryPoint("relu", "clash_pkg:Clash", "clash-pkg", lambda: Clash))
    with pytest.warns(RuntimeWarning, match="clash-pkg.*already registered"):
        registry.available_layers()
    assert get_layer("relu").__module__ == "cnnframe.layers.activations"


def test_layer_and_register_layer_are_importable_from_cnnframe():
    import cnnframe
    from cnnframe import Layer as PublicLayer, register_layer as public_register_layer
    assert PublicLayer is Layer and public_register_layer is register_layer
    assert {"Layer", "register_layer"} <= set(cnnframe.__all__)


def test_every_public_name_resolves_and_is_listed_by_dir():
    """Lazily loaded names (Model, Trainer, ...) show in dir() and tab completion too."""
    import cnnframe
    for name in cnnframe.__all__:
        assert getattr(cnnframe, name) is not None, name
    assert set(cnnframe.__all__) <= set(dir(cnnframe))
