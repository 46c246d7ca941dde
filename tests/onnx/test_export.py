"""cnnframe -> ONNX: every built-in layer and example model gives onnxruntime's outputs equal
to cnnframe's (eval mode, float32, <= 1e-5 relative), in every exported opset."""
import glob
import json
import os
import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cnnframe.onnx as connx  # noqa: E402
from cnnframe.graph import Model  # noqa: E402
from cnnframe.layers import Layer  # noqa: E402
from cnnframe.onnx.export import CONFIG_METADATA_KEY, ExportError  # noqa: E402
from cnnframe.registry import available_layers, get_layer, layer_origin  # noqa: E402
from onnx_graphs import randomize  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "configs")
OPSETS = list(range(connx.MIN_OPSET, connx.MAX_OPSET + 1))

# layer type -> [(config, input shape without the batch, or a list of them for merges)]
CASES = {
    "conv2d": [({"in_channels": 4, "out_channels": 6, "kernel_size": [3, 2], "stride": [2, 1],
                 "padding": [1, 0], "dilation": [1, 2], "groups": 2}, (4, 9, 8)),
               ({"in_channels": 3, "out_channels": 3, "kernel_size": 3, "padding": "same",
                 "groups": 3, "bias": False}, (3, 6, 5))],
    "conv_transpose2d": [({"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2,
                           "padding": 1, "output_padding": 1}, (3, 4, 5)),
                         ({"in_channels": 4, "out_channels": 6, "kernel_size": [2, 3],
                           "stride": [1, 2], "dilation": 2, "groups": 2, "bias": False},
                          (4, 3, 3))],
    "linear": [({"in_features": 6, "out_features": 3}, (6,)),
               ({"in_features": 5, "out_features": 2, "bias": False}, (5,))],
    "relu": [({}, (3, 4, 4))],
    "leaky_relu": [({"negative_slope": 0.2}, (3, 4))],
    "sigmoid": [({}, (5,))],
    "tanh": [({}, (2, 3, 3))],
    "softmax": [({}, (4, 3, 3)), ({"axis": -1}, (2, 5))],
    "gelu": [({}, (3, 4, 4)), ({"approximate": "tanh"}, (7,))],
    "silu": [({}, (3, 4))],
    "hardswish": [({}, (2, 5, 5))],
    "elu": [({"alpha": 0.5}, (2, 3, 3))],
    "prelu": [({}, (3, 4)), ({"num_parameters": 3}, (3, 4, 4)), ({"num_parameters": 5}, (5,))],
    "batch_norm2d": [({"num_features": 3, "eps": 1e-3}, (3, 4, 4))],
    "batch_norm1d": [({"num_features": 4}, (4,)), ({"num_features": 2}, (2, 5))],
    "group_norm": [({"num_groups": 2, "num_channels": 4}, (4, 3, 3)),
                   ({"num_groups": 3, "num_channels": 3, "affine": False}, (3, 5))],
    "layer_norm": [({"normalized_shape": [3, 4, 4]}, (3, 4, 4)),
                   ({"normalized_shape": 5, "bias": False}, (2, 5)),
                   ({"normalized_shape": [2, 3], "elementwise_affine": False}, (4, 2, 3))],
    "instance_norm2d": [({"num_features": 2, "affine": True}, (2, 4, 5)),
                        ({"num_features": 3, "affine": True, "track_running_stats": True},
                         (3, 3, 3))],
    "max_pool2d": [({"kernel_size": 3, "stride": 2, "padding": 1}, (2, 7, 6))],
    "avg_pool2d": [({"kernel_size": 3, "stride": 1, "padding": 1}, (2, 5, 5)),
                   ({"kernel_size": [2, 3]}, (1, 6, 7))],
    "global_avg_pool2d": [({}, (3, 4, 5))],
    "adaptive_avg_pool2d": [({"output_size": [2, 3]}, (2, 4, 6)),
                            ({"output_size": [2, 3]}, (2, 5, 7)),
                            ({"output_size": 1}, (3, 5, 4)),
                            ({"output_size": [None, 2]}, (1, 3, 5))],
    "adaptive_max_pool2d": [({"output_size": 3}, (2, 5, 4)), ({"output_size": 2}, (2, 4, 4))],
    "upsample": [({"scale_factor": 2}, (2, 3, 4)),
                 ({"size": [5, 7]}, (2, 3, 4)),
                 ({"size": [3, 2]}, (1, 7, 5)),
                 ({"scale_factor": 0.5}, (1, 6, 7)),
                 ({"scale_factor": [1.5, 2.5]}, (1, 4, 3)),
                 ({"scale_factor": [2.2, 1.2]}, (1, 3, 2)),  # PyTorch: rows doubled, copied
                 ({"scale_factor": [1.2, 2.2], "mode": "bilinear"}, (1, 2, 3)),
                 ({"scale_factor": 2, "mode": "bilinear"}, (2, 3, 4)),
                 ({"scale_factor": 1.7, "mode": "bilinear"}, (1, 5, 4)),
                 ({"size": [7, 3], "mode": "bilinear", "align_corners": True}, (1, 4, 5)),
                 ({"size": [1, 6], "mode": "bilinear"}, (1, 4, 3)),
                 ({"scale_factor": 1.7, "mode": "bilinear", "recompute_scale_factor": True},
                  (1, 5, 4))],
    "flatten": [({}, (2, 3, 4))],
    "identity": [({}, (3,))],
    "dropout": [({"p": 0.5}, (3, 4))],
    "dropout2d": [({"p": 0.5}, (3, 2, 2))],
    "add": [({}, [(2, 3, 3), (2, 3, 3)]), ({}, [(4,), (4,), (4,)])],
    "concat": [({}, [(2, 3, 3), (1, 3, 3)]), ({"axis": -1}, [(2, 3), (2, 1), (2, 2)])],
    # the layers of the ONNX import
    "elementwise": [({"op": "add"}, [(2, 3, 3), (2, 1, 3)]),
                    ({"op": "sub"}, [(2, 1, 1), (2, 3, 4)]),
                    ({"op": "mul"}, [(4,), (4,)]),
                    ({"op": "div"}, [(3, 2), (1, 2)])],
    "elementwise_const": [({"op": "add", "shape": [3, 1, 1]}, (3, 2, 4)),
                          ({"op": "sub", "shape": [4]}, (2, 4)),
                          ({"op": "mul"}, (5,)),
                          ({"op": "div", "shape": [1, 3]}, (2, 2, 3)),
                          ({"op": "rsub", "shape": [2, 1]}, (2, 3)),
                          ({"op": "rdiv", "shape": [], "trainable": True}, (3, 3))],
    "clip": [({"min": -0.5, "max": 0.7}, (3, 4)), ({"min": 0.0, "max": 6.0}, (2, 3, 3)),
             ({"max": 0.2}, (5,)), ({"min": -0.1}, (2, 3)), ({}, (4,))],
    "reshape": [({"shape": [4, 6]}, (2, 3, 4)), ({"shape": [6]}, (2, 3)),
                ({"shape": [2, 1, 3, 2]}, (12,))],
    "transpose": [({"perm": [0, 2, 3, 1]}, (2, 3, 4)), ({"perm": [0, 2, 1]}, (5, 3))],
    "pad": [({"pads": [[0, 0], [1, 2], [2, 0]]}, (2, 3, 4)),
            ({"pads": [[1, 1], [0, 3]], "value": -1.5}, (2, 5)),
            ({"pads": [[0, 0], [2, 1], [1, 2]], "mode": "reflect"}, (2, 4, 3)),
            ({"pads": [[1, 0], [0, 2], [3, 1]], "mode": "edge"}, (2, 3, 2))],
    "pool2d": [({"mode": "max", "kernel_size": 3, "stride": 2, "pads": [1, 0, 0, 1]},
                (2, 7, 6)),
               ({"mode": "max", "kernel_size": 3, "stride": 2, "ceil_mode": True}, (2, 8, 7)),
               # ceil_mode where a last window would start in the end pads (dropped)
               ({"mode": "max", "kernel_size": 2, "stride": 3, "ceil_mode": True}, (1, 7, 6)),
               ({"mode": "avg", "kernel_size": 2, "stride": 3, "ceil_mode": True}, (1, 7, 6)),
               ({"mode": "max", "kernel_size": 2, "stride": 3, "dilation": 2,
                 "pads": [1, 1, 1, 1], "ceil_mode": True}, (1, 8, 9)),   # explicit Pad
               ({"mode": "avg", "kernel_size": [2, 3], "pads": [1, 0, 0, 2]}, (2, 5, 6)),
               ({"mode": "avg", "kernel_size": 3, "stride": 2, "pads": [1, 1, 1, 1],
                 "ceil_mode": True}, (2, 6, 8)),
               ({"mode": "avg", "kernel_size": 3, "stride": 2, "pads": [1, 1, 1, 1],
                 "count_include_pad": True}, (1, 7, 6)),
               ({"mode": "avg", "kernel_size": 3, "stride": 2, "pads": [1, 1, 1, 1],
                 "ceil_mode": True, "count_include_pad": True}, (2, 6, 8)),  # as a Conv
               ({"mode": "avg", "kernel_size": 2, "dilation": 2, "pads": [0, 1, 1, 0]},
                (2, 6, 5))],   # a Conv before opset 19
    "lrn": [({"size": 3, "alpha": 0.01, "beta": 0.75, "k": 2.0}, (5, 3, 4)),
            ({"size": 5, "beta": 0.5}, (6, 3)), ({"size": 3}, (4, 2, 2, 3)),
            ({"size": 4}, (6,)), ({"size": 2, "alpha": 0.5}, (4, 5))],
    "matmul_const": [({"in_features": 4, "out_features": 3}, (2, 4)),
                     ({"in_features": 5, "out_features": 2, "bias": True}, (5,)),
                     ({"in_features": 3, "out_features": 4, "bias": True}, (2, 2, 3))],
}

BUILTIN = sorted(n for n in available_layers() if layer_origin(n) == "built-in")


def layer_model(name, cfg, shape):
    layer = get_layer(name).from_config(cfg)
    shapes = shape if isinstance(shape, list) else [shape]
    inputs = {f"x{i}": s for i, s in enumerate(shapes)}
    return Model(inputs, [("node", layer, list(inputs))])


def run_both(model, path, opset, rng, batch=2):
    """cnnframe's eval outputs and onnxruntime's for one random batch (dict name -> array)."""
    connx.export(model, path, opset=opset)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    feeds = {k: rng.standard_normal((batch, *s)).astype(np.float32)
             for k, s in model.inputs.items()}
    ours = model.forward(feeds if len(feeds) > 1 else next(iter(feeds.values())),
                         training=False)
    ours = ours if isinstance(ours, dict) else {model.outputs[0]: ours}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    return ours, theirs


def assert_close(ours, theirs, rtol=1e-5):
    assert set(ours) == set(theirs)
    for k in ours:
        assert theirs[k].shape == ours[k].shape, k
        scale = max(float(np.abs(ours[k]).max()), 1e-3)
        err = float(np.abs(theirs[k] - ours[k]).max())
        assert err <= rtol * scale, f"{k}: max error {err:.3g} for outputs up to {scale:.3g}"


def test_every_builtin_layer_has_export_cases():
    assert set(CASES) == set(BUILTIN), "add export cases for the new layer types"


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_layer_exports_and_matches_onnxruntime(name, opset, tmp_path):
    assert name in CASES, f"no export case for the built-in layer {name!r}: add one to CASES"
    rng = np.random.default_rng(opset * 101 + len(name))
    for k, (cfg, shape) in enumerate(CASES[name]):
        model = randomize(layer_model(name, cfg, shape), rng)
        ours, theirs = run_both(model, tmp_path / f"{name}_{k}.onnx", opset, rng)
        assert_close(ours, theirs)


# Ops the export writes that the import does not read on tensors (no cnnframe layer slices,
# reduces or powers a tensor): uneven adaptive pools, layer_norm before opset 17 and lrn of an
# even size are written with them.
NOT_IMPORTED = {"Slice", "ReduceMean", "ReduceMax", "Pow"}


@pytest.mark.parametrize("opset", [connx.MIN_OPSET, connx.DEFAULT_OPSET, connx.MAX_OPSET])
@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_layer_imports_back(name, opset, tmp_path):
    """cnnframe -> ONNX -> cnnframe gives the layer's outputs, or an error naming the op."""
    rng = np.random.default_rng(opset * 7 + len(name))
    for k, (cfg, shape) in enumerate(CASES[name]):
        model = randomize(layer_model(name, cfg, shape), rng)
        path = tmp_path / f"{name}_{k}.onnx"
        connx.export(model, path, opset=opset)
        try:
            back = connx.load(path)
        except ValueError as exc:  # only for a node of those ops, on a tensor
            assert re.search(rf"\(({'|'.join(NOT_IMPORTED)}), opset {opset}\): op .* is not "
                             "supported", str(exc)), exc
            continue
        assert list(back.inputs) == list(model.inputs) and back.outputs == model.outputs
        feeds = {k: rng.standard_normal((3, *s)).astype(np.float32)
                 for k, s in model.inputs.items()}
        x = feeds if len(feeds) > 1 else next(iter(feeds.values()))
        want = model.forward(x, training=False)
        assert_close({"y": back.forward(x, training=False)}, {"y": want})


def _model_part(path):
    from cnnframe.cli.summary import model_from_path
    return model_from_path(path)


@pytest.mark.parametrize("config", sorted(glob.glob(os.path.join(EXAMPLES, "*.toml"))),
                         ids=os.path.basename)
def test_example_configs_export_and_match_onnxruntime(config, tmp_path):
    rng = np.random.default_rng(0)
    model = randomize(_model_part(config), rng)
    for opset in (connx.MIN_OPSET, connx.DEFAULT_OPSET, connx.MAX_OPSET):
        ours, theirs = run_both(model, tmp_path / f"m{opset}.onnx", opset, rng)
        assert_close(ours, theirs)


def test_graph_keeps_names_dynamic_batch_and_the_config(tmp_path):
    cfg = {"inputs": {"image": [3, 8, 8], "extra": [4]},
           "nodes": [{"name": "conv", "type": "conv2d", "inputs": ["image"],
                      "config": {"in_channels": 3, "out_channels": 2, "kernel_size": 3}},
                     {"name": "flat", "type": "flatten"},
                     {"name": "fc", "type": "linear", "config": {"in_features": 72,
                                                                 "out_features": 4}},
                     {"name": "sum", "type": "add", "inputs": ["fc", "extra"]},
                     {"name": "probs", "type": "softmax", "inputs": ["sum"]}],
           "outputs": ["probs", "flat"]}
    model = randomize(Model.from_config(cfg), np.random.default_rng(1))
    path = tmp_path / "m.onnx"
    connx.export(model, path)
    proto = onnx.load(path)
    assert [i.name for i in proto.graph.input] == ["image", "extra"]
    assert [o.name for o in proto.graph.output] == ["probs", "flat"]
    for vi in [*proto.graph.input, *proto.graph.output]:
        assert vi.type.tensor_type.shape.dim[0].dim_param == "N"
    assert {i.name for i in proto.graph.initializer} == set(model.params)
    assert proto.opset_import[0].version == connx.DEFAULT_OPSET
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta[CONFIG_METADATA_KEY]) == model.to_config()
    for batch in (1, 5):  # the batch dimension is free
        ours, theirs = run_both(model, path, connx.DEFAULT_OPSET, np.random.default_rng(batch),
                                batch=batch)
        assert_close(ours, theirs)


@pytest.mark.parametrize("bn_is_output", [False, True])
def test_batch_norm_fused_with_relu_exports_both(bn_is_output, tmp_path):
    layers = [{"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3},
              {"type": "batch_norm2d", "num_features": 3}]
    if not bn_is_output:
        layers.append({"type": "relu"})
    model = randomize(Model.from_config({"input_shape": [2, 6, 6], "layers": layers}),
                      np.random.default_rng(2))
    assert model.nodes["batch_norm2d_1"].fused_relu is not bn_is_output
    ours, theirs = run_both(model, tmp_path / "m.onnx", 17, np.random.default_rng(3))
    assert_close(ours, theirs)
    assert (ours[model.outputs[0]] < 0).any() == bn_is_output  # the ReLU is applied
    ops = [n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node]
    assert ops == ["Conv", "BatchNormalization"] + ([] if bn_is_output else ["Relu"])


@pytest.mark.parametrize("opset,ops", [(13, {"Erf"}), (19, {"Erf"}), (20, {"Gelu"})])
def test_gelu_op_form_follows_the_opset(opset, ops, tmp_path):
    model = layer_model("gelu", {}, (4,))
    connx.export(model, tmp_path / "g.onnx", opset=opset)
    assert ops <= {n.op_type for n in onnx.load(tmp_path / "g.onnx").graph.node}


@pytest.mark.parametrize("name,cfg,shape,opset,ops", [
    ("pad", {"pads": [[0, 0], [1, 2]]}, (2, 3), 17, ["Pad"]),
    ("pool2d", {"mode": "avg", "kernel_size": 2, "dilation": 2}, (1, 5, 5), 18,
     ["Conv", "Div"]),
    ("pool2d", {"mode": "avg", "kernel_size": 2, "dilation": 2}, (1, 5, 5), 19,
     ["AveragePool"]),
    ("pool2d", {"mode": "max", "kernel_size": 2, "stride": 3, "ceil_mode": True}, (1, 7, 6), 17,
     ["MaxPool"]),
    ("lrn", {"size": 3}, (4, 2, 2), 13, ["LRN"]),
    ("lrn", {"size": 3}, (4, 5), 13, ["Reshape", "LRN", "Reshape"]),
    ("lrn", {"size": 2}, (4, 5, 5), 13, ["Mul", "Reshape", "Conv", "Reshape", "Mul", "Add",
                                         "Pow", "Mul"]),
])
def test_op_forms_of_the_import_layers(name, cfg, shape, opset, ops, tmp_path):
    connx.export(layer_model(name, cfg, shape), tmp_path / "m.onnx", opset=opset)
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert [n.op_type for n in graph.node] == ops
    pool = [n for n in graph.node if n.op_type in ("MaxPool", "AveragePool")]
    # ceil_mode is never written: its extra windows are end pads (ONNX's shape inference
    # and onnxruntime disagree on ceil_mode's output size when a window starts in the pads)
    assert all(a.name != "ceil_mode" for n in pool for a in n.attribute)


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_pad_names_the_sample_axes_from_opset_18(opset, tmp_path):
    model = layer_model("pad", {"pads": [[0, 0], [1, 2], [3, 0]], "value": 2.0}, (2, 3, 4))
    connx.export(model, tmp_path / "m.onnx", opset=opset)
    graph = onnx.load(tmp_path / "m.onnx").graph
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    pad = graph.node[0]
    if opset >= 18:
        assert inits[pad.input[1]].tolist() == [0, 1, 3, 0, 2, 0]
        assert inits[pad.input[3]].tolist() == [1, 2, 3]
    else:
        assert len(pad.input) == 3
        assert inits[pad.input[1]].tolist() == [0, 0, 1, 3, 0, 0, 2, 0]
    assert inits[pad.input[2]].shape == () and inits[pad.input[2]] == 2.0  # a scalar


def test_clip_bounds_are_scalars(tmp_path):
    connx.export(layer_model("clip", {"max": 0.5}, (3,)), tmp_path / "m.onnx")
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert list(graph.node[0].input) == ["x0", "", "node/max"]
    (bound,) = graph.initializer
    assert onnx.numpy_helper.to_array(bound).shape == ()


class Cube(Layer):
    """An unregistered plugin-style layer without an ONNX mapping."""

    def forward(self, x, training=True):
        return x ** 3

    def backward(self, grad_y):
        return grad_y


class CubeWithOnnx(Cube):
    def to_onnx(self, ctx, inputs, name):
        square = ctx.node("Mul", [inputs[0], inputs[0]])
        return ctx.node("Mul", [square, inputs[0]], outputs=name)


def test_layer_without_mapping_raises_naming_node_and_type(tmp_path):
    model = Model({"x": (3,)}, [("first", get_layer("relu")(), ["x"]),
                                ("cube_node", Cube(), ["first"])])
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"node 'cube_node' \(Cube.*to_onnx"):
        connx.export(model, path)
    assert not path.exists() and os.listdir(tmp_path) == []  # nothing written


def test_plugin_layer_with_to_onnx_exports(tmp_path):
    model = Model({"x": (3, 2)}, [("cube", CubeWithOnnx(), ["x"])])
    ours, theirs = run_both(model, tmp_path / "m.onnx", 13, np.random.default_rng(4))
    assert_close(ours, theirs)


def test_subclass_of_builtin_layer_needs_its_own_mapping(tmp_path):
    class ShiftedReLU(get_layer("relu")):
        def forward(self, x, training=True):
            return super().forward(x + 1, training)

    model = Model({"x": (3,)}, [("shifted", ShiftedReLU(), ["x"])])
    with pytest.raises(ExportError, match="'shifted'"):
        connx.export(model, tmp_path / "m.onnx")


@pytest.mark.parametrize("opset,error", [(12, ValueError), (22, ValueError), ("17", TypeError),
                                         (True, TypeError)])
def test_bad_opset_is_refused(opset, error, tmp_path):
    with pytest.raises(error, match="opset"):
        connx.export(layer_model("relu", {}, (2,)), tmp_path / "m.onnx", opset=opset)


def test_export_replaces_a_file_atomically(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    connx.export(layer_model("relu", {}, (2,)), path)
    assert onnx.load(path).graph.node[0].op_type == "Relu"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_missing_onnx_gives_the_install_hint(monkeypatch, tmp_path):
    import builtins
    real_import = builtins.__import__

    def no_onnx(name, *args, **kw):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=r"pip install cnnframe\[onnx\]"):
        connx.export(layer_model("relu", {}, (2,)), tmp_path / "m.onnx")


def test_float64_model_exports_as_double_or_as_float32(tmp_path):
    rng = np.random.default_rng(5)
    resize = layer_model("upsample", {"scale_factor": 1.5}, (2, 3, 4)).astype("float64")
    connx.export(resize, tmp_path / "r.onnx")  # Resize's scales stay float32: a valid graph
    onnx.checker.check_model(onnx.load(tmp_path / "r.onnx"), full_check=True)
    model = randomize(layer_model("linear", {"in_features": 6, "out_features": 3}, (6,)), rng)
    model.astype("float64")
    connx.export(model, tmp_path / "d.onnx")
    proto = onnx.load(tmp_path / "d.onnx")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x = rng.standard_normal((2, 6))
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x0": x})[0], model.forward(x, False),
                               rtol=1e-12)

    conv = randomize(layer_model("conv2d", CASES["conv2d"][0][0], CASES["conv2d"][0][1]), rng)
    conv.astype("float64")
    connx.export(conv, tmp_path / "f.onnx", dtype="float32")
    proto = onnx.load(tmp_path / "f.onnx")
    assert {i.data_type for i in proto.graph.initializer} == {onnx.TensorProto.FLOAT}
    assert conv.dtype == np.float64  # the model itself is untouched
    x = rng.standard_normal((2, *conv.inputs["x0"]))
    session = ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"])
    ours = conv.forward(x, training=False)
    theirs = session.run(None, {"x0": x.astype(np.float32)})[0]
    assert np.abs(theirs - ours).max() <= 1e-5 * np.abs(ours).max()
    with pytest.raises(ValueError, match="dtype must be float32, float64 or None"):
        connx.export(conv, tmp_path / "g.onnx", dtype="float16")
