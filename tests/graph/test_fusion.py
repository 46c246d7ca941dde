"""Batch norm + ReLU fusion inside a Model: where it happens, and that it changes no bit."""
import numpy as np
import pytest

import cnnframe.graph.model as model_module
from cnnframe import Model


def graph(relu_type="relu", bn_is_output=False, second_consumer=False, bn="batch_norm2d"):
    """conv -> bn -> relu -> conv [-> add(bn, ...)] -> flatten -> linear, as a graph config."""
    shape = [3, 6, 6]
    nodes = [
        {"name": "conv", "type": "conv2d", "inputs": ["image"],
         "config": {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1}},
        {"name": "bn", "type": bn, "inputs": ["conv"], "config": {"num_features": 4}},
        {"name": "act", "type": relu_type, "inputs": ["bn"]},
        {"name": "conv2", "type": "conv2d", "inputs": ["act"],
         "config": {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": 1}},
    ]
    last = "conv2"
    if second_consumer:
        nodes.append({"name": "sum", "type": "add", "inputs": ["conv2", "bn"]})
        last = "sum"
    nodes += [{"name": "flat", "type": "flatten", "inputs": [last]},
              {"name": "fc", "type": "linear", "inputs": ["flat"],
               "config": {"in_features": 144, "out_features": 5}}]
    outputs = ["fc", "bn"] if bn_is_output else ["fc"]
    return {"inputs": {"image": shape}, "nodes": nodes, "outputs": outputs, "seed": 3}


def build(cfg, fuse, monkeypatch, dtype="float32"):
    monkeypatch.setattr(model_module, "FUSE_BATCH_NORM_RELU", fuse)
    return Model.from_config(dict(cfg, dtype=dtype))


def step(model, x, training):
    y = model.forward(x, training)
    ys = y if isinstance(y, dict) else {"fc": y}
    grads = {k: np.cos(np.arange(v.size, dtype=v.dtype)).reshape(v.shape) for k, v in ys.items()}
    gx = model.backward(grads if isinstance(y, dict) else grads["fc"])
    return ({k: v.copy() for k, v in ys.items()}, gx.copy(),
            {k: v.copy() for k, v in model.grads.items()})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("training", [True, False])
def test_fused_model_is_bit_identical_to_unfused(rng, monkeypatch, dtype, training):
    fused, plain = build(graph(), True, monkeypatch, dtype), build(graph(), False, monkeypatch,
                                                                    dtype)
    assert fused.nodes["bn"].fused_relu and fused.nodes["act"].fused
    assert not plain.nodes["bn"].fused_relu and not plain.nodes["act"].fused
    x = rng.standard_normal((5, 3, 6, 6)).astype(dtype)
    for _ in range(2):  # the second call runs in the reused buffers
        got, want = step(fused, x, training), step(plain, x, training)
        for k in want[0]:
            np.testing.assert_array_equal(got[0][k], want[0][k])
        np.testing.assert_array_equal(got[1], want[1])
        for k in want[2]:
            np.testing.assert_array_equal(got[2][k], want[2][k], err_msg=k)
    for k in plain.buffers:  # running statistics
        np.testing.assert_array_equal(fused.buffers[k], plain.buffers[k])


@pytest.mark.parametrize("case", [dict(bn_is_output=True), dict(second_consumer=True),
                                  dict(relu_type="leaky_relu"), dict(relu_type="sigmoid")])
def test_not_fused_where_the_batch_norm_output_is_needed_itself(monkeypatch, case):
    model = build(graph(**case), True, monkeypatch)
    assert not model.nodes["bn"].fused_relu
    if case.get("relu_type", "relu") == "relu":
        assert not model.nodes["act"].fused


def test_batch_norm1d_fuses_too(rng, monkeypatch):
    cfg = {"input_shape": [6], "seed": 1, "layers": [
        {"type": "linear", "in_features": 6, "out_features": 8},
        {"type": "batch_norm1d", "num_features": 8}, {"type": "relu"},
        {"type": "linear", "in_features": 8, "out_features": 3}]}
    fused, plain = build(cfg, True, monkeypatch), build(cfg, False, monkeypatch)
    assert fused.nodes["batch_norm1d_1"].fused_relu
    x = rng.standard_normal((7, 6)).astype(np.float32)
    for a, b in zip(step(fused, x, True)[2].values(), step(plain, x, True)[2].values()):
        np.testing.assert_array_equal(a, b)


def test_fused_relu_as_model_output_is_never_overwritten(rng, monkeypatch):
    """A fused ReLU hands out the batch norm's buffer: as a model output it must be fresh."""
    cfg = {"input_shape": [2, 4, 4], "seed": 2, "layers": [
        {"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"type": "batch_norm2d", "num_features": 3}, {"type": "relu"}]}
    model = build(cfg, True, monkeypatch)
    assert model.nodes["batch_norm2d_1"].fused_relu
    x1, x2 = (rng.standard_normal((2, 2, 4, 4)).astype(np.float32) for _ in range(2))
    y1 = model.forward(x1)
    kept = y1.copy()
    y2 = model.forward(x2)
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, kept)
    assert (y2 >= 0).all() and (y2 == 0).any()


def test_rebuilding_without_fusion_resets_the_flags(monkeypatch):
    fused = build(graph(), True, monkeypatch)
    monkeypatch.setattr(model_module, "FUSE_BATCH_NORM_RELU", False)
    again = Model(fused.inputs, [(n, fused.nodes[n], fused.node_inputs[n]) for n in fused.nodes],
                  fused.outputs)
    assert not again.nodes["bn"].fused_relu and not again.nodes["act"].fused
