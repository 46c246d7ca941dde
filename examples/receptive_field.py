"""Receptive fields: which input pixels can affect one output of a layer.

One output of a 2x2 convolution sees a 2x2 window of its input.  Stack a second
2x2 convolution on top and each of its outputs sees a 2x2 window of the first
layer's outputs, which together cover a 3x3 window of the input: depth widens the
view.  cnnframe computes receptive fields from the model graph
(`cnnframe.receptive_field(model, node)`, also a column of `model.summary()`);
here they are also measured, by backpropagating from a single output and looking at
which input pixels get a non-zero gradient.

Run:  python examples/receptive_field.py
"""
import json

import numpy as np

import cnnframe


def influence(model, position):
    """0/1 map of the input pixels whose gradient reaches output `position` of the model.

    All weights are positive (init "ones"), so no contribution can cancel out.
    """
    x = np.random.default_rng(0).random((1, *model.inputs["input"]), dtype=np.float32)
    y = model.forward(x)
    grad_y = np.zeros_like(y)
    grad_y[(0, 0, *position)] = 1.0
    grad_x = model.backward(grad_y)
    return (grad_x[0, 0] != 0).astype(int)


def extent(mask):
    """Height and width of the bounding box of the non-zero entries."""
    rows, cols = np.nonzero(mask)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def conv3x3(name, cin, cout):
    return {"type": "conv2d", "name": name, "in_channels": cin, "out_channels": cout,
            "kernel_size": 3, "padding": 1}


def pool2x2(name):
    return {"type": "max_pool2d", "name": name, "kernel_size": 2}


def main():
    # 1. The text's example: a 3x3 input, then two 2x2 convolutions.
    conv = {"type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 2,
            "bias": False, "init": "ones"}
    cfg = {"input_shape": [1, 3, 3],
           "layers": [dict(conv, name="conv1"), dict(conv, name="conv2")]}
    print(f"config = {json.dumps(cfg)}")
    print()
    two_convs = cnnframe.Model.from_config(cfg)
    print(two_convs.summary())
    print()
    for node in ("conv1", "conv2"):
        print(f"receptive_field(model, {node!r}) = {cnnframe.receptive_field(two_convs, node)}")
    print()

    # Measured: a model that stops at conv1, and the full one.
    only_conv1 = cnnframe.Model.from_config(dict(cfg, layers=cfg["layers"][:1]))
    mask1 = influence(only_conv1, (0, 0))
    mask2 = influence(two_convs, (0, 0))
    print("input pixels reaching conv1's output [0, 0] =")
    print(mask1)
    print()
    print(f"measured receptive field of conv1 = {extent(mask1)}")
    print()
    print("input pixels reaching conv2's output [0, 0] =")
    print(mask2)
    print()
    print(f"measured receptive field of conv2 = {extent(mask2)}")
    print()

    # 2. A deeper net: 3x3 convolutions and 2x2 max pooling.  With j the product of the
    #    strides below a layer, a 3x3 convolution widens the field by 2 j pixels and a
    #    2x2 pooling by j, and the pooling's stride 2 doubles j for the layers above.
    deep_cfg = {"input_shape": [3, 32, 32], "seed": 0,
                "layers": [conv3x3("conv1", 3, 8), {"type": "relu", "name": "relu1"},
                           conv3x3("conv2", 8, 8), {"type": "relu", "name": "relu2"},
                           pool2x2("pool1"),
                           conv3x3("conv3", 8, 16), {"type": "relu", "name": "relu3"},
                           pool2x2("pool2"),
                           conv3x3("conv4", 16, 16)]}
    print(f"deep config = {json.dumps(deep_cfg)}")
    print()
    deep = cnnframe.Model.from_config(deep_cfg)
    print(deep.summary())
    print()
    print("receptive field on the 32x32 input, layer by layer:")
    for node in ("conv1", "conv2", "pool1", "conv3", "pool2", "conv4"):
        h, w = cnnframe.receptive_field(deep, node)
        print(f"  {node:<6} {h:>3} x {w}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
