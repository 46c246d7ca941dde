"""cnnframe.onnx.load as a whole: models made of several ops, the imported Model's life
(train, save, load, summary), input shapes, and bad input."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper, numpy_helper  # noqa: E402

import cnnframe.onnx  # noqa: E402
from cnnframe.graph import Model  # noqa: E402
from cnnframe.onnx.importer import load, supported_ops  # noqa: E402
from onnx_graphs import (assert_close, make_model, run_onnxruntime, save, single,  # noqa: E402
                         small_cnn)

R = np.random.default_rng(5)


def w(*shape):
    return (R.standard_normal(shape) * 0.3).astype(np.float32)


def test_package_load_is_the_importer(tmp_path):
    path = save(small_cnn(), tmp_path / "m.onnx")
    x = R.standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert_close(cnnframe.onnx.load(path).forward(x, training=False),
                 load(path).forward(x, training=False))


def test_imported_model_is_an_ordinary_model(tmp_path):
    model_proto = small_cnn()
    model = load(save(model_proto, tmp_path / "m.onnx"))
    assert isinstance(model, Model)
    assert list(model.inputs) == ["x"] and model.outputs == ["probs"]
    assert [layer.type_name for layer in model.nodes.values()] == [
        "conv2d", "batch_norm2d", "relu", "max_pool2d", "reshape", "linear", "softmax"]
    x = R.standard_normal((4, 3, 8, 8)).astype(np.float32)
    want = run_onnxruntime(model_proto, {"x": x})[0]
    assert_close(model.forward(x, training=False), want)
    assert "conv2d" in model.summary()
    # saves and loads with its weights
    model.save(tmp_path / "m.cnnf")
    again = Model.load(tmp_path / "m.cnnf")
    assert_close(again.forward(x, training=False), want)
    # trains: one SGD step on a loss changes the weights and lowers that loss
    y = model.forward(x, training=True)
    grad = np.zeros_like(y)
    grad[:, 0] = -1.0 / y[:, 0] / len(y)       # d(-mean log p0)/dp0
    model.backward(grad)
    before = float(-np.log(model.forward(x, training=False)[:, 0]).mean())
    for k, p in model.params.items():
        p -= 0.05 * model.grads[k]
    after = float(-np.log(model.forward(x, training=False)[:, 0]).mean())
    assert after < before


def test_old_exporters_list_initializers_among_inputs(tmp_path):
    proto = small_cnn(opset=9)
    extra = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
             for t in proto.graph.initializer]
    proto.graph.input.extend(extra)
    model = load(save(proto, tmp_path / "m.onnx"))
    assert list(model.inputs) == ["x"]
    x = R.standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert_close(model.forward(x, training=False), run_onnxruntime(proto, {"x": x})[0])


def test_gelu_erf_pattern_becomes_one_gelu_layer(tmp_path):
    s2, one, half = (np.array(v, np.float32) for v in (np.sqrt(2), 1.0, 0.5))
    nodes = [helper.make_node("Div", ["x", "s2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]),
             helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    model = load(save(make_model(nodes, {"x": [2, 6]}, ["y"],
                                 {"s2": s2, "one": one, "half": half}), tmp_path / "m.onnx"))
    assert [layer.type_name for layer in model.nodes.values()] == ["gelu"]


def test_inputs_of_any_rank(tmp_path):
    nodes = [single("Softmax", {"axis": -1})]
    model = load(save(make_model(nodes, {"x": ["batch", 10]}, ["y"]), tmp_path / "m.onnx"))
    assert model.inputs == {"x": (10,)}
    x = R.standard_normal((3, 10)).astype(np.float32)
    assert_close(model.forward(x, training=False), np.exp(x) / np.exp(x).sum(1, keepdims=True))


def test_dynamic_axes_need_input_shape(tmp_path):
    path = save(small_cnn(hw=("height", "width")), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"input 'x' has a dynamic axis 'height'.*input_shape"):
        load(path)
    # the Gemm fixes 8 x 8 images; input_shape fixes the axes
    model = load(path, input_shape=(3, 8, 8))
    assert model.inputs == {"x": (3, 8, 8)}
    with pytest.raises(ValueError, match="input_shape"):
        load(path, input_shape=(3, 8))
    with pytest.raises(ValueError, match="unknown inputs"):
        load(path, input_shape={"image": (3, 8, 8)})


def test_wrong_input_shape_names_the_node(tmp_path):
    path = save(small_cnn(hw=("h", "w")), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"node 'fc' \(Gemm, opset 13\)"):
        load(path, input_shape=(3, 10, 10))


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage\xff" * 7, b"not onnx at all"])
def test_malformed_files_are_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.onnx: not an ONNX model"):
        load(path)


def test_truncated_file_is_refused(tmp_path):
    data = small_cnn().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.onnx"):
        load(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        load("/nonexistent/nowhere.onnx")


@pytest.mark.parametrize("op, domain", [("Einsum", ""), ("FusedConv", "com.microsoft")])
def test_unsupported_op_names_node_op_and_opset(tmp_path, op, domain):
    node = helper.make_node(op, ["x"], ["y"], name="odd_one", domain=domain)
    proto = make_model([node], {"x": [1, 3]}, ["y"], opset=17)
    with pytest.raises(ValueError, match=rf"node 'odd_one' \({op}, opset 17\).*{op}"):
        load(save(proto, tmp_path / "m.onnx"))


def test_unsupported_attribute_values_name_the_node(tmp_path):
    node = single("Resize", {"mode": "cubic"}, ["x", "", "sc"])
    proto = make_model([node], {"x": [1, 2, 4, 4]}, ["y"],
                       {"sc": np.array([1, 1, 2, 2], np.float32)})
    with pytest.raises(ValueError, match=r"node 'the_resize' \(Resize, opset 13\).*cubic"):
        load(save(proto, tmp_path / "m.onnx"))


def test_reshape_of_the_batch_axis_is_refused(tmp_path):
    node = single("Reshape", None, ["x", "t"])
    proto = make_model([node], {"x": [2, 3, 4]}, ["y"], {"t": np.array([6, 4], np.int64)})
    with pytest.raises(ValueError, match="batch axis"):
        load(save(proto, tmp_path / "m.onnx"))


def test_external_data_inside_the_folder_loads(tmp_path):
    proto = small_cnn()
    x = R.standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = run_onnxruntime(proto, {"x": x})[0]
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save_model(proto, str(folder / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").exists()
    assert_close(load(folder / "m.onnx").forward(x, training=False), want)


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(np.zeros(12, np.float32).tobytes())
    proto = make_model([single("Add", None, ["x", "c"])], {"x": [1, 12]}, ["y"])
    t = onnx.TensorProto(name="c", data_type=onnx.TensorProto.FLOAT, dims=[12])
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    proto.graph.initializer.append(t)
    with pytest.raises(ValueError, match="outside the model's folder"):
        load(save(proto, folder / "m.onnx"))


def test_huge_declared_initializer_is_refused_before_allocation(tmp_path):
    proto = make_model([single("Add", None, ["x", "c"])], {"x": [1, 4]}, ["y"])
    t = onnx.TensorProto(name="c", data_type=onnx.TensorProto.FLOAT, dims=[2 ** 20, 2 ** 20])
    t.raw_data = b"\x00" * 16
    proto.graph.initializer.append(t)
    with pytest.raises(ValueError, match=r"initializer 'c' declares shape \[1048576, 1048576\]"
                                         r".*limit"):
        load(save(proto, tmp_path / "m.onnx"))


def test_huge_folded_constant_is_refused_before_allocation(tmp_path):
    nodes = [helper.make_node("ConstantOfShape", ["shp"], ["c"], name="zeros"),
             helper.make_node("Add", ["x", "c"], ["y"])]
    proto = make_model(nodes, {"x": [1, 4]}, ["y"],
                       {"shp": np.array([2 ** 31, 2 ** 31, 4], np.int64)})
    with pytest.raises(ValueError, match=r"output of node 'zeros'.*limit"):
        load(save(proto, tmp_path / "m.onnx"))


def test_max_tensor_bytes_sets_the_limit(tmp_path):
    path = save(small_cnn(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="max_tensor_bytes"):
        load(path, max_tensor_bytes=64)


def test_data_shorter_than_its_shape_is_refused(tmp_path):
    proto = make_model([single("Add", None, ["x", "c"])], {"x": [1, 4]}, ["y"])
    t = numpy_helper.from_array(np.ones(4, np.float32), "c")
    t.raw_data = t.raw_data[:8]
    proto.graph.initializer.append(t)
    with pytest.raises(ValueError, match="initializer 'c' has 8 bytes"):
        load(save(proto, tmp_path / "m.onnx"))


def test_constant_output_is_refused(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"]),
             helper.make_node("Constant", [], ["k"], value_float=1.0)]
    proto = make_model(nodes, {"x": [1, 4]}, ["y", "k"])
    with pytest.raises(ValueError, match="graph output 'k' is a constant"):
        load(save(proto, tmp_path / "m.onnx"))


def test_unused_second_output_of_maxpool_is_fine_but_used_is_refused(tmp_path):
    nodes = [single("MaxPool", {"kernel_shape": [2, 2]}, n_outputs=2),
             helper.make_node("Cast", ["y1"], ["i"], to=onnx.TensorProto.FLOAT),
             helper.make_node("Add", ["y", "i"], ["z"], name="uses_indices")]
    proto = make_model(nodes, {"x": [1, 2, 4, 4]}, ["z"], opset=12)
    with pytest.raises(ValueError, match="output 1 of node 'the_maxpool'"):
        load(save(proto, tmp_path / "m.onnx"))


def test_supported_ops_lists_the_required_ones():
    required = {"Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Elu",
                "PRelu", "Sigmoid", "Tanh", "Softmax", "Clip", "HardSwish", "Gelu", "MaxPool",
                "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Gemm", "MatMul", "Add",
                "Sub", "Mul", "Div", "Sum", "Concat", "Flatten", "Reshape", "Transpose", "Pad",
                "Resize", "Upsample", "Dropout", "Identity", "LRN", "Constant",
                "ConstantOfShape", "Unsqueeze", "Shape", "Gather", "Cast"}
    assert required <= set(supported_ops())


def test_opset_older_than_6_is_refused(tmp_path):
    proto = make_model([single("Relu")], {"x": [1, 4]}, ["y"], opset=5)
    with pytest.raises(ValueError, match="opset 5 is older"):
        load(save(proto, tmp_path / "m.onnx"))
    assert os.path.exists(tmp_path / "m.onnx")


def test_constant_operands_are_buffers_not_parameters(tmp_path):
    """An imported constant (x - mean) is state, not a weight: optimizers leave it alone."""
    mean = w(1, 3, 1, 1)
    proto = make_model([single("Sub", None, ["x", "mean"])], {"x": [2, 3, 4, 4]}, ["y"],
                       {"mean": mean})
    model = load(save(proto, tmp_path / "m.onnx"))
    (layer,) = model.nodes.values()
    assert layer.params == {} and set(layer.buffers) == {"value"}
    assert layer.get_config() == {"op": "sub", "shape": [3, 1, 1], "trainable": False}
    np.testing.assert_array_equal(layer.buffers["value"], mean.reshape(3, 1, 1))
    learned = type(layer).from_config({**layer.get_config(), "trainable": True})
    assert set(learned.params) == {"value"} and learned.get_config()["trainable"] is True
