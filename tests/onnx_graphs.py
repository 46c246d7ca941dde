"""Small ONNX graphs for the import tests, and running them with onnxruntime and cnnframe.

Import this after ``pytest.importorskip("onnx")``.
"""
import numpy as np
import onnx
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


def assert_close(got, want, rtol=1e-5):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-30)
    err = float(np.max(np.abs(got - want), initial=0.0))
    assert err <= rtol * scale, f"max abs error {err:.3g} > {rtol} x {scale:.3g}"
