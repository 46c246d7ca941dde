"""ONNX export and import (needs the optional onnx package: ``pip install cnnframe[onnx]``).

- :func:`export` writes a Model as an ``.onnx`` file (opsets 13 to 21), in inference mode.
- :func:`load` reads an ``.onnx`` file into a Model (:mod:`cnnframe.onnx.importer`).

Importing this package does not import onnx; each function does when called, and raises
ImportError naming the extra to install when it is missing.
"""
from cnnframe.onnx._opsets import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from cnnframe.onnx.export import ExportContext, ExportError, export

__all__ = ["export", "load", "ExportError", "ExportContext", "DEFAULT_OPSET", "MIN_OPSET",
           "MAX_OPSET"]


def load(path, **kw):
    """Read an ONNX model file into a cnnframe Model (see :func:`cnnframe.onnx.importer.load`)."""
    from cnnframe.onnx.importer import load as _load
    return _load(path, **kw)
