"""Fake entry-point plugins for the registry and `cnnframe layers` tests.

The `plugins` fixture (made available by tests/layers/conftest.py and tests/cli/conftest.py)
installs fake entry points in place of the installed packages' and restores the registry
afterwards.
"""
import importlib.metadata

import pytest

from cnnframe import registry
from cnnframe.layers import Layer


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
