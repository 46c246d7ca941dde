"""The layers of issue 18 beyond gradients: configs, PyTorch layouts, statistics, dropout, models."""
import numpy as np
import pytest

from cnnframe import Model
from cnnframe.registry import available_layers, get_layer

NEW = ["group_norm", "layer_norm", "instance_norm2d", "gelu", "silu", "hardswish", "elu", "prelu",
       "conv_transpose2d", "upsample", "adaptive_avg_pool2d", "adaptive_max_pool2d", "dropout2d"]

# name -> (config, input shape without the batch)
CASES = {
    "group_norm": ({"num_groups": 2, "num_channels": 4}, (4, 3, 3)),
    "layer_norm": ({"normalized_shape": [3, 3]}, (2, 3, 3)),
    "instance_norm2d": ({"num_features": 2, "affine": True, "track_running_stats": True},
                        (2, 4, 4)),
    "gelu": ({"approximate": "tanh"}, (3, 4)),
    "silu": ({}, (5,)),
    "hardswish": ({}, (2, 3, 3)),
    "elu": ({"alpha": 0.5}, (4,)),
    "prelu": ({"num_parameters": 3}, (3, 2, 2)),
    "conv_transpose2d": ({"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2,
                          "padding": 1, "output_padding": 1, "seed": 0}, (3, 4, 4)),
    "upsample": ({"scale_factor": 2, "mode": "bilinear"}, (2, 3, 4)),
    "adaptive_avg_pool2d": ({"output_size": [2, 3]}, (2, 5, 7)),
    "adaptive_max_pool2d": ({"output_size": 3}, (2, 5, 4)),
    "dropout2d": ({"p": 0.5, "seed": 1}, (3, 2, 2)),
}


def test_every_new_layer_is_registered_under_its_issue_name():
    assert set(NEW) <= set(available_layers())
    assert set(CASES) == set(NEW)
    for name in NEW:
        assert get_layer(name).type_name == name


def test_parameters_and_buffers_use_pytorch_names_and_layouts():
    def layout(name, **cfg):
        layer = get_layer(name).from_config(cfg)
        return ({k: v.shape for k, v in layer.params.items()},
                {k: v.shape for k, v in layer.buffers.items()})
    assert layout("group_norm", num_groups=2, num_channels=6) == (
        {"weight": (6,), "bias": (6,)}, {})
    assert layout("group_norm", num_groups=2, num_channels=6, affine=False) == ({}, {})
    assert layout("layer_norm", normalized_shape=[4, 5]) == ({"weight": (4, 5), "bias": (4, 5)},
                                                             {})
    assert layout("layer_norm", normalized_shape=7, bias=False) == ({"weight": (7,)}, {})
    assert layout("instance_norm2d", num_features=3) == ({}, {})
    assert layout("instance_norm2d", num_features=3, affine=True, track_running_stats=True) == (
        {"weight": (3,), "bias": (3,)}, {"running_mean": (3,), "running_var": (3,)})
    assert layout("prelu") == ({"weight": (1,)}, {})
    assert layout("prelu", num_parameters=8) == ({"weight": (8,)}, {})
    assert layout("conv_transpose2d", in_channels=6, out_channels=4, kernel_size=[3, 2],
                  groups=2) == ({"weight": (6, 2, 3, 2), "bias": (4,)}, {})


def test_initial_values_follow_pytorch():
    assert (get_layer("prelu").from_config({"init": 0.1}).params["weight"] ==
            np.float32(0.1)).all()
    for name, cfg in [("group_norm", {"num_groups": 1, "num_channels": 3}),
                      ("layer_norm", {"normalized_shape": 3}),
                      ("instance_norm2d", {"num_features": 3, "affine": True,
                                           "track_running_stats": True})]:
        layer = get_layer(name).from_config(cfg)
        assert (layer.params["weight"] == 1).all() and (layer.params["bias"] == 0).all()
        assert all((b == v).all() for b, v in zip(layer.buffers.values(), (0, 1)))


@pytest.mark.parametrize("name,cfg,match", [
    ("group_norm", {"num_groups": 3, "num_channels": 4}, r"num_groups \(3\) must divide"),
    ("group_norm", {"num_groups": 2, "num_channels": 4, "eps": 0}, "eps must be > 0"),
    ("group_norm", {"num_groups": 2, "num_channels": 4, "affine": 1}, "affine must be true or"),
    ("layer_norm", {"normalized_shape": []}, "normalized_shape must not be empty"),
    ("layer_norm", {"normalized_shape": [3, 0]}, "normalized_shape must be >= 1"),
    ("instance_norm2d", {"num_features": 3, "momentum": 2}, "momentum must be a finite number"),
    ("gelu", {"approximate": "fast"}, "approximate must be 'none' or 'tanh'"),
    ("elu", {"alpha": "1"}, "alpha must be a number"),
    ("prelu", {"num_parameters": 0}, "num_parameters must be >= 1"),
    ("conv_transpose2d", {"in_channels": 4, "out_channels": 3, "kernel_size": 3, "groups": 2},
     r"groups=2 must divide"),
    ("conv_transpose2d", {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "stride": 2,
                          "output_padding": 2}, "output_padding 2 must be smaller than"),
    ("upsample", {}, "give exactly one of size and scale_factor"),
    ("upsample", {"size": 4, "align_corners": True}, "align_corners can only be set with mode"),
    ("upsample", {"scale_factor": 2, "mode": "bicubic"}, "mode must be one of"),
    ("adaptive_avg_pool2d", {"output_size": [2, 2, 2]}, "output_size must be an int or a pair"),
    ("adaptive_max_pool2d", {"output_size": 0}, "output_size must be >= 1"),
    ("dropout2d", {"p": 1.5}, r"p must be a finite number in \[0.0, 1.0\]"),
    ("group_norm", {"num_groups": 1}, "missing required config key 'num_channels'"),
])
def test_bad_configs_raise_naming_the_problem(name, cfg, match):
    with pytest.raises((TypeError, ValueError), match=match):
        get_layer(name).from_config(cfg)


@pytest.mark.parametrize("name,cfg,shape,match", [
    ("group_norm", {"num_groups": 2, "num_channels": 4}, (2, 3, 4, 4),
     r"expects x of shape \(N, 4, ...\), got shape \(2, 3, 4, 4\)"),
    ("layer_norm", {"normalized_shape": [4, 4]}, (2, 3, 4, 5), r"\(N, ..., 4, 4\)"),
    ("instance_norm2d", {"num_features": 3}, (2, 3, 1, 1), "more than one value per plane"),
    ("prelu", {"num_parameters": 3}, (2, 4, 2, 2), r"\(N, 3, ...\), got shape \(2, 4, 2, 2\)"),
    ("conv_transpose2d", {"in_channels": 3, "out_channels": 2, "kernel_size": 3}, (2, 2, 4, 4),
     r"expects x of shape \(N, 3, H, W\)"),
    ("upsample", {"scale_factor": 0.2}, (2, 3, 4, 4), "makes an empty output"),
    ("adaptive_avg_pool2d", {"output_size": 2}, (2, 3, 4), "must have 4 dimensions"),
    ("dropout2d", {"p": 0.5}, (2, 3), "must have 4 dimensions"),
])
def test_wrong_inputs_raise_naming_the_shapes(name, cfg, shape, match):
    layer = get_layer(name).from_config(cfg)
    with pytest.raises(ValueError, match=match):
        layer.forward(np.zeros(shape, np.float32))


def test_per_sample_norms_normalise_each_sample_and_work_with_a_batch_of_one(rng):
    x = (rng.standard_normal((1, 4, 6, 6)) * 3 + 5).astype(np.float64)
    for name, cfg, axes in [("group_norm", {"num_groups": 2, "num_channels": 4}, (2, 3, 4)),
                            ("layer_norm", {"normalized_shape": [4, 6, 6]}, (1, 2, 3)),
                            ("instance_norm2d", {"num_features": 4}, (2, 3))]:
        layer = get_layer(name).from_config(cfg).astype(np.float64)
        y = layer.forward(x, training=True)
        if name == "group_norm":
            y = y.reshape(1, 2, 2, 6, 6)
        np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-12)
        np.testing.assert_allclose(y.var(axis=axes), 1, rtol=1e-5)   # eps = 1e-5
        # training and eval compute the same (no running statistics)
        np.testing.assert_array_equal(layer.forward(x, training=False).reshape(y.shape), y)


def test_instance_norm_running_statistics_update_in_training_and_are_used_in_eval(rng):
    layer = get_layer("instance_norm2d").from_config(
        {"num_features": 3, "momentum": 0.25, "track_running_stats": True}).astype(np.float64)
    x = rng.standard_normal((4, 3, 5, 6)) * 2 + np.arange(3).reshape(1, 3, 1, 1)
    layer.forward(x, training=True)
    planes = x.reshape(4, 3, -1)
    np.testing.assert_allclose(layer.buffers["running_mean"],
                               0.25 * planes.mean(axis=2).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"],
                               0.75 + 0.25 * planes.var(axis=2, ddof=1).mean(axis=0), rtol=1e-12)
    before = {k: v.copy() for k, v in layer.buffers.items()}
    y = layer.forward(x, training=False)
    for k, v in layer.buffers.items():
        np.testing.assert_array_equal(v, before[k])
    rm, rv = before["running_mean"].reshape(1, 3, 1, 1), before["running_var"].reshape(1, 3, 1, 1)
    np.testing.assert_allclose(y, (x - rm) / np.sqrt(rv + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("p", [0.25, 0.5, 0.8])
def test_dropout2d_drops_whole_channels_and_scales_the_survivors(p):
    layer = get_layer("dropout2d").from_config({"p": p, "seed": 3})
    x = np.random.default_rng(0).uniform(1, 2, (64, 32, 3, 3)).astype(np.float32)
    y = layer.forward(x, training=True)
    dropped = (y == 0).all(axis=(2, 3))
    kept = ~dropped
    assert ((y == 0) == dropped[:, :, None, None]).all()   # whole planes, nothing else
    np.testing.assert_allclose(y[kept], (x / (1 - p))[kept], rtol=1e-6)
    assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / dropped.size)
    g = np.ones_like(y)
    expected = np.broadcast_to(np.where(dropped[:, :, None, None], 0, 1 / (1 - p)), y.shape)
    np.testing.assert_allclose(layer.backward(g), expected, rtol=1e-6)


def test_dropout2d_is_the_identity_in_eval_replays_from_its_rng_and_p1_drops_everything(rng):
    layer = get_layer("dropout2d").from_config({"p": 0.5, "seed": 7})
    x = rng.standard_normal((4, 6, 2, 2)).astype(np.float32)
    assert layer.forward(x, training=False) is x
    state = layer.rng.bit_generator.state
    y1 = layer.forward(x).copy()
    layer.rng.bit_generator.state = state
    np.testing.assert_array_equal(layer.forward(x), y1)
    all_dropped = get_layer("dropout2d").from_config({"p": 1.0})
    assert (all_dropped.forward(x) == 0).all()


def test_unet_style_transposed_convs_double_the_size():
    for cfg, hw in [({"kernel_size": 2, "stride": 2}, 16), ({"kernel_size": 4, "stride": 2,
                                                             "padding": 1}, 16),
                    ({"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, 16)]:
        layer = get_layer("conv_transpose2d").from_config(dict(cfg, in_channels=4,
                                                               out_channels=2))
        assert layer.output_shape((4, 8, 8)) == (2, hw, hw)
        assert layer.forward(np.zeros((1, 4, 8, 8), np.float32)).shape == (1, 2, hw, hw)


def test_resampling_output_shapes():
    up = get_layer("upsample")
    assert up.from_config({"scale_factor": 1.5}).output_shape((3, 5, 4)) == (3, 7, 6)
    assert up.from_config({"size": [9, 2]}).output_shape((3, 5, 4)) == (3, 9, 2)
    assert up.from_config({"scale_factor": 2}).get_config()["scale_factor"] == 2.0
    pool = get_layer("adaptive_avg_pool2d")
    assert pool.from_config({"output_size": [None, 2]}).output_shape((3, 5, 4)) == (3, 5, 2)
    assert pool.from_config({"output_size": 1}).receptive_step((3, 5, 4)) is None


@pytest.mark.parametrize("name", NEW)
def test_reused_buffers_give_the_same_results_and_inputs_stay_untouched(name, rng):
    cfg, shape = CASES[name]
    fresh = get_layer(name).from_config(cfg)
    reuse = get_layer(name).from_config(cfg)
    reuse.reuse_buffers = True
    for _ in range(2):
        x = rng.standard_normal((4, *shape)).astype(np.float32)
        before = x.copy()
        if getattr(fresh, "rng", None) is not None:
            reuse.rng.bit_generator.state = fresh.rng.bit_generator.state
        y1, y2 = fresh.forward(x), reuse.forward(x)
        np.testing.assert_array_equal(y1, y2)
        g = rng.standard_normal(y1.shape).astype(np.float32)
        g_before = g.copy()
        np.testing.assert_array_equal(fresh.backward(g), reuse.backward(g))
        for k in fresh.grads:
            np.testing.assert_array_equal(fresh.grads[k], reuse.grads[k])
        np.testing.assert_array_equal(x, before)
        np.testing.assert_array_equal(g, g_before)


@pytest.mark.parametrize("name", ["group_norm", "layer_norm", "instance_norm2d", "prelu",
                                  "conv_transpose2d"])
def test_needs_input_grad_false_skips_grad_x_but_fills_param_grads(rng, name):
    cfg, shape = CASES[name]
    full, skip = get_layer(name).from_config(cfg), get_layer(name).from_config(cfg)
    skip.needs_input_grad = False
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    g = rng.standard_normal(full.forward(x).shape).astype(np.float32)
    skip.forward(x)
    assert full.backward(g) is not None and skip.backward(g) is None
    assert full.grads
    for k in full.grads:
        np.testing.assert_allclose(skip.grads[k], full.grads[k], rtol=1e-6)


def test_a_small_unet_of_the_new_layers_trains_in_a_model(rng):
    """Down (conv, group norm, silu, adaptive pool), up (transposed conv, upsample), skip concat."""
    cfg = {"inputs": {"image": [3, 8, 8]}, "seed": 0, "nodes": [
        {"name": "enc", "type": "conv2d", "inputs": ["image"],
         "config": {"in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": 1}},
        {"name": "gn", "type": "group_norm", "inputs": ["enc"],
         "config": {"num_groups": 2, "num_channels": 8}},
        {"name": "act", "type": "silu", "inputs": ["gn"]},
        {"name": "down", "type": "adaptive_max_pool2d", "inputs": ["act"],
         "config": {"output_size": 4}},
        {"name": "mid", "type": "conv2d", "inputs": ["down"],
         "config": {"in_channels": 8, "out_channels": 8, "kernel_size": 3, "padding": 1}},
        {"name": "drop", "type": "dropout2d", "inputs": ["mid"], "config": {"p": 0.2}},
        {"name": "gelu", "type": "gelu", "inputs": ["drop"]},
        {"name": "up", "type": "conv_transpose2d", "inputs": ["gelu"],
         "config": {"in_channels": 8, "out_channels": 4, "kernel_size": 2, "stride": 2}},
        {"name": "up2", "type": "upsample", "inputs": ["down"],
         "config": {"scale_factor": 2, "mode": "bilinear"}},
        {"name": "cat", "type": "concat", "inputs": ["up", "up2", "act"]},
        {"name": "ln", "type": "layer_norm", "inputs": ["cat"],
         "config": {"normalized_shape": [20, 8, 8]}},
        {"name": "head", "type": "conv2d", "inputs": ["ln"],
         "config": {"in_channels": 20, "out_channels": 2, "kernel_size": 1}},
    ]}
    model = Model.from_config(cfg)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = model.forward(x, training=True)
    assert y.shape == (2, 2, 8, 8) and np.isfinite(y).all()
    model.backward(np.ones_like(y))
    assert all(np.isfinite(g).all() for g in model.grads.values())
    assert np.abs(model.nodes["up"].grads["weight"]).sum() > 0
