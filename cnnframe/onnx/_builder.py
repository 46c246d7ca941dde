"""The graph under construction while an ONNX model is imported.

ONNX values are either constants (numpy arrays, folded at import) or
:class:`Tensor` values computed by cnnframe layers at run time.  A tensor's shape
is kept with its batch axis first; that axis holds the batch size the importer
folds shape arithmetic with (:attr:`GraphBuilder.batch`), and every layer keeps it.
"""
import math
import re

import numpy as np

from cnnframe.registry import get_layer


class Tensor:
    """A run-time value: the output of the cnnframe node (or graph input) `name`."""

    __slots__ = ("name", "shape")

    def __init__(self, name, shape):
        self.name = name
        self.shape = tuple(int(s) for s in shape)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"Tensor({self.name!r}, {self.shape})"


class Node:
    """An ONNX node with its attributes read (see cnnframe.onnx._tensors.attributes)."""

    __slots__ = ("name", "op", "domain", "inputs", "outputs", "attrs")

    def __init__(self, name, op, domain, inputs, outputs, attrs):
        self.name, self.op, self.domain = name, op, domain
        self.inputs, self.outputs, self.attrs = list(inputs), list(outputs), dict(attrs)

    def __repr__(self):
        return f"Node({self.name!r}, {self.op}, {self.inputs} -> {self.outputs})"


class OnnxImportError(ValueError):
    """A node that cannot be imported (a ValueError naming the file, node, op and opset)."""


_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def sanitize(name, fallback):
    """A cnnframe node name (letters, digits, '_') from an ONNX name."""
    clean = _UNSAFE.sub("_", name or "").strip("_")
    return clean or fallback


class GraphBuilder:
    """Collects the cnnframe nodes of one import.

    Parameters
    ----------
    path : str
        The model file (for messages).
    opset : int
        The default-domain opset of the model.
    batch : int
        The batch size shape arithmetic is folded with.
    dtype : numpy dtype
        The model's float dtype (weights are converted to it).
    """

    def __init__(self, path, opset, batch, dtype):
        self.path, self.opset, self.batch, self.dtype = path, opset, batch, np.dtype(dtype)
        self.nodes = []        # [name, layer, [input names]]
        self.inputs = {}       # cnnframe input name -> sample shape
        self.used_names = set()

    # --- names and errors -----------------------------------------------------------------------
    def unique_name(self, base):
        name, k = base, 2
        while name in self.used_names:
            name = f"{base}_{k}"
            k += 1
        self.used_names.add(name)
        return name

    def error(self, node, msg):
        return OnnxImportError(f"{self.path}: node {node.name!r} ({node.op}, opset {self.opset}): "
                            f"{msg}")

    # --- values ---------------------------------------------------------------------------------
    def add_input(self, onnx_name, shape):
        name = self.unique_name(sanitize(onnx_name, "input"))
        self.inputs[name] = tuple(shape[1:])
        return Tensor(name, shape)

    def weight(self, node, value, what):
        """A constant input as a float array of the model dtype (error if it is a tensor)."""
        if not isinstance(value, np.ndarray):
            raise self.error(node, f"{what} must be a constant (an initializer or a constant "
                             "subgraph); computed weights are not supported")
        if value.dtype.kind not in "fiub":
            raise self.error(node, f"{what} has dtype {value.dtype}, expected numbers")
        return value.astype(self.dtype)

    def tensor(self, node, value, what="input"):
        if not isinstance(value, Tensor):
            raise self.error(node, f"{what} must be a tensor computed from the graph inputs, "
                             f"got a constant")
        return value

    # --- layers ---------------------------------------------------------------------------------
    def layer(self, node, type_name, config, inputs, params=None, buffers=None, suffix=None):
        """Add a cnnframe node of `type_name` built from `config`; return its output Tensor.

        `params`/`buffers` (name -> array) are copied into the layer; each must have the
        shape the layer gave it.  Shape errors name the ONNX node.
        """
        cls = get_layer(type_name)
        try:
            layer = cls.from_config(config)
        except (ValueError, TypeError) as exc:
            raise self.error(node, f"cannot build a {type_name} layer with {config}: "
                             f"{exc}") from None
        for store_name, values in (("params", params), ("buffers", buffers)):
            store = getattr(layer, store_name)
            for key, value in (values or {}).items():
                value = np.asarray(value, self.dtype)
                if value.ndim == 0 and store[key].size == 1:  # layers keep scalars as (1,)
                    value = value.reshape(store[key].shape)
                if store[key].shape != value.shape:
                    raise self.error(node, f"{type_name} {key} has shape {value.shape}, "
                                     f"expected {store[key].shape}")
                store[key][...] = value
        sample_shapes = [t.shape[1:] for t in inputs]
        try:
            out = layer.output_shape(sample_shapes if cls.num_inputs is None
                                     else sample_shapes[0])
        except (ValueError, TypeError) as exc:
            shown = ", ".join(str(list(t.shape)) for t in inputs)
            raise self.error(node, f"input shape {shown} does not fit: {exc}") from None
        base = sanitize(node.name, node.op.lower())
        name = self.unique_name(f"{base}_{suffix}" if suffix else base)
        self.nodes.append([name, layer, [t.name for t in inputs]])
        return Tensor(name, (inputs[0].shape[0], *out))

    def reshape(self, node, x, sample_shape, suffix="reshape"):
        """x with each sample reshaped to `sample_shape` (x itself if it already has it)."""
        sample_shape = tuple(int(s) for s in sample_shape)
        if sample_shape == x.shape[1:]:
            return x
        if math.prod(sample_shape) != math.prod(x.shape[1:]):
            raise self.error(node, f"cannot reshape samples of shape {list(x.shape[1:])} to "
                             f"{list(sample_shape)}")
        return self.layer(node, "reshape", {"shape": list(sample_shape)}, [x], suffix=suffix)
