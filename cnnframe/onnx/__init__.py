"""ONNX export and import (needs the optional onnx package: ``pip install cnnframe[onnx]``).

- :func:`export` writes a Model as an ``.onnx`` file (opsets 13 to 21), in inference mode.
- :func:`load` reads an ``.onnx`` file into a Model (:mod:`cnnframe.onnx.importer`).

Importing this package does not import onnx; each function does when called, and raises
ImportError naming the extra to install when it is missing.
"""
from cnnframe.onnx._builder import OnnxImportError
from cnnframe.onnx._opsets import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from cnnframe.onnx.export import ExportContext, ExportError, export

__all__ = ["export", "load", "supported_ops", "OnnxImportError", "ExportError", "ExportContext", "DEFAULT_OPSET", "MIN_OPSET",
           "MAX_OPSET"]


def load(path, input_shape=None, max_tensor_bytes=None):
    """Read an ONNX model file into a cnnframe Model (:func:`cnnframe.onnx.importer.load`).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.onnx`` file; external data files must lie in its folder (or below).
    input_shape : tuple of int, or dict name -> tuple, optional
        Each input's sample shape without the batch axis, e.g. ``(3, 224, 224)``, for inputs
        with dynamic axes besides the batch axis.
    max_tensor_bytes : int, optional
        The largest tensor accepted, checked from its declared shape before anything is
        allocated (default: the model size limit).

    Returns
    -------
    Model

    Raises
    ------
    OnnxImportError
        A ValueError, for an op, attribute or shape the import cannot take, naming the
        node, the op and the opset (:func:`supported_ops` lists the ops).
    """
    from cnnframe.onnx.importer import load as _load
    return _load(path, input_shape=input_shape, max_tensor_bytes=max_tensor_bytes)


def supported_ops():
    """The ONNX ops the import reads (see :func:`cnnframe.onnx.importer.supported_ops`)."""
    from cnnframe.onnx.importer import supported_ops as _supported_ops
    return _supported_ops()

