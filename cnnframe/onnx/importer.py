"""Import ONNX models as ordinary cnnframe Models (``cnnframe.onnx.load``).

The import walks the ONNX graph once, in its (topological) node order:

1. initializers, Constant nodes and nodes whose inputs are all constant are folded
   into numpy arrays (:mod:`cnnframe.onnx._fold`); ``Shape`` of a tensor is a
   constant too, since every tensor's shape is fixed at import;
2. every other node becomes one or a few cnnframe layers (:mod:`cnnframe.onnx._ops`),
   whose weights are the folded constants;
3. the layers form a :class:`cnnframe.graph.Model`, trainable, savable and
   summarised like any other.

GELU written as ``x * 0.5 * (1 + erf(x / sqrt(2)))`` is recognised first
(:mod:`cnnframe.onnx._patterns`).  Shapes are static: each graph input's shape
(without the batch axis) comes from the file or from ``input_shape=``.  The batch
axis stays free: the model runs on any batch size.
"""
import os

import numpy as np

from cnnframe.onnx._builder import GraphBuilder, OnnxImportError, Node, Tensor, sanitize
from cnnframe.onnx._fold import FOLDERS, FoldContext
from cnnframe.onnx._ops import CONVERTERS
from cnnframe.onnx._patterns import fuse_gelu
from cnnframe.onnx._tensors import TensorLimits, attributes, tensor_to_array

MIN_OPSET = 6     # the oldest default-domain opset the importer reads
TESTED_OPSETS = (6, 21)
DEFAULT_DOMAINS = ("", "ai.onnx")


def supported_ops():
    """Sorted names of the ONNX ops the importer converts or folds."""
    return sorted(set(CONVERTERS) | set(FOLDERS))


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("importing ONNX models needs the onnx package: "
                          "pip install cnnframe[onnx]") from None
    return onnx


class _Missing:
    """An output a converter does not produce (MaxPool's indices, Dropout's mask)."""

    def __init__(self, node, index):
        self.node, self.index = node, index


def load(path, input_shape=None, max_tensor_bytes=None):
    """Import an ONNX model file as a :class:`cnnframe.graph.Model`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.onnx`` file.  External data files must lie in its folder (or below).
    input_shape : tuple of int, or dict name -> tuple, optional
        The shape of each sample without the batch axis, e.g. ``(3, 224, 224)``, for
        inputs whose declared shape has dynamic (named) axes besides the batch axis.
        A tuple stands for the only input; a dict is keyed by ONNX input names.
    max_tensor_bytes : int, optional
        The largest tensor (initializer, Constant or folded value) accepted, checked
        from its declared shape before anything is allocated; default: the model
        size limit (:func:`cnnframe.graph.sizes.model_size_limit`).

    Returns
    -------
    Model
        Inputs named after the ONNX inputs (characters other than letters, digits and
        ``_`` become ``_``), outputs after the ONNX outputs; float32 unless the ONNX
        inputs are doubles.  Shapes are (N, *input_shape) in and the ONNX output
        shapes out.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ImportError
        If the onnx package is not installed.
    ValueError
        Naming the file: a file that is not an ONNX model; a node whose op (or
        attribute) is not supported, naming the node, op and opset; a dynamic input
        axis without `input_shape`; external data outside the model's folder; a
        tensor larger than `max_tensor_bytes`.
    """
    _require_onnx()
    from cnnframe.graph.model import Model
    from cnnframe.graph.sizes import model_size_limit

    path = os.fspath(path)
    proto = _read_model(path)
    opset = _default_opset(proto, path)
    graph = proto.graph
    if max_tensor_bytes is None:
        max_tensor_bytes = model_size_limit()[0]
    limits = TensorLimits(max_tensor_bytes, os.path.dirname(os.path.abspath(path)), path)
    if len(graph.sparse_initializer):
        raise ValueError(f"{path}: sparse initializers are not supported")

    values = {}
    for init in graph.initializer:
        values[init.name] = tensor_to_array(init, limits, f"initializer {init.name!r}")
    # Older exporters list the initializers among the graph inputs too: those are weights.
    graph_inputs = [vi for vi in graph.input if vi.name not in values]
    if not graph_inputs:
        raise ValueError(f"{path}: the graph has no inputs besides its initializers")
    shapes, dtype, batch = _input_shapes(graph_inputs, input_shape, path)
    builder = GraphBuilder(path, opset, batch, dtype)
    for vi in graph_inputs:
        values[vi.name] = builder.add_input(vi.name, shapes[vi.name])

    nodes = [Node(n.name, n.op_type, n.domain, n.input, n.output, attributes(n, limits))
             for n in graph.node]
    outputs = [vi.name for vi in graph.output]
    nodes = fuse_gelu(nodes, _pattern_constants(nodes, values), set(outputs))
    for node in nodes:
        _import_node(builder, node, values, limits)
    return _finish(builder, values, outputs, path, Model)


def _read_model(path):
    onnx = _require_onnx()
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such ONNX model file")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; expected an .onnx model file")
    with open(path, "rb") as f:
        data = f.read()
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ValueError(f"{path}: not an ONNX model (it does not parse as one: {exc})") \
            from None
    if not proto.HasField("graph") or not len(proto.graph.node):
        raise ValueError(f"{path}: not an ONNX model (it holds no graph nodes)")
    return proto


def _default_opset(proto, path):
    versions = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise ValueError(f"{path}: the model declares no opset of the default ONNX domain")
    opset = int(versions[0])
    if opset < MIN_OPSET:
        raise ValueError(f"{path}: opset {opset} is older than the oldest supported "
                         f"({MIN_OPSET}); re-export the model with a newer opset")
    return opset


def _input_shapes(graph_inputs, input_shape, path):
    """({onnx input name: full shape with the batch axis}, dtype, batch used for folding)."""
    import onnx
    names = [vi.name for vi in graph_inputs]
    if input_shape is None:
        given = {}
    elif isinstance(input_shape, dict):
        given = dict(input_shape)
        unknown = [k for k in given if k not in names]
        if unknown:
            raise ValueError(f"{path}: input_shape names unknown inputs {unknown}; the "
                             f"model's inputs are {names}")
    else:
        if len(names) != 1:
            raise ValueError(f"{path}: the model has several inputs {names}; give input_shape "
                             "as a dict name -> shape")
        given = {names[0]: input_shape}
    declared, dtypes = {}, set()
    for vi in graph_inputs:
        if not vi.type.HasField("tensor_type"):
            raise ValueError(f"{path}: input {vi.name!r} is not a tensor")
        tt = vi.type.tensor_type
        if tt.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            raise ValueError(f"{path}: input {vi.name!r} has element type "
                             f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; cnnframe "
                             "models take float or double inputs")
        dtypes.add(np.float64 if tt.elem_type == onnx.TensorProto.DOUBLE else np.float32)
        declared[vi.name] = None if not tt.HasField("shape") else [
            int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0
            else (d.dim_param or "?") for d in tt.shape.dim]
    first = declared[names[0]]
    batch = first[0] if first and isinstance(first[0], int) else 1
    shapes = {}
    for name in names:
        dims = declared[name]
        if name in given:
            sample = given[name]
            if (not isinstance(sample, (list, tuple)) or not sample or not all(
                    isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                    for s in sample)):
                raise ValueError(f"{path}: input_shape for input {name!r} must be a tuple of "
                                 f"ints >= 1 without the batch axis, got {sample!r}")
            if dims is not None and len(dims) != len(sample) + 1:
                raise ValueError(f"{path}: input {name!r} is declared with shape {dims} "
                                 f"(rank {len(dims)}); input_shape {tuple(sample)} must give "
                                 f"the {len(dims) - 1} axes after the batch axis")
            shapes[name] = (batch, *(int(s) for s in sample))
            continue
        if dims is None or len(dims) < 2:
            raise ValueError(f"{path}: input {name!r} declares no shape with a batch axis "
                             f"(declared: {dims}); pass input_shape= (the shape without the "
                             "batch axis)")
        dynamic = [(i, d) for i, d in enumerate(dims) if i and not isinstance(d, int)]
        if dynamic:
            i, d = dynamic[0]
            raise ValueError(f"{path}: input {name!r} has a dynamic axis {d!r} at position "
                             f"{i} (declared shape {dims}); pass input_shape= with the shape "
                             "without the batch axis to fix it")
        shapes[name] = (batch, *dims[1:])
    dtype = np.float64 if dtypes == {np.float64} else np.float32
    return shapes, dtype, batch


def _pattern_constants(nodes, values):
    """Scalars and small arrays the pattern matcher may read: initializers and Constants."""
    consts = {k: v for k, v in values.items() if isinstance(v, np.ndarray) and v.size <= 16}
    for n in nodes:
        if n.op == "Constant" and isinstance(n.attrs.get("value"), np.ndarray):
            consts[n.outputs[0]] = n.attrs["value"]
        elif n.op == "Constant" and "value_float" in n.attrs:
            consts[n.outputs[0]] = np.array(n.attrs["value_float"], np.float32)
    return consts


def _import_node(builder, node, values, limits):
    opset = builder.opset
    where = f"node {node.name!r} ({node.op}, opset {opset})"
    if node.domain not in DEFAULT_DOMAINS:
        raise OnnxImportError(f"{limits.path}: {where}: op {node.domain}.{node.op} of domain "
                           f"{node.domain!r} is not supported (only the default ONNX domain)")
    ins = []
    for name in node.inputs:
        if not name:
            ins.append(None)
            continue
        if name not in values:
            raise OnnxImportError(f"{limits.path}: {where}: input {name!r} is not produced by "
                               "any earlier node, initializer or graph input")
        v = values[name]
        if isinstance(v, _Missing):
            raise OnnxImportError(f"{limits.path}: {where}: uses output {v.index} of node "
                               f"{v.node.name!r} ({v.node.op}), which cnnframe does not "
                               "compute")
        ins.append(v)
    present = [v for v in ins if v is not None]
    if node.op in ("Shape", "Size") and present and isinstance(present[0], Tensor):
        # the shape is known without the data: fold over a stand-in with strides 0
        stand_in = np.lib.stride_tricks.as_strided(np.zeros(1, np.bool_),
                                                   shape=ins[0].shape,
                                                   strides=(0,) * len(ins[0].shape))
        outs = FOLDERS[node.op]([stand_in], node.attrs, FoldContext(opset, limits, where))
    elif node.op in FOLDERS and all(isinstance(v, np.ndarray) for v in present):
        try:
            outs = FOLDERS[node.op](ins, node.attrs, FoldContext(opset, limits, where))
        except ValueError as exc:
            if str(exc).startswith(limits.path):
                raise
            raise OnnxImportError(f"{limits.path}: {where}: cannot fold it: {exc}") from None
        except (KeyError, IndexError, TypeError) as exc:
            raise OnnxImportError(f"{limits.path}: {where}: cannot fold it ({type(exc).__name__}: "
                               f"{exc})") from None
    elif node.op in CONVERTERS:
        try:
            outs = CONVERTERS[node.op](builder, node, ins)
        except OnnxImportError:
            raise
        except KeyError as exc:
            raise OnnxImportError(f"{limits.path}: {where}: missing attribute {exc}") from None
    else:
        raise OnnxImportError(f"{limits.path}: {where}: op {node.op!r} is not supported by "
                           f"cnnframe's ONNX import (opset {opset}); supported ops: "
                           f"{', '.join(supported_ops())}")
    outs = [np.asarray(v) if isinstance(v, np.generic) else v for v in outs]
    for k, name in enumerate(node.outputs):
        if name:
            values[name] = outs[k] if k < len(outs) else _Missing(node, k)


def _finish(builder, values, outputs, path, model_cls):
    """Turn the builder's nodes into a Model: name the outputs, drop dead nodes."""
    out_names = []
    for onnx_name in outputs:
        v = values.get(onnx_name)
        if not isinstance(v, Tensor):
            raise ValueError(f"{path}: graph output {onnx_name!r} is "
                             f"{'a constant' if isinstance(v, np.ndarray) else 'not computed'}"
                             "; cnnframe models output tensors computed from their inputs")
        if v.name in builder.inputs or v.name in out_names:
            node = Node(onnx_name, "Identity", "", [], [], {})
            v = builder.layer(node, "identity", {}, [v])
        out_names.append(v.name)
    nodes = {name: [layer, ins] for name, layer, ins in builder.nodes}
    # Outputs are named after the ONNX outputs where that name is free.
    renames = {}
    taken = set(nodes) | set(builder.inputs)
    for onnx_name, name in zip(outputs, out_names):
        new = sanitize(onnx_name, name)
        if new != name and new not in taken:
            renames[name] = new
            taken.add(new)
    out_names = [renames.get(n, n) for n in out_names]
    live, stack = set(), list(out_names)
    ordered = []
    for name, (layer, ins) in nodes.items():
        ordered.append((renames.get(name, name), layer, [renames.get(i, i) for i in ins]))
    by_name = {n: ins for n, _, ins in ordered}
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(by_name.get(n, ()))
    kept = [(n, layer, ins) for n, layer, ins in ordered if n in live]
    unused = [name for name in builder.inputs if name not in live]
    if unused:
        raise ValueError(f"{path}: graph input(s) {unused} feed no output through layers "
                         "(only their shapes are used, or nothing); cnnframe models need "
                         "every input")
    try:
        return model_cls(dict(builder.inputs), kept, out_names, dtype=builder.dtype.name)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
