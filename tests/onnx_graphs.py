"""Small ONNX graphs for the import and round-trip tests, and running them with onnxruntime.

- :data:`OP_CASES`: each supported op and attribute variant at the opsets where its
  signature differs (pytest params ``opset, nodes, initializers, inputs, positive``);
- :func:`small_cnn`: Conv -> BatchNormalization -> Relu -> MaxPool -> Flatten -> Gemm ->
  Softmax;
- :func:`randomize`: random weights for a cnnframe model.

Import this after ``pytest.importorskip("onnx")``.
"""
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

F32 = TensorProto.FLOAT


def make_model(nodes, inputs, outputs, initializers=None, opset=13):
    """An onnx ModelProto.

    inputs: {name: shape (a list; strings for dynamic axes)}; outputs: list of names;
    initializers: {name: array}.
    """
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(k, F32, list(v)) for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, F32, None) for k in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k)
                     for k, v in (initializers or {}).items()])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def single(op, attrs=None, inputs=("x",), n_outputs=1, **kw):
    """One node named `op` reading `inputs`, writing y (and y1, y2, ...)."""
    outs = ["y"] + [f"y{k}" for k in range(1, n_outputs)]
    return helper.make_node(op, list(inputs), outs, name=f"the_{op.lower()}", **(attrs or {}))


def run_onnxruntime(model, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def save(model, path):
    onnx.save_model(model, str(path))
    return str(path)


def randomize(model, rng):
    """Random parameters and buffers of a cnnframe model (variances positive): ones and
    zeros hide mistakes."""
    for key, arr in {**model.params, **model.buffers}.items():
        if key.endswith("running_var"):
            arr[...] = rng.uniform(0.5, 2.0, arr.shape)
        else:
            arr[...] = rng.standard_normal(arr.shape)
    return model


def assert_close(got, want, rtol=1e-5):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-30)
    err = float(np.max(np.abs(got - want), initial=0.0))
    assert err <= rtol * scale, f"max abs error {err:.3g} > {rtol} x {scale:.3g}"


# --- one op at a time ---------------------------------------------------------------------
R = np.random.default_rng(0)
X4 = [2, 4, 7, 6]


def w(*shape, low=None):
    """A seeded float32 weight (uniform in [low, 1] when low is given)."""
    if low is not None:
        return R.uniform(low, 1.0, shape).astype(np.float32)
    return (R.standard_normal(shape) * 0.5).astype(np.float32)


def i64(*values):
    return np.array(values, np.int64)


def case(name, opset, nodes, inits=None, shape=X4, inputs=None, positive=False):
    nodes = nodes if isinstance(nodes, list) else [nodes]
    return pytest.param(opset, nodes, inits or {}, inputs or {"x": shape}, positive,
                        id=f"{name}-op{opset}")


def conv(attrs, weight, bias=True):
    inits = {"W": weight}
    ins = ["x", "W"]
    if bias:
        inits["B"] = w(weight.shape[0])
        ins.append("B")
    return single("Conv", attrs, ins), inits


def conv_t(attrs, weight, bias=True):
    inits = {"W": weight}
    ins = ["x", "W"]
    if bias:
        inits["B"] = w(weight.shape[1] * attrs.get("group", 1))
        ins.append("B")
    return single("ConvTranspose", attrs, ins), inits


def bn(opset, c=4, **attrs):
    inits = {"s": w(c), "b": w(c), "m": w(c), "v": w(c, low=0.5)}
    return single("BatchNormalization", attrs, ["x", "s", "b", "m", "v"]), inits


def pad_inputs(pads, value=None):
    inits = {"p": i64(*pads)}
    ins = ["x", "p"]
    if value is not None:
        inits["cv"] = np.array(value, np.float32)
        ins.append("cv")
    return ins, inits


def shape_chain_flatten(opset=13):
    """x.view(x.size(0), -1) as PyTorch exports it with a dynamic batch."""
    unsqueeze = (helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq") if opset >= 13
                 else helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0]))
    return [helper.make_node("Shape", ["x"], ["s"], name="shape"),
            helper.make_node("Constant", [], ["zero"], name="c0",
                             value=helper.make_tensor("z", onnx.TensorProto.INT64, [], [0])),
            helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
            unsqueeze,
            helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
            helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape")]


def pixel_shuffle(r=2):
    c, h, w_ = 8, 3, 5
    return [helper.make_node("Reshape", ["x", "t1"], ["a"], name="r1"),
            helper.make_node("Transpose", ["a"], ["b"], name="tr", perm=[0, 1, 4, 2, 5, 3]),
            helper.make_node("Reshape", ["b", "t2"], ["y"], name="r2")], {
        "t1": i64(-1, c // r // r, r, r, h, w_), "t2": i64(-1, c // r // r, h * r, w_ * r)}


def gelu_chain(variant):
    sqrt2 = {"s2": np.array(math.sqrt(2), np.float32), "one": np.array(1, np.float32),
             "half": np.array(0.5, np.float32)}
    head = [helper.make_node("Div", ["x", "s2"], ["d"], name="div"),
            helper.make_node("Erf", ["d"], ["e"], name="erf"),
            helper.make_node("Add", ["e", "one"], ["a"], name="add")]
    if variant == 0:    # (x * (1 + erf)) * 0.5 -- PyTorch's
        tail = [helper.make_node("Mul", ["x", "a"], ["m"], name="mul1"),
                helper.make_node("Mul", ["m", "half"], ["y"], name="mul2")]
    elif variant == 1:  # ((1 + erf) * 0.5) * x
        tail = [helper.make_node("Mul", ["a", "half"], ["m"], name="mul1"),
                helper.make_node("Mul", ["m", "x"], ["y"], name="mul2")]
    else:               # (x * 0.5) * (1 + erf)
        tail = [helper.make_node("Mul", ["x", "half"], ["h"], name="half_x"),
                helper.make_node("Mul", ["h", "a"], ["y"], name="mul1")]
    return head + tail, sqrt2


OP_CASES = [
    # --- Conv --------------------------------------------------------------------------------
    case("conv-pads", 11, *conv({"pads": [1, 1, 1, 1]}, w(6, 4, 3, 3))),
    case("conv-strides-dilations", 7, *conv({"strides": [2, 1], "dilations": [2, 1],
                                             "pads": [2, 1, 2, 1]}, w(5, 4, 3, 3))),
    case("conv-groups", 13, *conv({"group": 2, "kernel_shape": [3, 3]}, w(6, 2, 3, 3))),
    case("conv-depthwise-nobias", 21, *conv({"group": 4, "pads": [1, 1, 1, 1]},
                                             w(4, 1, 3, 3), bias=False)),
    case("conv-asymmetric-pads", 11, *conv({"pads": [0, 1, 1, 0]}, w(3, 4, 2, 2))),
    case("conv-same-upper", 11, *conv({"auto_pad": "SAME_UPPER", "strides": [2, 2]},
                                       w(3, 4, 3, 3))),
    case("conv-same-lower", 11, *conv({"auto_pad": "SAME_LOWER"}, w(3, 4, 2, 2))),
    case("conv-valid", 7, *conv({"auto_pad": "VALID"}, w(3, 4, 3, 3))),
    case("conv1d", 13, *conv({"pads": [1, 2], "strides": [2]}, w(5, 4, 3)), shape=[2, 4, 11]),
    # --- ConvTranspose -----------------------------------------------------------------------
    case("convT-stride-outpad", 11, *conv_t({"strides": [2, 2], "pads": [1, 1, 1, 1],
                                             "output_padding": [1, 1]}, w(4, 3, 3, 3))),
    case("convT-groups-dilations", 13, *conv_t({"group": 2, "dilations": [2, 2]},
                                                w(4, 2, 3, 3))),
    case("convT-output-shape", 11, *conv_t({"strides": [2, 2], "output_shape": [14, 12]},
                                            w(4, 3, 3, 3), bias=False)),
    case("convT-1d", 9, *conv_t({"strides": [3]}, w(4, 2, 3)), shape=[2, 4, 5]),
    # --- BatchNormalization ------------------------------------------------------------------
    case("bn-spatial", 7, *bn(7, spatial=1, epsilon=1e-3, momentum=0.8)),
    case("bn", 9, *bn(9, epsilon=1e-5)),
    case("bn-training-mode-0", 15, *bn(15, training_mode=0)),
    case("bn-2d-input", 13, *bn(13, c=5), shape=[3, 5]),
    case("bn-3d-input", 13, *bn(13), shape=[2, 4, 9]),
    case("instance-norm", 6, single("InstanceNormalization", {"epsilon": 1e-3},
                                    ["x", "s", "b"]), {"s": w(4), "b": w(4)}),
    case("instance-norm-1d", 13, single("InstanceNormalization", None, ["x", "s", "b"]),
         {"s": w(4), "b": w(4)}, shape=[2, 4, 9]),
    case("layer-norm-last", 17, single("LayerNormalization", {"epsilon": 1e-3},
                                       ["x", "s", "b"]), {"s": w(6), "b": w(6)}),
    case("layer-norm-chw-no-bias", 17, single("LayerNormalization", {"axis": 1}, ["x", "s"]),
         {"s": w(4, 7, 6)}),
    case("layer-norm-2d", 21, single("LayerNormalization", {"axis": -1}, ["x", "s", "b"]),
         {"s": w(5), "b": w(5)}, shape=[3, 5]),
    # --- activations -------------------------------------------------------------------------
    case("relu", 6, single("Relu")),
    case("relu", 14, single("Relu")),
    case("leaky-relu", 7, single("LeakyRelu", {"alpha": 0.2})),
    case("leaky-relu-default", 16, single("LeakyRelu")),
    case("elu", 6, single("Elu", {"alpha": 0.5})),
    case("prelu-per-channel", 9, single("PRelu", None, ["x", "slope"]), {"slope": w(4, 1, 1)}),
    case("prelu-shared", 16, single("PRelu", None, ["x", "slope"]), {"slope": w(1)}),
    case("prelu-2d", 9, single("PRelu", None, ["x", "slope"]), {"slope": w(5)}, shape=[3, 5]),
    case("sigmoid", 13, single("Sigmoid")),
    case("tanh", 6, single("Tanh")),
    case("hardswish", 14, single("HardSwish")),
    case("hardsigmoid", 6, single("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5})),
    case("gelu-op", 20, single("Gelu")),
    case("gelu-op-tanh", 20, single("Gelu", {"approximate": "tanh"})),
    case("gelu-erf-torch", 13, *gelu_chain(0)),
    case("gelu-erf-half-first", 11, *gelu_chain(1)),
    case("gelu-erf-half-x", 17, *gelu_chain(2)),
    case("softmax-flattening-axis1", 11, single("Softmax", {"axis": 1})),
    case("softmax-flattening-axis2", 9, single("Softmax", {"axis": 2})),
    case("softmax-default-last", 11, single("Softmax"), shape=[3, 7]),
    case("softmax-axis1", 13, single("Softmax", {"axis": 1})),
    case("softmax-default", 13, single("Softmax"), shape=[2, 3, 5]),
    case("clip-relu6-inputs", 11, single("Clip", None, ["x", "lo", "hi"]),
         {"lo": np.array(0, np.float32), "hi": np.array(0.6, np.float32)}),
    case("clip-max-only", 13, single("Clip", None, ["x", "", "hi"]),
         {"hi": np.array(0.3, np.float32)}),
    case("clip-min-only", 12, single("Clip", None, ["x", "lo"]), {"lo": np.array(0, np.float32)}),
    case("clip-attrs", 7, single("Clip", {"min": -0.2, "max": 0.6})),
    # --- pooling -----------------------------------------------------------------------------
    case("maxpool", 7, single("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                          "pads": [1, 1, 1, 1]})),
    case("maxpool-ceil", 11, single("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                                "ceil_mode": 1})),
    case("maxpool-dilations", 12, single("MaxPool", {"kernel_shape": [2, 2],
                                                     "dilations": [2, 2]})),
    case("maxpool-asym-pads", 11, single("MaxPool", {"kernel_shape": [2, 3],
                                                     "pads": [1, 0, 0, 1]})),
    case("maxpool-same-upper", 11, single("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                                      "auto_pad": "SAME_UPPER"})),
    case("maxpool-1d", 11, single("MaxPool", {"kernel_shape": [3], "strides": [2]}),
         shape=[2, 3, 10]),
    case("avgpool-include-pad", 7, single("AveragePool", {"kernel_shape": [3, 3],
                                                          "pads": [1, 1, 1, 1],
                                                          "count_include_pad": 1})),
    case("avgpool-exclude-pad", 11, single("AveragePool", {"kernel_shape": [3, 3],
                                                           "strides": [2, 2],
                                                           "pads": [1, 1, 1, 1]})),
    case("avgpool-ceil", 11, single("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2],
                                                    "ceil_mode": 1})),
    case("avgpool-plain", 19, single("AveragePool", {"kernel_shape": [2, 3],
                                                     "strides": [1, 2]})),
    case("global-avg", 7, single("GlobalAveragePool")),
    case("global-max", 13, single("GlobalMaxPool")),
    case("global-avg-1d", 13, single("GlobalAveragePool"), shape=[2, 3, 9]),
    # --- linear algebra ----------------------------------------------------------------------
    case("gemm-transB", 7, single("Gemm", {"transB": 1}, ["x", "B", "C"]),
         {"B": w(6, 5), "C": w(6)}, shape=[3, 5]),
    case("gemm-alpha-beta", 11, single("Gemm", {"alpha": 0.5, "beta": 2.0}, ["x", "B", "C"]),
         {"B": w(5, 4), "C": w(1, 4)}, shape=[3, 5]),
    case("gemm-no-C", 13, single("Gemm", {"transB": 1}, ["x", "B"]), {"B": w(4, 5)},
         shape=[3, 5]),
    case("matmul-2d", 13, single("MatMul", None, ["x", "B"]), {"B": w(5, 3)}, shape=[3, 5]),
    case("matmul-3d", 9, single("MatMul", None, ["x", "B"]), {"B": w(6, 3)}, shape=[2, 4, 6]),
    # --- element-wise ------------------------------------------------------------------------
    case("add-const-per-channel", 7, single("Add", None, ["x", "c"]), {"c": w(4, 1, 1)}),
    case("sub-const-first", 13, single("Sub", None, ["c", "x"]), {"c": w(1, 4, 1, 1)}),
    case("mul-scalar", 14, single("Mul", None, ["x", "c"]), {"c": np.array(0.3, np.float32)}),
    case("div-const", 7, single("Div", None, ["x", "c"]), {"c": w(6, low=0.5)}),
    case("div-by-tensor", 13, single("Div", None, ["c", "x"]), {"c": w(1)}, positive=True),
    case("mul-tensors-broadcast", 13, single("Mul", None, ["x", "g"]),
         inputs={"x": X4, "g": [2, 4, 1, 1]}),
    case("add-tensors", 7, single("Add", None, ["x", "x2"]), inputs={"x": X4, "x2": X4}),
    case("sub-tensors", 14, single("Sub", None, ["x", "x2"]),
         inputs={"x": X4, "x2": [2, 1, 7, 6]}),
    case("sum", 8, single("Sum", None, ["x", "x2", "x3"]),
         inputs={"x": X4, "x2": X4, "x3": X4}),
    case("concat", 11, single("Concat", {"axis": 1}, ["x", "x2"]),
         inputs={"x": X4, "x2": [2, 3, 7, 6]}),
    case("concat-last", 13, single("Concat", {"axis": -1}, ["x", "x2"]),
         inputs={"x": [2, 3, 4], "x2": [2, 3, 2]}),
    # --- shapes ------------------------------------------------------------------------------
    case("flatten", 9, single("Flatten", {"axis": 1})),
    case("flatten-default", 13, single("Flatten")),
    case("reshape-shape-chain", 13, shape_chain_flatten(13),
         {"ax": i64(0), "minus1": i64(-1)}, shape=["N", 4, 7, 6]),
    case("reshape-shape-chain", 9, shape_chain_flatten(9),
         {"minus1": i64(-1)}, shape=["N", 4, 7, 6]),
    case("pixel-shuffle", 11, *pixel_shuffle(), shape=[2, 8, 3, 5]),
    case("transpose", 13, single("Transpose", {"perm": [0, 2, 3, 1]})),
    case("squeeze-unsqueeze", 11, [single("Unsqueeze", {"axes": [2]}),
                                   helper.make_node("Squeeze", ["y"], ["z"], axes=[2]),
                                   helper.make_node("Relu", ["z"], ["y_out"])],
         shape=[2, 3, 5]),
    case("unsqueeze-input", 13, [helper.make_node("Unsqueeze", ["x", "ax"], ["y"])],
         {"ax": i64(-1)}, shape=[2, 3, 5]),
    case("pad-attr-constant", 7, single("Pad", {"pads": [0, 0, 1, 2, 0, 0, 2, 1],
                                                "value": 0.5})),
    case("pad-attr-reflect", 9, single("Pad", {"pads": [0, 0, 1, 2, 0, 0, 2, 1],
                                               "mode": "reflect"})),
    case("pad-attr-edge", 7, single("Pad", {"pads": [0, 0, 1, 0, 0, 0, 0, 3], "mode": "edge"})),
    case("pad-input-constant", 11, single("Pad", None, pad_inputs([0, 0, 1, 1, 0, 0, 1, 1],
                                                                  -1.0)[0]),
         pad_inputs([0, 0, 1, 1, 0, 0, 1, 1], -1.0)[1]),
    case("pad-input-reflect", 13, single("Pad", {"mode": "reflect"},
                                         pad_inputs([0, 0, 2, 1, 0, 0, 0, 2])[0]),
         pad_inputs([0, 0, 2, 1, 0, 0, 0, 2])[1]),
    case("pad-axes", 18, single("Pad", {"mode": "edge"}, ["x", "p", "", "axes"]),
         {"p": i64(1, 2, 3, 0), "axes": i64(2, 3)}),
    case("upsample-attr", 7, single("Upsample", {"scales": [1.0, 1.0, 2.0, 3.0]})),
    case("upsample-input", 9, single("Upsample", None, ["x", "sc"]),
         {"sc": np.array([1, 1, 2, 2], np.float32)}),
    case("resize-10-nearest", 10, single("Resize", None, ["x", "sc"]),
         {"sc": np.array([1, 1, 2, 2], np.float32)}),
    case("resize-nearest-torch", 11, single("Resize", {
        "mode": "nearest", "coordinate_transformation_mode": "asymmetric",
        "nearest_mode": "floor"}, ["x", "roi", "sc"]),
        {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 2], np.float32)}),
    case("resize-nearest-sizes", 13, single("Resize", {
        "mode": "nearest", "coordinate_transformation_mode": "asymmetric",
        "nearest_mode": "floor"}, ["x", "", "", "sz"]), {"sz": i64(2, 4, 14, 9)}),
    case("resize-nearest-half-pixel", 13, single("Resize", {"mode": "nearest"},
                                                 ["x", "", "sc"]),
         {"sc": np.array([1, 1, 3, 2], np.float32)}),
    case("resize-linear-half-pixel", 13, single("Resize", {"mode": "linear"}, ["x", "", "sc"]),
         {"sc": np.array([1, 1, 2, 2], np.float32)}),
    case("resize-linear-torch", 11, single("Resize", {
        "mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
        ["x", "roi", "sc"]),
        {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 1.5, 2], np.float32)}),
    case("resize-linear-align-corners", 19, single("Resize", {
        "mode": "linear", "coordinate_transformation_mode": "align_corners"},
        ["x", "", "", "sz"]), {"sz": i64(2, 4, 11, 13)}),
    case("resize-axes", 18, single("Resize", {
        "mode": "nearest", "coordinate_transformation_mode": "asymmetric",
        "nearest_mode": "floor", "axes": [2, 3]}, ["x", "", "sc"]),
        {"sc": np.array([2, 2], np.float32)}),
    case("resize-1d", 13, single("Resize", {
        "mode": "nearest", "coordinate_transformation_mode": "asymmetric",
        "nearest_mode": "floor"}, ["x", "", "sc"]),
        {"sc": np.array([1, 1, 2], np.float32)}, shape=[2, 3, 5]),
    # --- misc --------------------------------------------------------------------------------
    case("dropout", 7, single("Dropout", {"ratio": 0.3})),
    case("dropout-inputs", 13, single("Dropout", None, ["x", "r"]),
         {"r": np.array(0.2, np.float32)}),
    case("identity", 13, [single("Identity"), helper.make_node("Relu", ["y"], ["y_out"])]),
    case("lrn", 13, single("LRN", {"size": 3, "alpha": 0.01, "beta": 0.75, "bias": 2.0})),
    case("lrn-defaults", 7, single("LRN", {"size": 5})),
    case("constant-node", 13, [
        helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
            "c", onnx.TensorProto.FLOAT, [4, 1, 1], w(4).tolist())),
        helper.make_node("Mul", ["x", "c"], ["y"])]),
    case("constant-value-float", 13, [
        helper.make_node("Constant", [], ["c"], value_float=2.5),
        helper.make_node("Add", ["x", "c"], ["y"])]),
    case("constant-of-shape", 11, [
        helper.make_node("ConstantOfShape", ["shp"], ["c"], value=helper.make_tensor(
            "v", onnx.TensorProto.FLOAT, [1], [0.25])),
        helper.make_node("Sub", ["x", "c"], ["y"])], {"shp": i64(7, 6)}),
    case("cast-weights", 13, [
        helper.make_node("Cast", ["w64"], ["wf"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Transpose", ["wf"], ["wt"], perm=[1, 0, 2, 3]),
        helper.make_node("Conv", ["x", "wt"], ["y"])],
        {"w64": w(4, 3, 3, 3).astype(np.float64)}),
    case("cast-tensor", 13, [helper.make_node("Cast", ["x"], ["c"], to=onnx.TensorProto.FLOAT),
                             helper.make_node("Relu", ["c"], ["y"])]),
]


# --- a whole model ---------------------------------------------------------------------------
def small_cnn(opset=13, batch="N", hw=(8, 8), image=8, seed=5):
    """Conv -> BN -> Relu -> MaxPool -> Flatten -> Gemm -> Softmax (seeded weights)."""
    rng = np.random.default_rng(seed)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["probs"], name="softmax", axis=1)]
    feat = 4 * (image // 2) ** 2
    inits = {"cw": weight(4, 3, 3, 3), "cb": weight(4), "s": weight(4) + 1, "b": weight(4),
             "m": weight(4), "v": np.abs(weight(4)) + 0.5, "fw": weight(5, feat),
             "fb": weight(5)}
    return make_model(nodes, {"x": [batch, 3, *hw]}, ["probs"], inits, opset)
