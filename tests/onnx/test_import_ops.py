"""Each supported ONNX op and attribute variant, at the opsets where its signature differs:
the imported cnnframe model matches onnxruntime (<= 1e-5 relative, float32).  The cases
are tests/onnx_graphs.py's OP_CASES (the round-trip tests reuse them)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

from cnnframe.onnx.importer import load  # noqa: E402
from onnx_graphs import (OP_CASES, X4, assert_close, bn, i64, make_model,  # noqa: E402
                         run_onnxruntime, save, shape_chain_flatten)


def _output_name(nodes):
    return nodes[-1].output[0]


@pytest.mark.parametrize("opset, nodes, inits, inputs, positive", OP_CASES)
def test_import_matches_onnxruntime(tmp_path, opset, nodes, inits, inputs, positive):
    rng = np.random.default_rng(1)
    out = _output_name(nodes)
    model = make_model(nodes, inputs, [out], inits, opset)
    concrete = {k: [2 if isinstance(s, str) else s for s in v] for k, v in inputs.items()}
    feeds = {k: (rng.uniform(0.5, 2.0, v) if positive else rng.standard_normal(v)).astype(
        np.float32) for k, v in concrete.items()}
    want = run_onnxruntime(model, feeds)[0]
    imported = load(save(model, tmp_path / "m.onnx"))
    got = imported.forward(feeds if len(feeds) > 1 else next(iter(feeds.values())),
                           training=False)
    assert got.dtype == np.float32
    assert_close(got, want)


def test_batch_norm_opset6_and_clip_attributes_match_numpy(tmp_path):
    """onnxruntime runs opset 7 and newer; opset 6's forms are checked against numpy."""
    rng = np.random.default_rng(2)
    node, inits = bn(6, is_test=1, spatial=1, epsilon=1e-3, consumed_inputs=[0, 0, 0, 1, 1])
    clip = helper.make_node("Clip", ["y"], ["z"], min=0.0, max=0.5)
    model = make_model([node, clip], {"x": X4}, ["z"], inits, opset=6)
    x = rng.standard_normal(X4).astype(np.float32)
    c = (1, 4, 1, 1)
    want = (x - inits["m"].reshape(c)) / np.sqrt(inits["v"].reshape(c) + 1e-3)
    want = np.clip(want * inits["s"].reshape(c) + inits["b"].reshape(c), 0, 0.5)
    got = load(save(model, tmp_path / "m.onnx")).forward(x, training=False)
    assert_close(got, want)


@pytest.mark.parametrize("opset", [11, 13])
def test_batch_size_is_free_after_a_static_export(tmp_path, opset):
    """A graph exported with batch 1 (static shapes) runs on any batch size."""
    nodes = shape_chain_flatten(opset) + [helper.make_node("Relu", ["y"], ["out"])]
    model = make_model(nodes, {"x": [1, 3, 4, 4]}, ["out"], {"ax": i64(0), "minus1": i64(-1)},
                       opset)
    m = load(save(model, tmp_path / "m.onnx"))
    x = np.random.default_rng(3).standard_normal((5, 3, 4, 4)).astype(np.float32)
    assert_close(m.forward(x, training=False), np.maximum(x.reshape(5, -1), 0))
