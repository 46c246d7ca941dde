"""Testing tools for layer authors: the conformance suite and hypothesis strategies.

- :func:`check_layer_conformance` / :func:`parametrize_layer_checks` (see
  :mod:`cnnframe.testing.conformance`): gradients, config round trip (the rebuilt
  layer computes what the layer does), registry, save/load, shapes, batch
  independence, dtypes and the grad_y rule of a layer class, in one call or as
  one pytest test per check.
- :mod:`cnnframe.testing.strategies` (needs hypothesis): valid conv/pool
  geometries, image batches, inputs away from a layer's kinks.
"""
import importlib

from cnnframe.testing.conformance import (CHECKS, ConformanceError, ConformanceReport,
                                          LayerCheck, check_layer_conformance, layer_checks,
                                          parametrize_layer_checks)

__all__ = ["CHECKS", "ConformanceError", "ConformanceReport", "LayerCheck",
           "check_layer_conformance", "layer_checks", "parametrize_layer_checks", "strategies"]


def __getattr__(name):
    if name == "strategies":   # imported on use: hypothesis is a test dependency only
        return importlib.import_module("cnnframe.testing.strategies")
    raise AttributeError(f"module 'cnnframe.testing' has no attribute {name!r}")
