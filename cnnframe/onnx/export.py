"""Writing a cnnframe Model as an ONNX model (inference: batch norm with its running
statistics, dropout the identity).

The graph keeps the model's names: graph inputs and outputs are the model's input and
output names, every node's output tensor is named after the node, and weights are
initializers named like ``Model.state_dict`` keys (``conv1.weight``).  The batch
dimension of every input and output is the symbolic ``N``; the other dimensions are the
model's.  The model's config is kept in the metadata (key ``cnnframe_config``) when
every layer is registered.

Built-in layers are mapped by :mod:`cnnframe.onnx._converters`; any other layer by its
:meth:`cnnframe.layers.Layer.to_onnx` method (whose default raises an error naming
the node and its type).
"""
import json
import os

import numpy as np

from cnnframe._files import atomic_write
from cnnframe.onnx._opsets import DEFAULT_OPSET, check_opset, ir_version, require_onnx

BATCH_DIM = "N"            # the symbolic batch dimension of inputs and outputs
CONFIG_METADATA_KEY = "cnnframe_config"
_MAX_PROTO_BYTES = 2**31 - 1   # protobuf's limit on one message


class ExportError(NotImplementedError, ValueError):
    """A model part that cannot be written as ONNX (the message names the node and its type).

    A NotImplementedError (what ``Layer.to_onnx`` raises by default) and a ValueError (the
    model given cannot be exported as it is).
    """


class ExportContext:
    """What a layer's ``to_onnx(ctx, inputs, name)`` writes the graph through.

    Attributes
    ----------
    opset : int
        The target opset of the default domain.
    dtype : numpy.dtype
        The model's float dtype (float32 or float64): the dtype of every float tensor.
    """

    def __init__(self, onnx, model, opset, dtype):
        self._onnx = onnx
        self._model = model
        self.opset = opset
        self.dtype = np.dtype(dtype)
        self.nodes = []
        self.initializers = []
        self._names = set(model.inputs) | set(model.nodes)
        self._node_labels = set()   # names of the ONNX nodes written
        self._shapes = {k: (None, *v) for k, v in model.shapes.items()}
        self._current = None   # (node name, layer type) being converted

    # --- names --------------------------------------------------------------------------
    def fresh(self, base):
        """A tensor name not used yet, built from `base`."""
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def _default_base(self, what):
        node = self._current[0] if self._current else "cnnframe"
        return f"{node}/{what}"

    # --- graph building -------------------------------------------------------------------
    def node(self, op_type, inputs, outputs=None, **attributes):
        """Add the ONNX node `op_type` of the default domain.

        Parameters
        ----------
        op_type : str
        inputs : list of str
            Tensor names; "" leaves an optional input out.
        outputs : None, int, str or list of str
            None: one output with a fresh name; k: k fresh names; names to use as given
            (a node's own name, say; each may be used once).
        **attributes
            The node's attributes (ints, floats, strings or lists of them).

        Returns
        -------
        str for one output, list of str for several.
        """
        if outputs is None or isinstance(outputs, int):
            count = 1 if outputs is None else outputs
            names = [self.fresh(self._default_base(op_type)) for _ in range(count)]
        else:
            names = [outputs] if isinstance(outputs, str) else list(outputs)
            for n in names:
                if n in self._names and n != (self._current[0] if self._current else None):
                    raise ValueError(f"ExportContext.node: tensor name {n!r} is already used")
                self._names.add(n)
        # The node that computes a cnnframe node's output takes that node's name, so an
        # import names its layer alike (ONNX keeps node and tensor names apart).
        current = self._current[0] if self._current else None
        label = (current if current is not None and names[0] == current
                 and current not in self._node_labels
                 else self.fresh(self._default_base(op_type) + "_node"))
        self._node_labels.add(label)
        self.nodes.append(self._onnx.helper.make_node(op_type, list(inputs), names, name=label,
                                                      **attributes))
        return names[0] if len(names) == 1 else names

    def constant(self, value, name=None, dtype=None):
        """Add an initializer; return its name.

        Parameters
        ----------
        value : array_like
            Float values become the model dtype and integers int64, unless `dtype` says.
        name : str, optional
            The name (made unique if taken); default ``<node>/const``.
        dtype : numpy dtype, optional
        """
        arr = np.asarray(value)
        if dtype is None:
            dtype = np.int64 if arr.dtype.kind in "iub" else self.dtype
        arr = np.asarray(arr, dtype=dtype, order="C")  # a scalar stays 0-d (Clip's bounds)
        name = self.fresh(name or self._default_base("const"))
        self.initializers.append(self._onnx.numpy_helper.from_array(arr, name))
        return name

    def shape(self, tensor):
        """The shape of a graph input or of a node's output tensor (batch dimension None).

        Raises KeyError for tensors a converter made itself (their shapes are its own).
        """
        try:
            return self._shapes[tensor]
        except KeyError:
            raise KeyError(f"ExportContext.shape: {tensor!r} is not a graph input or a node "
                           "output of the model") from None


def _convert(ctx, layer, inputs, name):
    """Run the layer's converter; return its output tensor name."""
    from cnnframe.layers.base import Layer
    from cnnframe.onnx._converters import CONVERTERS
    kind = layer.type_name or type(layer).__name__
    ctx._current = (name, kind)
    try:
        if type(layer).to_onnx is not Layer.to_onnx:
            out = layer.to_onnx(ctx, list(inputs), name)
        elif type(layer) in CONVERTERS:
            out = CONVERTERS[type(layer)](layer, ctx, list(inputs), name)
        else:
            layer.to_onnx(ctx, list(inputs), name)  # raises, naming the node and the type
    except ExportError:
        raise
    except NotImplementedError as exc:
        msg = str(exc)
        raise ExportError(msg if msg.startswith(f"node {name!r}") else
                          f"node {name!r} ({kind}): {msg}") from None
    finally:
        ctx._current = None
    if isinstance(out, (list, tuple)) and len(out) == 1:
        out = out[0]
    if not isinstance(out, str):
        raise ExportError(f"node {name!r} ({kind}): to_onnx must return the name of its "
                          f"output tensor, got {out!r}")
    return out


def _value_info(onnx, name, dtype, shape):
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return onnx.helper.make_tensor_value_info(name, elem, [BATCH_DIM, *shape])


def _check_dtype(dtype, model):
    if dtype is None:
        return np.dtype(model.dtype)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"export: dtype must be float32, float64 or None (the model's), "
                         f"got {dtype!r}")
    return dt


def to_onnx_model(model, opset=DEFAULT_OPSET, dtype=None):
    """The ONNX ModelProto of `model` in inference mode (see the module docstring).

    Parameters
    ----------
    model : cnnframe.graph.Model
    opset : int
        From cnnframe.onnx._opsets.MIN_OPSET (13) to MAX_OPSET (21).
    dtype : "float32", "float64" or None
        The float type of the graph's tensors (default: the model's).

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ImportError
        Without the onnx package.
    ExportError
        Naming the node and its layer type, for a layer without an ONNX mapping (or a
        configuration of it that ONNX cannot express).
    """
    onnx = require_onnx()
    from cnnframe.graph.model import Model
    if not isinstance(model, Model):
        raise TypeError(f"export: model must be a cnnframe Model, got {type(model).__name__}")
    opset = check_opset(opset)
    ctx = ExportContext(onnx, model, opset, _check_dtype(dtype, model))
    tensors = {name: name for name in model.inputs}
    for name in model._order:
        layer = model.nodes[name]
        tensors[name] = _convert(ctx, layer, [tensors[i] for i in model.node_inputs[name]],
                                 name)
    outputs = []
    for name in model.outputs:
        if tensors[name] != name:  # a converter that did not name its output after the node
            ctx.node("Identity", [tensors[name]], outputs=[name])
        outputs.append(_value_info(onnx, name, ctx.dtype, model.shapes[name]))
    inputs = [_value_info(onnx, name, ctx.dtype, shape) for name, shape in model.inputs.items()]
    graph = onnx.helper.make_graph(ctx.nodes, "cnnframe_model", inputs, outputs,
                                   initializer=ctx.initializers)
    import cnnframe
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="cnnframe", producer_version=cnnframe.__version__,
        ir_version=ir_version(onnx, opset))
    try:
        config = json.dumps(model.to_config())
    except ValueError:  # an unregistered layer has no config: the graph alone describes it
        config = None
    if config is not None:
        onnx.helper.set_model_props(proto, {CONFIG_METADATA_KEY: config})
    return proto


def export(model, path, opset=DEFAULT_OPSET, dtype=None):
    """Write `model` as an ONNX file (inference mode), atomically; return the path.

    The file passes ``onnx.checker.check_model(full_check=True)``; its graph is described
    in :mod:`cnnframe.onnx.export` (inputs and outputs named as the model's, batch
    dimension ``N``).

    Parameters
    ----------
    model : cnnframe.graph.Model
    path : str or os.PathLike
        The .onnx file to write (replaced atomically; its folder is created).
    opset : int
        The ONNX opset, 13 to 21 (default 17).
    dtype : "float32", "float64" or None
        The float type of the graph's inputs, outputs and weights (default: the model's).
        onnxruntime's CPU kernels are float32 for most ops (Conv, pooling, Erf, ...), so
        export float64 models with dtype="float32" to run them there.  (ONNX stores
        float attributes, e.g. leaky_relu's slope, as float32 in any case.)

    Returns
    -------
    str

    Raises
    ------
    ImportError
        Without the onnx package (``pip install cnnframe[onnx]``).
    ExportError
        A NotImplementedError naming the node and its layer type, for a layer that
        cannot be exported (nothing is written).
    TypeError, ValueError
        For a bad `model` or `opset`, or a model over protobuf's 2 GiB limit.
    """
    path = os.fspath(path)
    proto = to_onnx_model(model, opset, dtype)
    onnx = require_onnx()
    size = proto.ByteSize()
    if size > _MAX_PROTO_BYTES:
        raise ValueError(f"export: the ONNX model would be {size:,} bytes, over protobuf's "
                         f"2 GiB limit for one file; cnnframe does not write external data")
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return path
