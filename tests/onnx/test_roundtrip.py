"""Round trips through cnnframe.

- ONNX -> cnnframe -> ONNX: each import test graph (tests/onnx_graphs.py: OP_CASES and
  small_cnn), imported and exported again at opset 17 and at its own opset (where cnnframe
  exports it, 13 and newer), gives onnxruntime's outputs of the original graph
  (<= 1e-5 relative).
- cnnframe -> ONNX -> cnnframe: each example config's model (random weights), exported and
  imported, gives the model's outputs and trains as the model does.
"""
import glob
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cnnframe.onnx as connx  # noqa: E402
from cnnframe.losses import SoftmaxCrossEntropy  # noqa: E402
from cnnframe.onnx._builder import sanitize  # noqa: E402
from cnnframe.optim import SGD  # noqa: E402
from onnx_graphs import (OP_CASES, assert_close, make_model, run_onnxruntime,  # noqa: E402
                         save, small_cnn)

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "configs")


def _feeds(inputs, positive, rng, batch=2):
    """Random float32 inputs for {name: shape}; named (string) axes get `batch`."""
    shapes = {k: [batch if isinstance(s, str) else s for s in v] for k, v in inputs.items()}
    return {k: (rng.uniform(0.5, 2.0, v) if positive else rng.standard_normal(v)).astype(
        np.float32) for k, v in shapes.items()}


def _run_file(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _reexport_opsets(opset):
    """Opset 17, and the original opset when cnnframe writes it."""
    return sorted({connx.DEFAULT_OPSET} | ({opset} if opset >= connx.MIN_OPSET else set()))


def _assert_round_trip(proto, feeds, tmp_path):
    """proto -> cnnframe -> ONNX at each opset gives onnxruntime's outputs of proto."""
    want = run_onnxruntime(proto, feeds)
    model = connx.load(save(proto, tmp_path / "original.onnx"))
    # the model's inputs are the ONNX inputs, named as cnnframe names them
    renamed = {sanitize(k, k): v for k, v in feeds.items()}
    assert set(renamed) == set(model.inputs)
    opset = proto.opset_import[0].version
    for target in _reexport_opsets(opset):
        path = connx.export(model, tmp_path / f"again_{target}.onnx", opset=target)
        again = onnx.load(path)
        assert again.opset_import[0].version == target
        got = _run_file(path, renamed)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_close(g, w)


@pytest.mark.parametrize("opset, nodes, inits, inputs, positive", OP_CASES)
def test_onnx_to_cnnframe_to_onnx_keeps_the_outputs(opset, nodes, inits, inputs, positive,
                                                     tmp_path):
    proto = make_model(nodes, inputs, [nodes[-1].output[0]], inits, opset)
    _assert_round_trip(proto, _feeds(inputs, positive, np.random.default_rng(opset)), tmp_path)


@pytest.mark.parametrize("opset", [7, 9, 11, 13, 17, 21])
def test_small_cnn_round_trip_keeps_the_outputs(opset, tmp_path):
    proto = small_cnn(opset=opset)
    _assert_round_trip(proto, _feeds({"x": [5, 3, 8, 8]}, False, np.random.default_rng(0)),
                       tmp_path)


def test_round_trip_keeps_names_and_a_free_batch(tmp_path):
    model = connx.load(save(small_cnn(opset=13, batch=1), tmp_path / "m.onnx"))
    again = onnx.load(connx.export(model, tmp_path / "again.onnx"))
    assert [i.name for i in again.graph.input] == ["x"]
    assert [o.name for o in again.graph.output] == ["probs"]
    assert again.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    assert_close(_run_file(tmp_path / "again.onnx", {"x": x})[0],
                 run_onnxruntime(small_cnn(opset=13, batch=4), {"x": x})[0])


# --- cnnframe -> ONNX -> cnnframe ---------------------------------------------------------------
def _model_part(path):
    from cnnframe.cli.summary import model_from_path
    return model_from_path(path)


def _perturbed(model, rng):
    """The model with its own random init (seeded), the constant parameters (zero biases,
    batch-norm affines of ones) shifted a little and random running statistics: outputs
    of a trainable scale that still show any mistake."""
    for k, layer in enumerate(model.nodes.values()):
        layer.reset_parameters(int(rng.integers(2**31)) + k)
    for key, arr in model.params.items():
        if np.ptp(arr) == 0:
            arr += 0.1 * rng.standard_normal(arr.shape)
    for key, arr in model.buffers.items():
        arr[...] = (rng.uniform(0.5, 2.0, arr.shape) if key.endswith("running_var")
                    else 0.1 * rng.standard_normal(arr.shape))
    return model


def _loss_and_step(model, x, labels, lr=1e-3):
    """(loss before, loss after) one SGD step on softmax cross-entropy, in training mode."""
    loss = SoftmaxCrossEntropy()
    before = float(loss.forward(model.forward(x, training=True), labels))
    model.zero_grad()
    model.backward(loss.backward())
    SGD(model, lr=lr).step()
    after = float(loss.forward(model.forward(x, training=True), labels))
    return before, after


@pytest.mark.parametrize("config", sorted(glob.glob(os.path.join(EXAMPLES, "*.toml"))),
                         ids=os.path.basename)
@pytest.mark.parametrize("opset", [connx.MIN_OPSET, connx.DEFAULT_OPSET])
def test_example_config_cnnframe_to_onnx_to_cnnframe(config, opset, tmp_path):
    rng = np.random.default_rng(opset)
    model = _perturbed(_model_part(config), rng)
    back = connx.load(connx.export(model, tmp_path / "m.onnx", opset=opset))
    assert list(back.inputs) == list(model.inputs) and back.outputs == model.outputs
    assert back.inputs == model.inputs and back.shapes[back.outputs[0]] == \
        model.shapes[model.outputs[0]]
    assert back.num_params() == model.num_params()
    (name, shape), = model.inputs.items()
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    assert_close(back.forward(x, training=False), model.forward(x, training=False))
    # The imported model trains: one SGD step lowers the loss, as it does for the model
    # (training-mode batch norm, the same gradients).
    classes = model.shapes[model.outputs[0]][-1]
    labels = rng.integers(0, classes, len(x))
    ours, theirs = _loss_and_step(model, x, labels), _loss_and_step(back, x, labels)
    assert theirs[1] < theirs[0]
    np.testing.assert_allclose(theirs, ours, rtol=1e-4)
