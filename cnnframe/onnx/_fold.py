"""Constant folding: numpy versions of the ONNX ops that compute on constants.

When every input of a node is a constant (an initializer, a Constant node, or the
shape of a tensor whose shape the importer knows), the importer runs the node here
instead of building a layer.  This folds weight subgraphs (a transposed or cast
weight) and the shape arithmetic of exported reshapes (Shape -> Gather -> Unsqueeze
-> Concat -> Reshape).

Each function takes (inputs, attrs, ctx) -- inputs a list of arrays (None for an
omitted optional input), attrs the node's attributes, ctx a :class:`FoldContext` --
and returns the list of outputs.
"""
import numpy as np


class FoldContext:
    """What a fold function may need besides its inputs: the opset and the size limits."""

    def __init__(self, opset, limits, where):
        self.opset = opset
        self.limits = limits
        self.where = where  # "node 'name' (Op)" for errors

    def allocate(self, shape, itemsize):
        """Check that an output of `shape` fits the limit before it is created."""
        self.limits.check(shape, itemsize, f"the output of {self.where}")
        return tuple(int(s) for s in shape)

    def error(self, msg):
        return ValueError(f"{self.limits.path}: {self.where}: {msg}")


def _axes(value, ndim):
    return [int(a) + ndim if int(a) < 0 else int(a) for a in value]


def _binary(fn):
    def fold(ins, attrs, ctx):
        return [np.asarray(fn(ins[0], ins[1]))]
    return fold


def _int_div(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b).astype(np.result_type(a, b))  # C division: towards zero
    return a / b


def _unary(fn):
    return lambda ins, attrs, ctx: [np.asarray(fn(ins[0])).astype(ins[0].dtype, copy=False)]


def fold_constant(ins, attrs, ctx):
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        if key in attrs:
            v = attrs[key]
            if key == "value":
                return [v]
            return [np.array(v, np.float32 if "float" in key else np.int64)]
    raise ctx.error("only the value, value_float(s) and value_int(s) forms of Constant are "
                    f"supported, got attributes {sorted(attrs)}")


def fold_constant_of_shape(ins, attrs, ctx):
    shape = [int(s) for s in ins[0].reshape(-1)]
    value = attrs.get("value", np.zeros(1, np.float32))
    value = np.asarray(value).reshape(-1)[:1]
    return [np.full(ctx.allocate(shape, value.dtype.itemsize), value[0], value.dtype)]


def fold_shape(ins, attrs, ctx):
    shape = np.array(ins[0].shape, np.int64)
    start, end = attrs.get("start", 0), attrs.get("end")
    return [shape[start:end]]


def fold_gather(ins, attrs, ctx):
    data, idx = ins
    axis = _axes([attrs.get("axis", 0)], data.ndim)[0]
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    return [np.take(data, idx, axis=axis)]


def fold_cast(ins, attrs, ctx):
    from cnnframe.onnx._tensors import np_dtype
    return [ins[0].astype(np_dtype(attrs["to"], ctx.where, ctx.limits.path))]


def _unsqueeze_axes(ins, attrs, ctx):
    return attrs["axes"] if ctx.opset < 13 else [int(a) for a in ins[1].reshape(-1)]


def fold_unsqueeze(ins, attrs, ctx):
    x = ins[0]
    axes = _unsqueeze_axes(ins, attrs, ctx)
    for a in sorted(_axes(axes, x.ndim + len(axes))):
        x = np.expand_dims(x, a)
    return [x]


def fold_squeeze(ins, attrs, ctx):
    x = ins[0]
    axes = attrs.get("axes") if ctx.opset < 13 else (
        None if len(ins) < 2 or ins[1] is None else ins[1].reshape(-1))
    if axes is None:
        return [np.squeeze(x)]
    return [np.squeeze(x, axis=tuple(_axes(axes, x.ndim)))]


def fold_concat(ins, attrs, ctx):
    parts = [a for a in ins if a is not None]
    axis = _axes([attrs["axis"]], parts[0].ndim)[0]
    return [np.concatenate(parts, axis=axis)]


def fold_reshape(ins, attrs, ctx):
    x = ins[0]
    target = [int(s) for s in (attrs["shape"] if ctx.opset < 5 else ins[1].reshape(-1))]
    if not attrs.get("allowzero", 0):
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return [x.reshape(target)]


def fold_transpose(ins, attrs, ctx):
    return [np.transpose(ins[0], attrs.get("perm"))]


def fold_flatten(ins, attrs, ctx):
    x = ins[0]
    axis = _axes([attrs.get("axis", 1)], x.ndim)[0]
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


def fold_slice(ins, attrs, ctx):
    x = ins[0]
    if ctx.opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes"), None
    else:
        starts, ends = ins[1].reshape(-1), ins[2].reshape(-1)
        axes = ins[3].reshape(-1) if len(ins) > 3 and ins[3] is not None else None
        steps = ins[4].reshape(-1) if len(ins) > 4 and ins[4] is not None else None
    axes = list(range(len(starts))) if axes is None else _axes(axes, x.ndim)
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        # ONNX clamps huge ends (INT64_MAX) the way Python slices do
        index[a] = slice(int(s), int(max(min(e, 2**62), -2**62)), int(st))
    return [x[tuple(index)]]


def fold_range(ins, attrs, ctx):
    start, limit, delta = (a.reshape(()) for a in ins)
    count = max(int(np.ceil((limit - start) / delta)), 0)
    ctx.allocate([count], start.dtype.itemsize)
    return [np.arange(start, limit, delta, dtype=start.dtype)]


def fold_expand(ins, attrs, ctx):
    x, shape = ins[0], [int(s) for s in ins[1].reshape(-1)]
    out = np.broadcast_shapes(x.shape, tuple(shape))
    ctx.allocate(out, x.dtype.itemsize)
    return [np.array(np.broadcast_to(x, out))]


def fold_tile(ins, attrs, ctx):
    x, reps = ins[0], [int(r) for r in ins[1].reshape(-1)]
    ctx.allocate([s * r for s, r in zip(x.shape, reps)], x.dtype.itemsize)
    return [np.tile(x, reps)]


def fold_where(ins, attrs, ctx):
    return [np.where(ins[0], ins[1], ins[2])]


def _reduce(fn):
    def fold(ins, attrs, ctx):
        x = ins[0]
        axes = attrs.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = [int(a) for a in ins[1].reshape(-1)]
        axis = None if not axes else tuple(_axes(axes, x.ndim))
        return [np.asarray(fn(x, axis=axis, keepdims=bool(attrs.get("keepdims", 1))))]
    return fold


def fold_size(ins, attrs, ctx):
    return [np.array(ins[0].size, np.int64)]


def fold_identity(ins, attrs, ctx):
    return [ins[0]]


def fold_dropout(ins, attrs, ctx):
    return [ins[0], np.ones(ins[0].shape, bool)]


def fold_min_max(fn):
    def fold(ins, attrs, ctx):
        out = ins[0]
        for a in ins[1:]:
            out = fn(out, a)
        return [out]
    return fold


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[x.dtype])(x) if x.size else x


FOLDERS = {
    "Constant": fold_constant, "ConstantOfShape": fold_constant_of_shape, "Shape": fold_shape,
    "Size": fold_size, "Gather": fold_gather, "Cast": fold_cast, "Unsqueeze": fold_unsqueeze,
    "Squeeze": fold_squeeze, "Concat": fold_concat, "Reshape": fold_reshape,
    "Transpose": fold_transpose, "Flatten": fold_flatten, "Slice": fold_slice,
    "Range": fold_range, "Expand": fold_expand, "Tile": fold_tile, "Where": fold_where,
    "Identity": fold_identity, "Dropout": fold_dropout,
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply),
    "Div": _binary(_int_div), "Pow": _binary(np.power), "Equal": _binary(np.equal),
    "Less": _binary(np.less), "Greater": _binary(np.greater), "And": _binary(np.logical_and),
    "Or": _binary(np.logical_or), "Mod": _binary(np.fmod),
    "Min": fold_min_max(np.minimum), "Max": fold_min_max(np.maximum),
    "Neg": _unary(np.negative), "Abs": _unary(np.abs), "Sqrt": _unary(np.sqrt),
    "Reciprocal": _unary(np.reciprocal), "Exp": _unary(np.exp), "Log": _unary(np.log),
    "Floor": _unary(np.floor), "Ceil": _unary(np.ceil), "Not": _unary(np.logical_not),
    "Erf": _unary(_erf), "Sign": _unary(np.sign),
    "ReduceProd": _reduce(np.prod), "ReduceSum": _reduce(np.sum),
    "ReduceMean": _reduce(np.mean), "ReduceMax": _reduce(np.max), "ReduceMin": _reduce(np.min),
}
