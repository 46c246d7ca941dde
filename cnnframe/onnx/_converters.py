"""ONNX mappings of the built-in layers, in inference mode (see cnnframe.onnx.export).

Each converter is ``f(layer, ctx, inputs, name) -> output tensor name`` and names its
final tensor after the node.  CONVERTERS maps each built-in layer class (exactly: a
subclass needs its own ``to_onnx``) to its converter.  Ops that changed inside the
exported opsets are written per ``ctx.opset`` (see cnnframe.onnx._opsets).
"""
import math

import numpy as np

from cnnframe.functional import adaptive_pool as FP
from cnnframe.functional import upsample as FU
from cnnframe.layers import activations as act
from cnnframe.layers import activations_extra as act2
from cnnframe.layers import conv, conv_transpose, dropout, elementwise, linear, local_response_norm
from cnnframe.layers import matmul, merge, normalization, norms, pooling, pooling_general
from cnnframe.layers import resample, reshape, shape_ops

CONVERTERS = {}


def converts(*classes):
    def decorator(fn):
        for cls in classes:
            CONVERTERS[cls] = fn
        return fn
    return decorator


def _param(ctx, layer, name, key):
    return ctx.constant(layer.params[key], name=f"{name}.{key}")


def _buffer(ctx, layer, name, key):
    return ctx.constant(layer.buffers[key], name=f"{name}.{key}")


def _channel_shape(c, rank):
    """(C, 1, ..., 1): broadcasts a per-channel vector over the axes after axis 1."""
    return (c,) + (1,) * max(rank - 2, 0)


def _reduce(ctx, op, x, axes, keepdims=1):
    """ReduceMean/ReduceMax over `axes`: an attribute before opset 18, an input from it."""
    if ctx.opset >= 18:
        return ctx.node(op, [x, ctx.constant(np.array(axes, np.int64))], keepdims=keepdims)
    return ctx.node(op, [x], axes=list(axes), keepdims=keepdims)


# --- convolutions, linear ---------------------------------------------------------------------
@converts(conv.Conv2d)
def _conv2d(layer, ctx, inputs, name):
    ins = [inputs[0], _param(ctx, layer, name, "weight")]
    if layer.bias:
        ins.append(_param(ctx, layer, name, "bias"))
    (ph, pw) = layer._p
    return ctx.node("Conv", ins, outputs=name, kernel_shape=list(layer._k),
                    strides=list(layer._s), pads=[ph, pw, ph, pw], dilations=list(layer._d),
                    group=layer.groups)


@converts(conv_transpose.ConvTranspose2d)
def _conv_transpose2d(layer, ctx, inputs, name):
    ins = [inputs[0], _param(ctx, layer, name, "weight")]
    if layer.bias:
        ins.append(_param(ctx, layer, name, "bias"))
    (ph, pw) = layer._p
    return ctx.node("ConvTranspose", ins, outputs=name, kernel_shape=list(layer._k),
                    strides=list(layer._s), pads=[ph, pw, ph, pw], dilations=list(layer._d),
                    output_padding=list(layer._op), group=layer.groups)


@converts(linear.Linear)
def _linear(layer, ctx, inputs, name):
    ins = [inputs[0], _param(ctx, layer, name, "weight")]
    if layer.bias:
        ins.append(_param(ctx, layer, name, "bias"))
    return ctx.node("Gemm", ins, outputs=name, transB=1)


# --- activations -------------------------------------------------------------------------------
@converts(act.ReLU)
def _relu(layer, ctx, inputs, name):
    # A ReLU fused into the batch norm before it (layer.fused) still computes max(x, 0):
    # the batch norm is exported unfused.
    return ctx.node("Relu", inputs, outputs=name)


@converts(act.LeakyReLU)
def _leaky_relu(layer, ctx, inputs, name):
    return ctx.node("LeakyRelu", inputs, outputs=name, alpha=float(layer.negative_slope))


@converts(act.Sigmoid)
def _sigmoid(layer, ctx, inputs, name):
    return ctx.node("Sigmoid", inputs, outputs=name)


@converts(act.Tanh)
def _tanh(layer, ctx, inputs, name):
    return ctx.node("Tanh", inputs, outputs=name)


@converts(act.Softmax)
def _softmax(layer, ctx, inputs, name):
    return ctx.node("Softmax", inputs, outputs=name, axis=layer.axis)  # one axis from opset 13


@converts(act2.GELU)
def _gelu(layer, ctx, inputs, name):
    x = inputs[0]
    if ctx.opset >= 20:
        return ctx.node("Gelu", [x], outputs=name, approximate=layer.approximate)
    if layer.approximate == "none":   # 0.5 x (1 + erf(x / sqrt(2)))
        inner = ctx.node("Erf", [ctx.node("Mul", [x, ctx.constant(1 / math.sqrt(2.0))])])
    else:                             # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        cube = ctx.node("Mul", [ctx.node("Mul", [x, x]), x])
        poly = ctx.node("Add", [x, ctx.node("Mul", [cube, ctx.constant(0.044715)])])
        inner = ctx.node("Tanh", [ctx.node("Mul", [poly, ctx.constant(math.sqrt(2 / math.pi))])])
    half_x = ctx.node("Mul", [x, ctx.constant(0.5)])
    return ctx.node("Mul", [half_x, ctx.node("Add", [inner, ctx.constant(1.0)])], outputs=name)


@converts(act2.SiLU)
def _silu(layer, ctx, inputs, name):
    return ctx.node("Mul", [inputs[0], ctx.node("Sigmoid", inputs)], outputs=name)


@converts(act2.Hardswish)
def _hardswish(layer, ctx, inputs, name):
    if ctx.opset >= 14:
        return ctx.node("HardSwish", inputs, outputs=name)
    gate = ctx.node("HardSigmoid", inputs, alpha=1 / 6, beta=0.5)
    return ctx.node("Mul", [inputs[0], gate], outputs=name)


@converts(act2.ELU)
def _elu(layer, ctx, inputs, name):
    return ctx.node("Elu", inputs, outputs=name, alpha=float(layer.alpha))


@converts(act2.PReLU)
def _prelu(layer, ctx, inputs, name):
    w = layer.params["weight"]
    if layer.num_parameters > 1:  # one slope per channel (axis 1)
        w = w.reshape(_channel_shape(layer.num_parameters, len(ctx.shape(inputs[0]))))
    return ctx.node("PRelu", [inputs[0], ctx.constant(w, name=f"{name}.weight")], outputs=name)


# --- normalisation --------------------------------------------------------------------------
def _batch_norm_node(ctx, x, name, scale, bias, mean, var, eps):
    return ctx.node("BatchNormalization", [x, scale, bias, mean, var], outputs=name,
                    epsilon=float(eps))


@converts(normalization.BatchNorm1d, normalization.BatchNorm2d)
def _batch_norm(layer, ctx, inputs, name):
    # Inference: the running statistics.  A ReLU fused into it (layer.fused_relu) is its
    # own Relu node (see _relu).
    return _batch_norm_node(ctx, inputs[0], name, _param(ctx, layer, name, "weight"),
                            _param(ctx, layer, name, "bias"),
                            _buffer(ctx, layer, name, "running_mean"),
                            _buffer(ctx, layer, name, "running_var"), layer.eps)


def _affine_or(ctx, layer, name, key, fill, shape):
    """The layer's parameter `key`, or a constant array of `fill` where it has none."""
    if key in layer.params:
        return _param(ctx, layer, name, key)
    return ctx.constant(np.full(shape, fill), name=f"{name}/{key}")


@converts(norms.InstanceNorm2d)
def _instance_norm(layer, ctx, inputs, name):
    c = layer.num_features
    scale = _affine_or(ctx, layer, name, "weight", 1.0, c)
    bias = _affine_or(ctx, layer, name, "bias", 0.0, c)
    if layer.track_running_stats:  # eval mode normalises with the running statistics
        return _batch_norm_node(ctx, inputs[0], name, scale, bias,
                                _buffer(ctx, layer, name, "running_mean"),
                                _buffer(ctx, layer, name, "running_var"), layer.eps)
    return ctx.node("InstanceNormalization", [inputs[0], scale, bias], outputs=name,
                    epsilon=float(layer.eps))


def _per_channel_affine(ctx, layer, name, y, rank):
    """y * weight[c] + bias[c] over axis 1 (where the layer has them); names the result."""
    c = layer.num_channels
    if "weight" in layer.params:
        w = ctx.constant(layer.params["weight"].reshape(_channel_shape(c, rank)),
                         name=f"{name}.weight")
        y = ctx.node("Mul", [y, w], outputs=None if "bias" in layer.params else name)
    if "bias" in layer.params:
        b = ctx.constant(layer.params["bias"].reshape(_channel_shape(c, rank)),
                         name=f"{name}.bias")
        y = ctx.node("Add", [y, b], outputs=name)
    return y


@converts(norms.GroupNorm)
def _group_norm(layer, ctx, inputs, name):
    # Each (sample, group) normalised: reshape to (N, G, rest), instance-normalise without
    # affine, reshape back, then the per-channel affine.  (Opset 18's GroupNormalization had
    # per-group scales, changed in 21; this form means the same in every opset.)
    shape = ctx.shape(inputs[0])
    g = layer.num_groups
    grouped = ctx.node("Reshape", [inputs[0], ctx.constant(np.array([0, g, -1], np.int64))])
    normed = ctx.node("InstanceNormalization",
                      [grouped, ctx.constant(np.ones(g)), ctx.constant(np.zeros(g))],
                      epsilon=float(layer.eps))
    back_name = name if not layer.affine else None
    y = ctx.node("Reshape", [normed, ctx.constant(np.array([0, *shape[1:]], np.int64))],
                 outputs=back_name)
    return _per_channel_affine(ctx, layer, name, y, len(shape)) if layer.affine else y


@converts(norms.LayerNorm)
def _layer_norm(layer, ctx, inputs, name):
    k = len(layer._shape)
    x = inputs[0]
    if ctx.opset >= 17:
        ins = [x, _affine_or(ctx, layer, name, "weight", 1.0, layer._shape)]
        if "bias" in layer.params:
            ins.append(_param(ctx, layer, name, "bias"))
        return ctx.node("LayerNormalization", ins, outputs=name, axis=-k,
                        epsilon=float(layer.eps))
    axes = list(range(-k, 0))
    centred = ctx.node("Sub", [x, _reduce(ctx, "ReduceMean", x, axes)])
    var = _reduce(ctx, "ReduceMean", ctx.node("Mul", [centred, centred]), axes)
    std = ctx.node("Sqrt", [ctx.node("Add", [var, ctx.constant(layer.eps)])])
    has_w, has_b = "weight" in layer.params, "bias" in layer.params
    y = ctx.node("Div", [centred, std], outputs=None if has_w or has_b else name)
    if has_w:
        y = ctx.node("Mul", [y, _param(ctx, layer, name, "weight")],
                     outputs=None if has_b else name)
    if has_b:
        y = ctx.node("Add", [y, _param(ctx, layer, name, "bias")], outputs=name)
    return y


# --- pooling and resampling --------------------------------------------------------------------
@converts(pooling.MaxPool2d)
def _max_pool(layer, ctx, inputs, name):
    (ph, pw) = layer._p
    return ctx.node("MaxPool", inputs, outputs=name, kernel_shape=list(layer._k),
                    strides=list(layer._s), pads=[ph, pw, ph, pw])


@converts(pooling.AvgPool2d)
def _avg_pool(layer, ctx, inputs, name):
    (ph, pw) = layer._p
    return ctx.node("AveragePool", inputs, outputs=name, kernel_shape=list(layer._k),
                    strides=list(layer._s), pads=[ph, pw, ph, pw], count_include_pad=1)


@converts(pooling.GlobalAvgPool2d)
def _global_avg_pool(layer, ctx, inputs, name):
    return ctx.node("Flatten", [ctx.node("GlobalAveragePool", inputs)], outputs=name, axis=1)


def _adaptive_pool(layer, ctx, inputs, name, pool_op, reduce_op):
    _, c, h, w = ctx.shape(inputs[0])
    oh, ow = FP.output_hw(layer.output_size, (h, w), layer.type_name)
    if h % oh == 0 and w % ow == 0:  # equal windows side by side: an ordinary pooling
        kh, kw = h // oh, w // ow
        return ctx.node(pool_op, inputs, outputs=name, kernel_shape=[kh, kw],
                        strides=[kh, kw])
    # Windows of unequal sizes: pool each axis separately (a window is a rectangle, so
    # the mean (or max) over it is the mean (max) over rows of the mean (max) over
    # columns): slice each output's rows, reduce them, concatenate.
    y = inputs[0]
    uneven = [(axis, n, o) for axis, n, o in ((2, h, oh), (3, w, ow)) if n != o]
    for k, (axis, n, o) in enumerate(uneven):
        parts = []
        for start, end in zip(*FP.windows(n, o)):
            part = ctx.node("Slice", [y, ctx.constant(np.array([start], np.int64)),
                                      ctx.constant(np.array([end], np.int64)),
                                      ctx.constant(np.array([axis], np.int64))])
            parts.append(_reduce(ctx, reduce_op, part, [axis]))
        y = ctx.node("Concat", parts, axis=axis, outputs=name if k == len(uneven) - 1 else None)
    return y


@converts(resample.AdaptiveAvgPool2d)
def _adaptive_avg_pool(layer, ctx, inputs, name):
    return _adaptive_pool(layer, ctx, inputs, name, "AveragePool", "ReduceMean")


@converts(resample.AdaptiveMaxPool2d)
def _adaptive_max_pool(layer, ctx, inputs, name):
    return _adaptive_pool(layer, ctx, inputs, name, "MaxPool", "ReduceMax")


@converts(resample.Upsample)
def _upsample(layer, ctx, inputs, name):
    _, c, h, w = ctx.shape(inputs[0])
    out_hw, scales, align_corners = FU.resize_plan((h, w), **layer._args, fn="upsample")
    nearest = layer.mode == "nearest"
    attrs = {"mode": "nearest" if nearest else "linear"}
    if nearest:  # PyTorch's legacy nearest: source pixel floor(o / scale)
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        attrs["coordinate_transformation_mode"] = ("align_corners" if align_corners
                                                   else "half_pixel")
    if scales is None or align_corners:  # the coordinates follow from the output size
        if ctx.opset >= 18:  # sizes of the resized axes only
            sizes = ctx.constant(np.array(out_hw, np.int64))
            return ctx.node("Resize", [inputs[0], "", "", sizes], outputs=name, axes=[2, 3],
                            **attrs)
        shape = ctx.node("Shape", [inputs[0]])
        # (N, C, OH, OW) with the batch size of the input
        batch = ctx.node("Slice", [shape, ctx.constant(np.array([0], np.int64)),
                                   ctx.constant(np.array([1], np.int64))])
        rest = ctx.constant(np.array([c, *out_hw], np.int64))
        sizes = ctx.node("Concat", [batch, rest], axis=0)
        return ctx.node("Resize", [inputs[0], "", "", sizes], outputs=name, **attrs)
    # scale_factor: the coordinates use 1 / scale, as PyTorch does, except where PyTorch
    # copies rows (output size = input size) or, for nearest, doubles them exactly.
    eff = []
    for n, o, s in zip((h, w), out_hw, scales):
        if o == n or (nearest and o == 2 * n):
            s = o / n
        if math.floor(np.float32(s) * np.float32(n)) != o:
            raise NotImplementedError(
                f"scale_factor {layer.scale_factor!r} makes {o} rows from {n} in PyTorch's "
                f"arithmetic but {math.floor(np.float32(s) * np.float32(n))} in ONNX Resize's "
                "float32 arithmetic; use size= (or recompute_scale_factor=true) instead")
        eff.append(s)
    scales_t = ctx.constant(np.array([1.0, 1.0, *eff]), dtype=np.float32)  # float in any model
    return ctx.node("Resize", [inputs[0], "", scales_t], outputs=name, **attrs)


# --- shapes, merges, pass-through -----------------------------------------------------------
@converts(reshape.Flatten)
def _flatten(layer, ctx, inputs, name):
    return ctx.node("Flatten", inputs, outputs=name, axis=1)


@converts(reshape.Identity, dropout.Dropout, dropout.Dropout2d)
def _identity(layer, ctx, inputs, name):
    return ctx.node("Identity", inputs, outputs=name)  # dropout is the identity in inference


@converts(merge.Add)
def _add(layer, ctx, inputs, name):
    return ctx.node("Add" if len(inputs) == 2 else "Sum", inputs, outputs=name)


@converts(merge.Concat)
def _concat(layer, ctx, inputs, name):
    return ctx.node("Concat", inputs, outputs=name, axis=layer.axis)


# --- layers of the ONNX import: element-wise, clip, shapes, pool2d, lrn, matmul ----------------
_ARITHMETIC_OPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div"}


@converts(elementwise.Elementwise)
def _elementwise(layer, ctx, inputs, name):
    return ctx.node(_ARITHMETIC_OPS[layer.op], inputs, outputs=name)  # ONNX broadcasts alike


@converts(elementwise.ElementwiseConst)
def _elementwise_const(layer, ctx, inputs, name):
    # The constant keeps its own shape ([] is a scalar): ONNX aligns it at the last axis,
    # as numpy does.  rsub and rdiv put it first.
    value = ctx.constant(layer.value.reshape(layer.shape), name=f"{name}.value")
    op = layer.op[1:] if layer.op in ("rsub", "rdiv") else layer.op
    ins = [value, inputs[0]] if op != layer.op else [inputs[0], value]
    return ctx.node(_ARITHMETIC_OPS[op], ins, outputs=name)


@converts(elementwise.Clip)
def _clip(layer, ctx, inputs, name):
    # Bounds are optional inputs (scalars of the input's type) in every exported opset.
    ins = [inputs[0]] + ["" if v is None else ctx.constant(np.array(v), name=f"{name}/{what}")
                         for v, what in ((layer.min, "min"), (layer.max, "max"))]
    while ins[-1] == "":
        ins.pop()
    return ctx.node("Clip", ins, outputs=name)


@converts(shape_ops.Reshape)
def _reshape(layer, ctx, inputs, name):
    target = ctx.constant(np.array([0, *layer.shape], np.int64))  # 0: keep the batch size
    return ctx.node("Reshape", [inputs[0], target], outputs=name)


@converts(shape_ops.Transpose)
def _transpose(layer, ctx, inputs, name):
    return ctx.node("Transpose", inputs, outputs=name, perm=list(layer.perm))


@converts(shape_ops.Pad)
def _pad(layer, ctx, inputs, name):
    befores, afters = [p[0] for p in layer.pads], [p[1] for p in layer.pads]
    value = ctx.constant(np.array(layer.value)) if layer.mode == "constant" else ""
    if ctx.opset >= 18:  # pads of the sample axes only, named by `axes`
        axes = list(range(1, len(layer.pads) + 1))
        ins = [inputs[0], ctx.constant(np.array(befores + afters, np.int64)), value,
               ctx.constant(np.array(axes, np.int64))]
    else:                # pads of every axis, the batch axis's zero
        ins = [inputs[0], ctx.constant(np.array([0, *befores, 0, *afters], np.int64))]
        ins += [value] if value else []
    return ctx.node("Pad", ins, outputs=name, mode=layer.mode)


@converts(pooling_general.Pool2d)
def _pool2d(layer, ctx, inputs, name):
    # ceil_mode is written as extra padding at the end (the rows its last windows need):
    # ONNX's shape inference rounds up without PyTorch's rule that a window must start
    # inside the input or the leading pads, which the layer (and onnxruntime) follow.
    _, c, h, w = ctx.shape(inputs[0])
    oh, ow = layer._out_hw(h, w)
    t, l, b, r = layer.pads
    ph, pw = layer._padded_hw(h, w, oh, ow)
    ends = [ph - h - t, pw - w - l]                 # b, r plus ceil_mode's extra rows
    pads = [t, l, *ends]
    # onnxruntime takes pads smaller than the kernel only.
    pads_fit = all(p < k for p, k in zip(pads, 2 * list(layer._k)))
    attrs = {"kernel_shape": list(layer._k), "strides": list(layer._s)}
    if layer._d != (1, 1):
        attrs["dilations"] = list(layer._d)
    if layer.mode == "max":
        x = inputs[0]
        if not pads_fit:  # pad explicitly with a value that never wins a max
            extents = [d * (k - 1) + 1 for d, k in zip(layer._d, layer._k)]
            # The lowest finite float unless a window can lie in the pads alone (the layer
            # gives -inf there); a finite pad also imports back (the pad layer's value).
            alone = any(p >= e for p, e in zip(pads, 2 * extents))
            fill = -np.inf if alone else np.finfo(ctx.dtype).min
            x = ctx.node("Pad", [x, ctx.constant(np.array([0, 0, t, l, 0, 0, *ends], np.int64)),
                                 ctx.constant(np.array(fill))], mode="constant")
            pads = [0, 0, 0, 0]
        return ctx.node("MaxPool", [x], outputs=name, pads=pads, **attrs)
    dilation_ok = layer._d == (1, 1) or ctx.opset >= 19  # AveragePool's dilations: opset 19
    extra = ends != [b, r]
    if dilation_ok and pads_fit and not (extra and layer.count_include_pad):
        return ctx.node("AveragePool", inputs, outputs=name, pads=pads,
                        count_include_pad=int(layer.count_include_pad), **attrs)
    # Otherwise: the window sums as a depthwise convolution with ones, divided by the count
    # of taps inside the input (or the input and its pads), as the layer does.
    weight = ctx.constant(np.ones((c, 1, *layer._k)), name=f"{name}/ones")
    sums = ctx.node("Conv", [inputs[0], weight], kernel_shape=list(layer._k),
                    strides=list(layer._s), dilations=list(layer._d), pads=pads, group=c)
    count = ctx.constant(_pool2d_divisor(layer, h, w, oh, ow), name=f"{name}/count")
    return ctx.node("Div", [sums, count], outputs=name)


def _pool2d_divisor(layer, h, w, oh, ow):
    """(1, 1, OH, OW): how many taps of each window an average pool2d divides by."""
    ph, pw = layer._padded_hw(h, w, oh, ow)
    t, l, b, r = layer.pads
    inside = np.zeros((1, 1, ph, pw))
    if layer.count_include_pad:
        inside[:, :, :h + t + b, :w + l + r] = 1
    else:
        inside[:, :, t:t + h, l:l + w] = 1
    count = sum(inside[sl] for _, sl in layer._taps(oh, ow))
    return np.maximum(count, 1)


@converts(local_response_norm.LRN)
def _lrn(layer, ctx, inputs, name):
    shape = ctx.shape(inputs[0])
    if layer.size % 2 == 0:  # onnxruntime's LRN takes odd sizes only
        return _lrn_formula(layer, ctx, inputs[0], name, shape)
    attrs = {"size": layer.size, "alpha": float(layer.alpha), "beta": float(layer.beta),
             "bias": float(layer.k)}
    if len(shape) == 4:
        return ctx.node("LRN", inputs, outputs=name, **attrs)
    # onnxruntime's LRN takes (N, C, H, W) only; the window runs over the channels alone,
    # so other ranks go through (N, C, rest, 1).
    c, rest = shape[1], math.prod(shape[2:])
    x4 = ctx.node("Reshape", [inputs[0], ctx.constant(np.array([0, c, rest, 1], np.int64))])
    y4 = ctx.node("LRN", [x4], **attrs)
    return ctx.node("Reshape", [y4, ctx.constant(np.array([0, *shape[1:]], np.int64))],
                    outputs=name)


def _lrn_formula(layer, ctx, x, name, shape):
    """x * (k + alpha / size * window sum of x^2) ^ -beta, the window sum a convolution
    with ones over the channels of x^2 seen as (N, 1, C, rest)."""
    c, rest = shape[1], math.prod(shape[2:])
    sq = ctx.node("Reshape", [ctx.node("Mul", [x, x]),
                              ctx.constant(np.array([0, 1, c, rest], np.int64))])
    window = ctx.node("Conv", [sq, ctx.constant(np.ones((1, 1, layer.size, 1)))],
                      kernel_shape=[layer.size, 1], pads=[layer._before, 0, layer._after, 0])
    window = ctx.node("Reshape", [window, ctx.constant(np.array([0, *shape[1:]], np.int64))])
    scale = ctx.node("Add", [ctx.node("Mul", [window, ctx.constant(layer.alpha / layer.size)]),
                             ctx.constant(layer.k)])
    return ctx.node("Mul", [x, ctx.node("Pow", [scale, ctx.constant(-layer.beta)])],
                    outputs=name)


@converts(matmul.MatMulConst)
def _matmul_const(layer, ctx, inputs, name):
    weight = _param(ctx, layer, name, "weight")  # (in_features, out_features): MatMul's B
    if not layer.bias:
        return ctx.node("MatMul", [inputs[0], weight], outputs=name)
    y = ctx.node("MatMul", [inputs[0], weight])
    return ctx.node("Add", [y, _param(ctx, layer, name, "bias")], outputs=name)
