"""One converter per ONNX op: ONNX node -> cnnframe layers.

A converter takes (builder, node, inputs): the :class:`~cnnframe.onnx._builder.GraphBuilder`,
the :class:`~cnnframe.onnx._builder.Node` and its input values (a
:class:`~cnnframe.onnx._builder.Tensor`, a numpy array for a constant, or None for an
omitted optional input).  It returns the node's output values, in order; outputs it
does not produce (MaxPool's indices, Dropout's mask) are left off the end.

Nodes whose inputs are all constants never get here: they are folded
(:mod:`cnnframe.onnx._fold`).  :data:`CONVERTERS` maps op names to converters.
"""
import math

import numpy as np

from cnnframe.onnx._builder import Tensor

FLT_MAX = 3.4e38  # Clip-6's default bounds are +-FLT_MAX: no bound


def _axis(b, node, axis, ndim):
    a = int(axis) + ndim if int(axis) < 0 else int(axis)
    if not 0 <= a < ndim:
        raise b.error(node, f"axis {axis} is out of range for a tensor of rank {ndim}")
    return a


def _not_batch(b, node, axis, what="axis"):
    if axis == 0:
        raise b.error(node, f"{what} 0 is the batch axis, which cnnframe layers keep as it is")
    return axis


def _scalar(b, node, value, what):
    if value is None:
        return None
    if not isinstance(value, np.ndarray) or value.size != 1:
        raise b.error(node, f"{what} must be a constant scalar, got "
                      f"{'a tensor' if isinstance(value, Tensor) else np.shape(value)}")
    return float(value.reshape(()))


# --- spatial geometry (Conv, ConvTranspose, pooling) --------------------------------------------

def _spatial_pads(b, node, spatial, kernel, strides, dilations):
    """ONNX pads [begin..., end...] for the node's pads/auto_pad."""
    k = len(spatial)
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(node.attrs.get("pads", [0] * 2 * k))
        if len(pads) != 2 * k:
            raise b.error(node, f"pads {pads} must have 2 x {k} entries")
        return pads
    if auto == "VALID":
        return [0] * 2 * k
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise b.error(node, f"unknown auto_pad {auto!r}")
    begin, end = [], []
    for size, kk, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (kk - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def _geometry(b, node, x, kernel):
    """(kernel, strides, dilations, pads [t, l, b, r]) of a 1-D or 2-D window op, 2-D form."""
    k = len(kernel)
    strides = list(node.attrs.get("strides", [1] * k))
    dilations = list(node.attrs.get("dilations", [1] * k))
    if len(strides) != k or len(dilations) != k:
        raise b.error(node, f"strides {strides} and dilations {dilations} must have {k} "
                      "entries, one per spatial axis")
    pads = _spatial_pads(b, node, x.shape[2:], kernel, strides, dilations)
    if any(p < 0 for p in pads):
        raise b.error(node, f"negative pads {pads} are not supported")
    if k == 1:
        return [1, kernel[0]], [1, strides[0]], [1, dilations[0]], [0, pads[0], 0, pads[1]]
    return list(kernel), strides, dilations, pads


def _lift(b, node, x, what):
    """x as (N, C, H, W): a (N, C, L) tensor becomes (N, C, 1, L).  Returns (x4, restore)."""
    if x.ndim == 4:
        return x, lambda t: t
    if x.ndim == 3:
        x4 = b.reshape(node, x, (x.shape[1], 1, x.shape[2]), suffix="to_2d")
        return x4, lambda t: b.reshape(node, t, (t.shape[1], t.shape[3]), suffix="to_1d")
    raise b.error(node, f"{what} takes (N, C, L) or (N, C, H, W) inputs, got shape "
                  f"{list(x.shape)}")


def _symmetric_or_pad(b, node, x, pads, value=0.0):
    """(x, [ph, pw]): symmetric pads stay with the layer; others become a pad layer first."""
    t, l, bo, r = pads
    if t == bo and l == r:
        return x, [t, l]
    x = b.layer(node, "pad", {"pads": [[0, 0], [t, bo], [l, r]], "mode": "constant",
                              "value": value}, [x], suffix="pad")
    return x, [0, 0]


# --- convolutions ---------------------------------------------------------------------------------

def convert_conv(b, node, ins):
    x = b.tensor(node, ins[0])
    w = b.weight(node, ins[1], "the weight (input 1)")
    bias = b.weight(node, ins[2], "the bias (input 2)") if len(ins) > 2 and ins[2] is not None \
        else None
    if w.ndim not in (3, 4) or x.ndim != w.ndim:
        raise b.error(node, f"only 1-D and 2-D convolutions are supported; input shape "
                      f"{list(x.shape)}, weight shape {list(w.shape)}")
    kernel = list(node.attrs.get("kernel_shape", w.shape[2:]))
    if kernel != list(w.shape[2:]):
        raise b.error(node, f"kernel_shape {kernel} differs from the weight's {list(w.shape)}")
    group = node.attrs.get("group", 1)
    kernel, strides, dilations, pads = _geometry(b, node, x, kernel)
    x4, restore = _lift(b, node, x, "Conv")
    x4, padding = _symmetric_or_pad(b, node, x4, pads)
    w4 = w.reshape(w.shape[0], w.shape[1], *kernel)
    cfg = {"in_channels": int(w.shape[1] * group), "out_channels": int(w.shape[0]),
           "kernel_size": kernel, "stride": strides, "padding": padding,
           "dilation": dilations, "groups": int(group), "bias": bias is not None}
    params = {"weight": w4}
    if bias is not None:
        params["bias"] = bias.reshape(-1)
    return [restore(b.layer(node, "conv2d", cfg, [x4], params=params))]


def convert_conv_transpose(b, node, ins):
    x = b.tensor(node, ins[0])
    w = b.weight(node, ins[1], "the weight (input 1)")
    bias = b.weight(node, ins[2], "the bias (input 2)") if len(ins) > 2 and ins[2] is not None \
        else None
    if w.ndim not in (3, 4) or x.ndim != w.ndim:
        raise b.error(node, f"only 1-D and 2-D transposed convolutions are supported; input "
                      f"shape {list(x.shape)}, weight shape {list(w.shape)}")
    a = node.attrs
    k = w.ndim - 2
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides = list(a.get("strides", [1] * k))
    dilations = list(a.get("dilations", [1] * k))
    out_pad = list(a.get("output_padding", [0] * k))
    group = a.get("group", 1)
    spatial = x.shape[2:]
    if "output_shape" in a:
        target = list(a["output_shape"])[-k:]
        begin, end = [], []
        for i in range(k):
            total = (strides[i] * (spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i]
                     + 1 - target[i])
            if a.get("auto_pad", "NOTSET") == "SAME_UPPER":
                begin.append(total // 2)
                end.append(total - total // 2)
            else:
                begin.append(total - total // 2)
                end.append(total // 2)
        pads = begin + end
    elif a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i in range(k):
            total = (strides[i] * (spatial[i] - 1) + out_pad[i]
                     + (kernel[i] - 1) * dilations[i] + 1 - spatial[i] * strides[i])
            pads.append(total)
        upper = a["auto_pad"] == "SAME_UPPER"
        pads = ([t // 2 if upper else t - t // 2 for t in pads]
                + [t - t // 2 if upper else t // 2 for t in pads])
    else:
        pads = list(a.get("pads", [0] * 2 * k))
    # cnnframe's layer cuts `padding` from both sides and adds output_padding at the end:
    # ONNX's (begin, end) pads are padding = begin, output_padding += begin - end.
    padding = pads[:k]
    extra = [op + bg - en for op, bg, en in zip(out_pad, pads[:k], pads[k:])]
    if any(p < 0 for p in padding) or any(e < 0 or e >= max(s, d) for e, s, d in
                                          zip(extra, strides, dilations)):
        raise b.error(node, f"pads {pads} with output_padding {out_pad} are not supported "
                      "(need begin >= end and begin - end + output_padding < max(stride, "
                      "dilation))")
    if k == 1:
        kernel, strides, dilations = [1, kernel[0]], [1, strides[0]], [1, dilations[0]]
        padding, extra = [0, padding[0]], [0, extra[0]]
    x4, restore = _lift(b, node, x, "ConvTranspose")
    cfg = {"in_channels": int(w.shape[0]), "out_channels": int(w.shape[1] * group),
           "kernel_size": kernel, "stride": strides, "padding": padding,
           "output_padding": extra, "groups": int(group), "bias": bias is not None,
           "dilation": dilations}
    params = {"weight": w.reshape(w.shape[0], w.shape[1], *kernel)}
    if bias is not None:
        params["bias"] = bias.reshape(-1)
    return [restore(b.layer(node, "conv_transpose2d", cfg, [x4], params=params))]


# --- pooling --------------------------------------------------------------------------------------

def _pool(mode):
    def convert(b, node, ins):
        x = b.tensor(node, ins[0])
        a = node.attrs
        if "kernel_shape" not in a:
            raise b.error(node, "kernel_shape is required")
        if len(a["kernel_shape"]) != x.ndim - 2:
            raise b.error(node, f"kernel_shape {a['kernel_shape']} does not fit the input "
                          f"shape {list(x.shape)}")
        kernel, strides, dilations, pads = _geometry(b, node, x, list(a["kernel_shape"]))
        ceil_mode = bool(a.get("ceil_mode", 0))
        include_pad = bool(a.get("count_include_pad", 0))
        x4, restore = _lift(b, node, x, node.op)
        t, l, bo, r = pads
        h, w = x4.shape[2:]
        floor_same = all(
            (size + 2 * p - k) // s == -(-(size + 2 * p - k) // s)
            for size, p, k, s in ((h, t, kernel[0], strides[0]), (w, l, kernel[1], strides[1])))
        builtin = (dilations == [1, 1] and t == bo and l == r and t <= kernel[0] // 2
                   and l <= kernel[1] // 2 and (not ceil_mode or floor_same)
                   and (mode == "max" or include_pad or pads == [0, 0, 0, 0]))
        if builtin:
            cfg = {"kernel_size": kernel, "stride": strides, "padding": [t, l]}
            y = b.layer(node, f"{mode}_pool2d", cfg, [x4])
        else:
            cfg = {"mode": mode, "kernel_size": kernel, "stride": strides,
                   "dilation": dilations, "pads": pads, "ceil_mode": ceil_mode,
                   "count_include_pad": include_pad}
            y = b.layer(node, "pool2d", cfg, [x4])
        return [restore(y)]
    return convert


def _global_pool(mode):
    def convert(b, node, ins):
        x = b.tensor(node, ins[0])
        x4, restore = _lift(b, node, x, node.op)
        y = b.layer(node, f"adaptive_{mode}_pool2d", {"output_size": 1}, [x4])
        return [restore(y)]
    return convert


# --- normalisation --------------------------------------------------------------------------------

def convert_batch_norm(b, node, ins):
    x = b.tensor(node, ins[0])
    scale, bias, mean, var = (b.weight(node, v, what) for v, what in zip(
        ins[1:5], ("the scale", "the bias", "the mean", "the variance")))
    a = node.attrs
    if a.get("training_mode", 0):
        raise b.error(node, "training_mode=1 is not supported: export the model in eval mode")
    c = x.shape[1] if x.ndim > 1 else 0
    if b.opset < 9 and a.get("spatial", 1) == 0 and math.prod(x.shape[2:]) != 1:
        raise b.error(node, "spatial=0 (statistics per element, not per channel) is not "
                      "supported for inputs with spatial axes")
    arrays = [v.reshape(-1) for v in (scale, bias, mean, var)]
    if any(v.size != c for v in arrays):
        raise b.error(node, f"scale, bias, mean and variance must have {c} values (the "
                      f"channels of input shape {list(x.shape)}), got "
                      f"{[int(v.size) for v in arrays]}")
    kind = {4: "batch_norm2d", 2: "batch_norm1d", 3: "batch_norm1d"}.get(x.ndim)
    if kind is None:
        raise b.error(node, f"inputs of shape {list(x.shape)} are not supported (rank 2, 3 "
                      "or 4)")
    momentum = min(max(1.0 - float(a.get("momentum", 0.9)), 0.0), 1.0)
    cfg = {"num_features": int(c), "eps": float(a.get("epsilon", 1e-5)), "momentum": momentum}
    y = b.layer(node, kind, cfg, [x], params={"weight": arrays[0], "bias": arrays[1]},
                buffers={"running_mean": arrays[2], "running_var": arrays[3]})
    return [y]


def convert_instance_norm(b, node, ins):
    x = b.tensor(node, ins[0])
    scale, bias = (b.weight(node, v, what).reshape(-1) for v, what in zip(
        ins[1:3], ("the scale (input 1)", "the bias (input 2)")))
    if x.ndim < 3:
        raise b.error(node, f"input shape {list(x.shape)} has no spatial axes to normalise "
                      "over; expected (N, C, ...)")
    c = x.shape[1]
    if scale.size != c or bias.size != c:
        raise b.error(node, f"scale and bias must have {c} values (the channels of input "
                      f"shape {list(x.shape)}), got {scale.size} and {bias.size}")
    # Instance norm is group norm with one channel per group, for inputs of any rank.
    cfg = {"num_groups": int(c), "num_channels": int(c),
           "eps": float(node.attrs.get("epsilon", 1e-5)), "affine": True}
    return [b.layer(node, "group_norm", cfg, [x], params={"weight": scale, "bias": bias})]


def convert_layer_norm(b, node, ins):
    x = b.tensor(node, ins[0])
    axis = _not_batch(b, node, _axis(b, node, node.attrs.get("axis", -1), x.ndim))
    shape = tuple(x.shape[axis:])
    params = {}
    for key, value, what in (("weight", ins[1], "the scale (input 1)"),
                             ("bias", ins[2] if len(ins) > 2 else None, "the bias (input 2)")):
        if value is None:
            continue
        value = b.weight(node, value, what)
        try:
            params[key] = np.broadcast_to(value, shape)
        except ValueError:
            raise b.error(node, f"{what} of shape {list(value.shape)} does not broadcast to "
                          f"the normalised axes {list(shape)}") from None
    cfg = {"normalized_shape": list(shape), "eps": float(node.attrs.get("epsilon", 1e-5)),
           "elementwise_affine": True, "bias": "bias" in params}
    return [b.layer(node, "layer_norm", cfg, [x], params=params)]


def convert_lrn(b, node, ins):
    x = b.tensor(node, ins[0])
    a = node.attrs
    cfg = {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)),
           "beta": float(a.get("beta", 0.75)), "k": float(a.get("bias", 1.0))}
    return [b.layer(node, "lrn", cfg, [x])]


# --- activations ----------------------------------------------------------------------------------

def _activation(type_name, config=lambda attrs: {}):
    def convert(b, node, ins):
        return [b.layer(node, type_name, config(node.attrs), [b.tensor(node, ins[0])])]
    return convert


def convert_softmax(b, node, ins):
    x = b.tensor(node, ins[0])
    axis = _axis(b, node, node.attrs.get("axis", 1 if b.opset < 13 else -1), x.ndim)
    _not_batch(b, node, axis)
    if b.opset >= 13 or axis == x.ndim - 1:
        return [b.layer(node, "softmax", {"axis": axis}, [x])]
    # Before opset 13 Softmax normalises over all axes from `axis` on together.
    flat = b.reshape(node, x, (*x.shape[1:axis], math.prod(x.shape[axis:])), suffix="flat")
    y = b.layer(node, "softmax", {"axis": -1}, [flat])
    return [b.reshape(node, y, x.shape[1:], suffix="unflat")]


def convert_clip(b, node, ins):
    x = b.tensor(node, ins[0])
    if b.opset < 11:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    else:
        lo = _scalar(b, node, ins[1] if len(ins) > 1 else None, "min (input 1)")
        hi = _scalar(b, node, ins[2] if len(ins) > 2 else None, "max (input 2)")
    lo = None if lo is None or lo <= -FLT_MAX else lo
    hi = None if hi is None or hi >= FLT_MAX else hi
    if lo == 0.0 and hi is None:
        return [b.layer(node, "relu", {}, [x])]
    return [b.layer(node, "clip", {"min": lo, "max": hi}, [x])]


def convert_prelu(b, node, ins):
    x = b.tensor(node, ins[0])
    slope = b.weight(node, ins[1], "the slope (input 1)")
    shape = list(slope.shape)
    while len(shape) > x.ndim - 1 and shape and shape[0] == 1:
        shape.pop(0)
    if slope.size == 1:
        n = 1
    elif x.ndim >= 2 and shape and shape[0] == x.shape[1] and len(shape) == x.ndim - 1 \
            and math.prod(shape[1:]) == 1:
        n = x.shape[1]
    else:
        raise b.error(node, f"slope of shape {list(slope.shape)} is not supported for input "
                      f"{list(x.shape)} (one slope, or one per channel)")
    y = b.layer(node, "prelu", {"num_parameters": int(n)}, [x],
                params={"weight": slope.reshape(-1)})
    return [y]


def convert_hard_sigmoid(b, node, ins):
    x = b.tensor(node, ins[0])
    alpha, beta = node.attrs.get("alpha", 0.2), node.attrs.get("beta", 0.5)
    y = b.layer(node, "elementwise_const", {"op": "mul"}, [x], buffers={"value": np.array(alpha)},
                suffix="scale")
    y = b.layer(node, "elementwise_const", {"op": "add"}, [y], buffers={"value": np.array(beta)},
                suffix="shift")
    return [b.layer(node, "clip", {"min": 0.0, "max": 1.0}, [y])]


def convert_gelu(b, node, ins):
    approximate = node.attrs.get("approximate", "none")
    return [b.layer(node, "gelu", {"approximate": approximate}, [b.tensor(node, ins[0])])]


# --- linear algebra -------------------------------------------------------------------------------

def convert_gemm(b, node, ins):
    a = node.attrs
    x = b.tensor(node, ins[0], "input A")
    if a.get("transA", 0):
        raise b.error(node, "transA=1 would transpose the batch axis; not supported")
    if x.ndim != 2:
        raise b.error(node, f"input A must be 2-D (N, K), got shape {list(x.shape)}")
    w = b.weight(node, ins[1], "input B")
    w = w if a.get("transB", 0) else w.T  # (M, K), linear's layout
    if w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise b.error(node, f"B of shape {list(ins[1].shape)} does not fit A of shape "
                      f"{list(x.shape)}")
    m = w.shape[0]
    params = {"weight": float(a.get("alpha", 1.0)) * w}
    c = ins[2] if len(ins) > 2 else None
    if c is not None:
        c = b.weight(node, c, "input C")
        if c.size not in (1, m) or (c.ndim == 2 and c.shape[0] != 1):
            raise b.error(node, f"C of shape {list(c.shape)} is not supported (a bias of "
                          f"{m} values or a scalar)")
        params["bias"] = float(a.get("beta", 1.0)) * np.broadcast_to(c.reshape(-1), (m,))
    cfg = {"in_features": int(x.shape[1]), "out_features": int(m), "bias": c is not None}
    return [b.layer(node, "linear", cfg, [x], params=params)]


def convert_matmul(b, node, ins):
    x = b.tensor(node, ins[0], "input A (a tensor times a constant matrix is supported)")
    w = b.weight(node, ins[1], "input B")
    if w.ndim != 2 or x.ndim < 2 or x.shape[-1] != w.shape[0]:
        raise b.error(node, f"only tensor (N, ..., K) times constant (K, M) is supported; "
                      f"got {list(x.shape)} times {list(w.shape)}")
    k, m = (int(s) for s in w.shape)
    if x.ndim == 2:
        return [b.layer(node, "linear", {"in_features": k, "out_features": m, "bias": False},
                        [x], params={"weight": w.T})]
    return [b.layer(node, "matmul_const", {"in_features": k, "out_features": m}, [x],
                    params={"weight": w})]


# --- element-wise arithmetic ----------------------------------------------------------------------

_REVERSED = {"add": "add", "mul": "mul", "sub": "rsub", "div": "rdiv"}


def _const_operand(b, node, const, x):
    """The constant of an element-wise op as an array broadcasting against x's samples."""
    const = b.weight(node, const, "the constant operand")
    shape = list(const.shape)
    while len(shape) >= x.ndim and shape and shape[0] == 1:
        shape.pop(0)
    if len(shape) >= x.ndim:
        raise b.error(node, f"a constant of shape {list(const.shape)} would broadcast along "
                      f"the batch axis of the input {list(x.shape)}")
    return const.reshape(shape)


def _elementwise(op):
    def convert(b, node, ins):
        left, right = ins[0], ins[1]
        if isinstance(left, Tensor) and isinstance(right, Tensor):
            if left.ndim != right.ndim or left.shape[0] != right.shape[0]:
                raise b.error(node, f"tensors of shapes {list(left.shape)} and "
                              f"{list(right.shape)} must have the same rank and batch axis")
            if op == "add" and left.shape == right.shape:
                return [b.layer(node, "add", {}, [left, right])]
            return [b.layer(node, "elementwise", {"op": op}, [left, right])]
        x, const, kind = (left, right, op) if isinstance(left, Tensor) else \
            (right, left, _REVERSED[op])
        value = _const_operand(b, node, const, x)
        y = b.layer(node, "elementwise_const", {"op": kind, "shape": list(value.shape)}, [x],
                    buffers={"value": value})
        if y.shape != x.shape:
            raise b.error(node, f"the constant of shape {list(const.shape)} changes the "
                          f"shape of {list(x.shape)}")
        return [y]
    return convert


def convert_sum(b, node, ins):
    values = [v for v in ins if v is not None]
    tensors = [v for v in values if isinstance(v, Tensor)]
    if len(values) == 1:
        return [values[0]]
    if len(tensors) == len(values) and all(t.shape == tensors[0].shape for t in tensors):
        return [b.layer(node, "add", {}, tensors)]
    total = tensors[0]
    for k, v in enumerate(values):
        if v is tensors[0]:
            continue
        step = _elementwise("add")
        sub = type(node)(f"{node.name}_{k}", node.op, node.domain, [], [], {})
        total = step(b, sub, [total, v])[0]
    return [total]


# --- shapes ---------------------------------------------------------------------------------------

def convert_concat(b, node, ins):
    parts = [v for v in ins if v is not None]
    if not all(isinstance(v, Tensor) for v in parts):
        raise b.error(node, "concatenating tensors with constants is not supported")
    axis = _not_batch(b, node, _axis(b, node, node.attrs["axis"], parts[0].ndim))
    if len(parts) == 1:
        return [parts[0]]
    return [b.layer(node, "concat", {"axis": axis}, parts)]


def convert_reshape(b, node, ins):
    x = b.tensor(node, ins[0])
    if b.opset < 5:
        target = list(node.attrs["shape"])
    else:
        if not isinstance(ins[1], np.ndarray):
            raise b.error(node, "the target shape (input 1) must be constant (or folded from "
                          "the input's shape)")
        target = [int(s) for s in ins[1].reshape(-1)]
    if node.attrs.get("allowzero", 0) and 0 in target:
        raise b.error(node, "allowzero=1 with a 0 in the shape is not supported")
    target = [x.shape[i] if s == 0 and i < x.ndim else s for i, s in enumerate(target)]
    sample = math.prod(x.shape[1:])
    if not target or target[0] not in (b.batch, -1):
        raise b.error(node, f"reshaping {list(x.shape)} to {target} would change the batch "
                      f"axis (its first size must be the batch size {b.batch}, 0 or -1)")
    rest = target[1:]
    if target[0] == -1:
        if -1 in rest or math.prod(rest) != sample:
            raise b.error(node, f"reshaping {list(x.shape)} to {target} would change the "
                          "batch axis")
    elif rest.count(-1) == 1:
        known = math.prod(s for s in rest if s != -1)
        if known == 0 or sample % known:
            raise b.error(node, f"cannot reshape {list(x.shape)} to {target}")
        rest = [sample // known if s == -1 else s for s in rest]
    if not rest:
        raise b.error(node, f"reshaping {list(x.shape)} to {target} leaves no axis besides "
                      "the batch axis, which cnnframe layers need")
    return [b.reshape(node, x, rest)]


def convert_flatten(b, node, ins):
    x = b.tensor(node, ins[0])
    axis = _axis(b, node, node.attrs.get("axis", 1), x.ndim + 1)
    if axis == 0 or math.prod(x.shape[1:axis]) != 1:
        raise b.error(node, f"Flatten with axis {node.attrs.get('axis', 1)} of "
                      f"{list(x.shape)} would merge the batch axis with others")
    return [b.reshape(node, x, (math.prod(x.shape[axis:]),))]


def convert_transpose(b, node, ins):
    x = b.tensor(node, ins[0])
    perm = list(node.attrs.get("perm", range(x.ndim - 1, -1, -1)))
    if sorted(perm) != list(range(x.ndim)):
        raise b.error(node, f"perm {perm} is not a permutation of the {x.ndim} axes")
    if perm[0] != 0:
        raise b.error(node, f"perm {perm} moves the batch axis; not supported")
    if perm == sorted(perm):
        return [x]
    return [b.layer(node, "transpose", {"perm": perm}, [x])]


def convert_squeeze(b, node, ins):
    x = b.tensor(node, ins[0])
    axes = node.attrs.get("axes") if b.opset < 13 else (
        None if len(ins) < 2 or ins[1] is None else [int(v) for v in ins[1].reshape(-1)])
    if axes is None:
        axes = [i for i in range(1, x.ndim) if x.shape[i] == 1]
    axes = [_not_batch(b, node, _axis(b, node, a, x.ndim)) for a in axes]
    if any(x.shape[a] != 1 for a in axes):
        raise b.error(node, f"cannot squeeze axes {axes} of shape {list(x.shape)}")
    return [b.reshape(node, x, [s for i, s in enumerate(x.shape) if i and i not in axes])]


def convert_unsqueeze(b, node, ins):
    x = b.tensor(node, ins[0])
    axes = node.attrs.get("axes") if b.opset < 13 else [int(v) for v in ins[1].reshape(-1)]
    rank = x.ndim + len(axes)
    axes = sorted(_not_batch(b, node, _axis(b, node, a, rank)) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return [b.reshape(node, x, shape[1:])]


def convert_pad(b, node, ins):
    x = b.tensor(node, ins[0])
    a = node.attrs
    mode = a.get("mode", "constant")
    if b.opset < 11:
        pads, value = list(a.get("pads", a.get("paddings", []))), float(a.get("value", 0.0))
        axes = list(range(x.ndim))
    else:
        pads = [int(p) for p in b.weight(node, ins[1], "pads (input 1)").reshape(-1)]
        value = _scalar(b, node, ins[2] if len(ins) > 2 else None, "constant_value") or 0.0
        axes = list(range(x.ndim))
        if len(ins) > 3 and ins[3] is not None:
            axes = [_axis(b, node, v, x.ndim) for v in np.asarray(ins[3]).reshape(-1)]
    if mode not in ("constant", "reflect", "edge"):
        raise b.error(node, f"mode {mode!r} is not supported (constant, reflect, edge)")
    if len(pads) != 2 * len(axes):
        raise b.error(node, f"pads {pads} must have 2 x {len(axes)} entries")
    full = [[0, 0] for _ in range(x.ndim)]
    for k, axis in enumerate(axes):
        full[axis] = [pads[k], pads[k + len(axes)]]
    if any(p < 0 for pair in full for p in pair):
        raise b.error(node, f"negative pads {pads} (cropping) are not supported")
    if full[0] != [0, 0]:
        raise b.error(node, f"pads {pads} pad the batch axis; not supported")
    if all(p == [0, 0] for p in full):
        return [x]
    return [b.layer(node, "pad", {"pads": full[1:], "mode": mode, "value": value}, [x])]


def convert_resize(b, node, ins):
    x = b.tensor(node, ins[0])
    a = node.attrs
    mode = a.get("mode", "nearest")
    if node.op == "Upsample":
        scales = a.get("scales") if b.opset < 9 else ins[1]
        sizes, coord, nearest = None, "asymmetric", "floor"
    elif b.opset < 11:
        scales, sizes, coord, nearest = ins[1], None, "asymmetric", "floor"
    else:
        scales = ins[2] if len(ins) > 2 else None
        sizes = ins[3] if len(ins) > 3 else None
        coord = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
        if a.get("antialias", 0) or a.get("keep_aspect_ratio_policy", "stretch") != "stretch" \
                or a.get("exclude_outside", 0):
            raise b.error(node, "antialias, exclude_outside and keep_aspect_ratio_policy are "
                          "not supported")
    for what, v in (("scales", scales), ("sizes", sizes)):
        if isinstance(v, Tensor):
            raise b.error(node, f"{what} must be constant")
    scales = None if scales is None or np.asarray(scales).size == 0 else \
        [float(s) for s in np.asarray(scales).reshape(-1)]
    sizes = None if sizes is None or np.asarray(sizes).size == 0 else \
        [int(s) for s in np.asarray(sizes).reshape(-1)]
    axes = a.get("axes")
    if axes is not None:  # opset 18: scales/sizes for these axes only
        full_s = [1.0] * x.ndim if scales is not None else None
        full_z = list(x.shape) if sizes is not None else None
        for k, ax in enumerate(_axis(b, node, v, x.ndim) for v in axes):
            if full_s is not None:
                full_s[ax] = scales[k]
            if full_z is not None:
                full_z[ax] = sizes[k]
        scales, sizes = full_s, full_z
    if scales is None and sizes is None:
        raise b.error(node, "needs scales or sizes")
    n = x.ndim
    if (scales is not None and (len(scales) != n or scales[:2] != [1.0, 1.0])) or (
            sizes is not None and (len(sizes) != n or sizes[:2] != list(x.shape[:2]))):
        raise b.error(node, f"only the spatial axes may be resized (scales {scales}, sizes "
                      f"{sizes}, input {list(x.shape)})")
    if n not in (3, 4):
        raise b.error(node, f"inputs of shape {list(x.shape)} are not supported (N, C, L) or "
                      "(N, C, H, W)")
    if mode == "nearest":
        integer = scales is not None and all(float(s).is_integer() for s in scales)
        ok = (coord == "asymmetric" and nearest == "floor") or (
            integer and coord in ("half_pixel", "pytorch_half_pixel")
            and nearest in ("round_prefer_floor", "round_prefer_ceil"))
        if not ok:
            raise b.error(node, f"nearest resize with coordinate_transformation_mode {coord!r} "
                          f"and nearest_mode {nearest!r} is not supported (asymmetric with "
                          "floor, or half_pixel with integer scales)")
        cfg = {"mode": "nearest"}
    elif mode == "linear":
        if coord == "align_corners":
            cfg = {"mode": "bilinear", "align_corners": True}
            if scales is not None:
                sizes, scales = [int(math.floor(s * f)) for s, f in zip(x.shape, scales)], None
        elif coord in ("half_pixel", "pytorch_half_pixel"):
            cfg = {"mode": "bilinear", "align_corners": False}
        else:
            raise b.error(node, f"linear resize with coordinate_transformation_mode {coord!r} "
                          "is not supported (half_pixel, pytorch_half_pixel, align_corners)")
    else:
        raise b.error(node, f"mode {mode!r} is not supported (nearest, linear)")
    if scales is not None:
        cfg["scale_factor"] = ([1.0] if n == 3 else []) + scales[2:]
    else:
        cfg["size"] = ([1] if n == 3 else []) + sizes[2:]
    x4, restore = _lift(b, node, x, node.op)
    return [restore(b.layer(node, "upsample", cfg, [x4]))]


def convert_identity(b, node, ins):
    return [ins[0]]


def convert_cast(b, node, ins):
    from cnnframe.onnx._tensors import np_dtype
    to = np_dtype(node.attrs["to"], f"node {node.name!r}", b.path)
    if to.kind != "f":
        raise b.error(node, f"casting a tensor to {to} is not supported (cnnframe computes "
                      "in floats)")
    return [ins[0]]


def convert_unsupported_erf(b, node, ins):
    raise b.error(node, "Erf of a tensor is supported only inside GELU's pattern "
                  "x * 0.5 * (1 + erf(x / sqrt(2)))")


CONVERTERS = {
    "Conv": convert_conv, "ConvTranspose": convert_conv_transpose,
    "BatchNormalization": convert_batch_norm, "LRN": convert_lrn,
    "InstanceNormalization": convert_instance_norm, "LayerNormalization": convert_layer_norm,
    "Relu": _activation("relu"), "Sigmoid": _activation("sigmoid"), "Tanh": _activation("tanh"),
    "LeakyRelu": _activation("leaky_relu",
                             lambda a: {"negative_slope": float(a.get("alpha", 0.01))}),
    "Elu": _activation("elu", lambda a: {"alpha": float(a.get("alpha", 1.0))}),
    "HardSwish": _activation("hardswish"), "HardSigmoid": convert_hard_sigmoid,
    "Gelu": convert_gelu, "PRelu": convert_prelu, "Softmax": convert_softmax,
    "Clip": convert_clip, "Erf": convert_unsupported_erf,
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global_pool("avg"), "GlobalMaxPool": _global_pool("max"),
    "Gemm": convert_gemm, "MatMul": convert_matmul,
    "Add": _elementwise("add"), "Sub": _elementwise("sub"), "Mul": _elementwise("mul"),
    "Div": _elementwise("div"),
    "Sum": convert_sum, "Concat": convert_concat,
    "Flatten": convert_flatten, "Reshape": convert_reshape, "Transpose": convert_transpose,
    "Squeeze": convert_squeeze, "Unsqueeze": convert_unsqueeze, "Pad": convert_pad,
    "Resize": convert_resize, "Upsample": convert_resize,
    "Dropout": convert_identity, "Identity": convert_identity, "Cast": convert_cast,
}
