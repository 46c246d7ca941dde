"""ONNX export and import (optional extra: pip install cnnframe[onnx])."""


def load(path, **kwargs):
    from cnnframe.onnx.importer import load as _load
    return _load(path, **kwargs)
