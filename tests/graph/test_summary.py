"""Summary tables, FLOP counts and receptive fields."""
import numpy as np
import pytest

import cnnframe
from cnnframe.graph import Model, receptive_field


def seq(layers, shape=(1, 16, 16)):
    return Model.from_config({"input_shape": list(shape), "layers": layers})


def conv(cin, cout, k, **kw):
    return {"type": "conv2d", "in_channels": cin, "out_channels": cout, "kernel_size": k, **kw}


def test_two_stacked_2x2_convs_see_3x3():
    model = seq([conv(1, 2, 2), conv(2, 2, 2)])
    assert receptive_field(model, "conv2d_1") == (1 + 1, 1 + 1)
    assert cnnframe.receptive_field(model, "conv2d_2") == (3, 3)


def test_strides_pools_and_dilation_grow_the_receptive_field_by_the_jump():
    model = seq([conv(1, 2, 3, stride=2), {"type": "max_pool2d", "kernel_size": 2},
                 conv(2, 2, 3), conv(2, 2, [3, 1], dilation=2), {"type": "relu"}], shape=(1, 64, 64))
    # r: 3 (jump 2) -> 3 + 1*2 = 5 (jump 4) -> 5 + 2*4 = 13 -> dilated 5x1: 13 + 4*4 = 29 in h
    assert receptive_field(model, "conv2d_1") == (3, 3)
    assert receptive_field(model, "max_pool2d_1") == (5, 5)
    assert receptive_field(model, "conv2d_2") == (13, 13)
    assert receptive_field(model, "conv2d_3") == (29, 13)
    assert receptive_field(model, "relu_1") == (29, 13)


def test_merges_take_the_largest_branch_and_global_layers_see_everything():
    cfg = {"inputs": {"x": [1, 10, 12]}, "nodes": [
        {"name": "big", "type": "conv2d", "inputs": ["x"],
         "config": {"in_channels": 1, "out_channels": 1, "kernel_size": 5, "padding": 2}},
        {"name": "small", "type": "conv2d", "inputs": ["x"],
         "config": {"in_channels": 1, "out_channels": 1, "kernel_size": 1}},
        {"name": "sum", "type": "add", "inputs": ["small", "big"]},
        {"name": "cat", "type": "concat", "inputs": ["small", "x"]},
        {"name": "gap", "type": "global_avg_pool2d", "inputs": ["sum"]},
        {"name": "fc", "type": "linear", "inputs": ["gap"],
         "config": {"in_features": 1, "out_features": 1}},
        {"name": "flat", "type": "flatten", "inputs": ["cat"]},
        {"name": "fc2", "type": "linear", "inputs": ["flat"],
         "config": {"in_features": 240, "out_features": 1}}],
        "outputs": ["fc", "fc2"]}
    model = Model.from_config(cfg)
    assert receptive_field(model, "sum") == (5, 5)
    assert receptive_field(model, "cat") == (1, 1)
    assert receptive_field(model, "gap") == (5 + 9, 5 + 11)
    assert receptive_field(model, "fc") == (14, 16)
    assert receptive_field(model, "flat") == (1, 1)
    assert receptive_field(model, "fc2") == (10, 12)  # every input pixel
    with pytest.raises(ValueError, match="unknown node 'nope'"):
        receptive_field(model, "nope")


def test_summary_table_lists_every_node_with_params_and_flops():
    model = seq([conv(1, 4, 3, padding=1), {"type": "batch_norm2d", "num_features": 4},
                 {"type": "relu"}, {"type": "max_pool2d", "kernel_size": 2}, {"type": "flatten"},
                 {"type": "linear", "in_features": 256, "out_features": 10}])
    text = model.summary()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("node"))
    for col in ("type", "output shape", "params", "FLOPs", "receptive field"):
        assert col in header
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in model.nodes}
    assert set(rows) == set(model.nodes)
    # conv: 4 filters x 16x16 outputs x (1 x 3 x 3) multiply-adds, 2 FLOPs each
    assert "(4, 16, 16)" in rows["conv2d_1"] and "40" in rows["conv2d_1"].split()
    assert f"{2 * 4 * 16 * 16 * 9 / 1e3:.2f}k" in rows["conv2d_1"]
    assert "3x3" in rows["conv2d_1"] and "4x4" in rows["max_pool2d_1"]
    assert f"{2 * 256 * 10 / 1e3:.2f}k" in rows["linear_1"]
    total = 40 + 8 + 2570
    assert f"Total params: {total:,}" in text
    assert model.num_params() == total
    assert "2 per multiply-add" in text


def test_summary_of_a_non_image_model_has_no_receptive_fields():
    model = Model({"v": (3,)}, [("fc", cnnframe.layers.Linear(3, 2), ["v"])])
    assert "fc" in model.summary()
    with pytest.raises(ValueError, match="image input"):
        receptive_field(model, "fc")
    assert np.isfinite(model.num_params())
