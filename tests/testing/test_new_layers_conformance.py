"""The full conformance suite for each layer of issue 18, on several configs each.

Every (config, check) is its own test (cnnframe.testing.parametrize_layer_checks).
"""
from cnnframe.registry import get_layer
from cnnframe.testing import parametrize_layer_checks

X = (2, 3, 5, 5)


@parametrize_layer_checks(get_layer("group_norm"), [
    ({"num_groups": 2, "num_channels": 4}, (2, 4, 3, 3)),
    ({"num_groups": 1, "num_channels": 3, "affine": False, "eps": 1e-3}, (2, 3, 4)),
    ({"num_groups": 3, "num_channels": 3}, (1, 3, 2, 3))])
def test_group_norm(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("layer_norm"), [
    ({"normalized_shape": [3, 5, 5]}, X),
    ({"normalized_shape": 5, "bias": False}, X),
    ({"normalized_shape": 6, "elementwise_affine": False}, (3, 6))])
def test_layer_norm(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("instance_norm2d"), [
    ({"num_features": 3}, X),
    ({"num_features": 3, "affine": True, "track_running_stats": True, "momentum": 0.2}, X)])
def test_instance_norm2d(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("gelu"), [{}, {"approximate": "tanh"}], input_shape=X)
def test_gelu(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("silu"), [({}, X), ({}, (3, 4))])
def test_silu(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("hardswish"), [{}], input_shape=X)
def test_hardswish(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("elu"), [{}, {"alpha": 0.3}], input_shape=X)
def test_elu(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("prelu"), [({}, X), ({"num_parameters": 3, "init": 0.1}, X),
                                               ({"num_parameters": 4}, (3, 4))])
def test_prelu(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("conv_transpose2d"), [
    {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1,
     "output_padding": 1},
    {"in_channels": 3, "out_channels": 6, "kernel_size": [2, 3], "groups": 3, "dilation": 2,
     "bias": False},
    {"in_channels": 3, "out_channels": 2, "kernel_size": 3, "padding": 1}], input_shape=X)
def test_conv_transpose2d(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("upsample"), [
    {"scale_factor": 2}, {"size": [7, 3]}, {"size": [7, 9], "mode": "bilinear"},
    {"scale_factor": [1.5, 2.5], "mode": "bilinear", "align_corners": True}], input_shape=X)
def test_upsample(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("adaptive_avg_pool2d"), [
    {"output_size": 3}, {"output_size": [2, None]}, {"output_size": 1}], input_shape=X)
def test_adaptive_avg_pool2d(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("adaptive_max_pool2d"), [
    {"output_size": [3, 2]}, {"output_size": 7}], input_shape=X)
def test_adaptive_max_pool2d(layer_check):
    layer_check()


@parametrize_layer_checks(get_layer("dropout2d"), [{"p": 0.4}, {"p": 0.0}], input_shape=X)
def test_dropout2d(layer_check):
    layer_check()
