"""The registry: names, duplicates, unknown names, entry-point plugins and their failures."""
import importlib.metadata
import sys
import types

import numpy as np
import pytest

from cnnframe import registry
from cnnframe.cli import main as cli_main
from cnnframe.layers import Layer
from cnnframe.registry import get_layer, register_layer


class FakeDist:
    def __init__(self, name):
        self.name = name


class FakeEntryPoint:
    """Enough of importlib.metadata.EntryPoint for the registry."""

    def __init__(self, name, value, dist, loader):
        self.name, self.value, self.dist, self._loader = name, value, FakeDist(dist), loader

    def load(self):
        return self._loader()


@pytest.fixture
def plugins(monkeypatch):
    """Install fake entry points; restore the registry afterwards."""
    saved = (dict(registry._registry), dict(registry._origins))

    def install(*eps):
        monkeypatch.setattr(importlib.metadata, "entry_points",
                            lambda group=None, **kw: [e for e in eps] if group ==
                            registry.ENTRY_POINT_GROUP else [])
        monkeypatch.setattr(registry, "_plugins_loaded", False)

    yield install
    registry._registry.clear()
    registry._registry.update(saved[0])
    registry._origins.clear()
    registry._origins.update(saved[1])
    registry._plugin_errors.clear()
    registry._plugins_loaded = False


class Double(Layer):
    def forward(self, x, training=True):
        return 2 * x

    def backward(self, grad_y):
        return 2 * grad_y


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


def test_a_failing_plugin_is_reported_and_the_rest_still_works(plugins, capsys):
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
    assert cli_main(["layers"]) == 1
    out = capsys.readouterr().out
    assert "good_plugin_layer" in out and "good-pkg" in out
    assert "FAILED plugin" in out and "broken-pkg" in out and "missing_dependency" in out


def test_a_plugin_registering_a_taken_name_is_a_reported_failure(plugins):
    class Clash(Double):
        pass

    plugins(FakeEntryPoint("relu", "clash_pkg:Clash", "clash-pkg", lambda: Clash))
    with pytest.warns(RuntimeWarning, match="clash-pkg.*already registered"):
        registry.available_layers()
    assert get_layer("relu").__module__ == "cnnframe.layers.activations"


def test_cli_layers_lists_every_builtin(plugins, capsys):
    plugins()
    assert cli_main(["layers", "-v"]) == 0
    out = capsys.readouterr().out
    for name in ["conv2d", "batch_norm2d", "concat", "identity"]:
        assert name in out
    assert "in_channels, out_channels, kernel_size, stride=1" in out
    assert "cnnframe" in sys.modules


def test_layer_and_register_layer_are_importable_from_cnnframe():
    import cnnframe
    from cnnframe import Layer as PublicLayer, register_layer as public_register_layer
    assert PublicLayer is Layer and public_register_layer is register_layer
    assert {"Layer", "register_layer"} <= set(cnnframe.__all__)


def test_cli_layers_aligns_every_column_with_long_plugin_names(plugins, capsys):
    class Long(Double):
        pass

    plugins(FakeEntryPoint("long_named", "some_pkg:Long", "a-plugin-with-a-long-name",
                           lambda: Long))
    assert cli_main(["layers"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert any("a-plugin-with-a-long-name" in r for r in rows)
    # the class path (the last column) starts at the same offset in every row
    starts = {len(r) - len(r.split()[-1]) for r in rows}
    assert len(starts) == 1, "\n".join(rows)
    origin_starts = {r.index(r.split()[1]) for r in rows}
    assert len(origin_starts) == 1, "\n".join(rows)
