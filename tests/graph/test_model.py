"""Model graphs: building, running, gradients through branches, training, config round trips."""
import numpy as np
import pytest

import cnnframe
from cnnframe.graph import Model
from cnnframe.layers import Conv2d, Linear, ReLU

RESIDUAL_TOML = """
seed = 3
outputs = ["fc"]

[inputs]
image = [2, 8, 8]

[[nodes]]
name = "stem"
type = "conv2d"
inputs = ["image"]
config = { in_channels = 2, out_channels = 6, kernel_size = 3, padding = 1 }

[[nodes]]
name = "stem_act"
type = "relu"
inputs = ["stem"]

[[nodes]]
name = "conv_a"
type = "conv2d"
inputs = ["stem_act"]
config = { in_channels = 6, out_channels = 6, kernel_size = 3, padding = 1 }

[[nodes]]
name = "bn_a"
type = "batch_norm2d"
inputs = ["conv_a"]
config = { num_features = 6 }

[[nodes]]
name = "act_a"
type = "relu"
inputs = ["bn_a"]

[[nodes]]
name = "conv_b"
type = "conv2d"
inputs = ["act_a"]
config = { in_channels = 6, out_channels = 6, kernel_size = 3, padding = 1 }

[[nodes]]
name = "residual"
type = "add"
inputs = ["conv_b", "stem_act"]

[[nodes]]
name = "act_out"
type = "relu"
inputs = ["residual"]

[[nodes]]
name = "pool"
type = "global_avg_pool2d"
inputs = ["act_out"]

[[nodes]]
name = "fc"
type = "linear"
inputs = ["pool"]
config = { in_features = 6, out_features = 2 }
"""


def synthetic_problem(rng, n):
    """Two classes: a bright blob in the top-left vs. the bottom-right quadrant, plus noise."""
    labels = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 2, 8, 8)).astype(np.float32) * 0.5
    for i, c in enumerate(labels):
        sl = (slice(0, 4), slice(0, 4)) if c == 0 else (slice(4, 8), slice(4, 8))
        x[i, c % 2][sl] += 1.0
    return x, labels


def test_residual_graph_from_toml_trains_on_a_tiny_problem(tmp_path, rng, ce, sgd):
    path = tmp_path / "resnet.toml"
    path.write_text(RESIDUAL_TOML)
    model = Model.from_file(path)
    assert list(model.nodes)[:2] == ["stem", "stem_act"]
    x, labels = synthetic_problem(rng, 64)
    initial, _ = ce(model.forward(x, training=False), labels)
    losses = []
    for step in range(60):
        idx = rng.choice(64, 16, replace=False)
        loss, g = ce(model.forward(x[idx]), labels[idx])
        model.backward(g, need_input_grad=False)
        sgd(model, 0.1)
        losses.append(loss)
    final, _ = ce(model.forward(x, training=False), labels)
    assert initial > 0.5                      # about log(2): chance level
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert final < 0.5 * initial
    acc = (model.forward(x, training=False).argmax(1) == labels).mean()
    assert acc > 0.9


def branchy_model(seed=0):
    """Two inputs, fan-out, concat, add, two outputs."""
    cfg = {
        "inputs": {"a": [2, 5, 5], "b": [3]},
        "nodes": [
            {"name": "c1", "type": "conv2d", "inputs": ["a"],
             "config": {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1}},
            {"name": "t", "type": "tanh", "inputs": ["c1"]},
            {"name": "c2", "type": "conv2d", "inputs": ["t"],
             "config": {"in_channels": 3, "out_channels": 3, "kernel_size": 1}},
            {"name": "sum", "type": "add", "inputs": ["t", "c2", "t"]},          # t used 3 times
            {"name": "cat", "type": "concat", "inputs": ["sum", "c1"]},
            {"name": "pool", "type": "avg_pool2d", "inputs": ["cat"],
             "config": {"kernel_size": 2, "stride": 1}},
            {"name": "flat", "type": "flatten", "inputs": ["pool"]},
            {"name": "fc", "type": "linear", "inputs": ["flat"],
             "config": {"in_features": 96, "out_features": 3}},
            {"name": "mix", "type": "add", "inputs": ["fc", "b"]},
            {"name": "prob", "type": "softmax", "inputs": ["mix"]},
            {"name": "bn", "type": "batch_norm1d", "inputs": ["fc"], "config": {"num_features": 3}},
        ],
        "outputs": ["prob", "bn"],
        "seed": seed,
    }
    return Model.from_config(cfg)


def test_gradients_through_fan_out_concat_add_and_several_outputs_match_finite_differences(fd, rng):
    model = branchy_model().astype(np.float64)
    x = {"a": rng.standard_normal((3, 2, 5, 5)), "b": rng.standard_normal((3, 3))}
    r = {k: rng.standard_normal(v.shape) for k, v in model.forward(x).items()}

    def loss():
        out = model.forward(x)
        return float(sum(np.sum(r[k] * out[k]) for k in r))

    loss()
    gx = model.backward({k: v.copy() for k, v in r.items()})
    analytic = {k: g.copy() for k, g in model.grads.items()}
    def check(analytic_grad, arr, name):
        numeric = fd(loss, arr, entries=40)
        at = ~np.isnan(numeric)
        np.testing.assert_allclose(analytic_grad[at], numeric[at], rtol=1e-5, atol=1e-7,
                                   err_msg=name)

    for k in ("a", "b"):
        check(gx[k], x[k], k)
    params = model.params
    for k in ["c1.weight", "c1.bias", "c2.weight", "c2.bias", "fc.weight", "bn.weight", "bn.bias"]:
        check(analytic[k], params[k], k)


def test_single_io_models_take_arrays_several_take_dicts(rng):
    model = branchy_model()
    with pytest.raises(TypeError, match="several inputs"):
        model.forward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        model.forward({"a": np.zeros((1, 2, 5, 5), np.float32)})
    with pytest.raises(ValueError, match=r"input 'b' must have shape \(N, 3\)"):
        model.forward({"a": np.zeros((1, 2, 5, 5), np.float32), "b": np.zeros((1, 4), np.float32)})
    out = model.forward({"a": np.zeros((2, 2, 5, 5), np.float32), "b": np.zeros((2, 3), np.float32)})
    assert set(out) == {"prob", "bn"} and out["prob"].shape == (2, 3)
    with pytest.raises(TypeError, match="several outputs"):
        model.backward(out["prob"])


def seq_config():
    return {"input_shape": [3, 8, 8], "seed": 11, "layers": [
        {"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "batch_norm2d", "num_features": 4},
        {"type": "relu"},
        {"type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 3},
        {"type": "relu"},
        {"type": "max_pool2d", "kernel_size": 2},
        {"type": "dropout", "p": 0.25},
        {"type": "flatten"},
        {"name": "head", "type": "linear", "in_features": 36, "out_features": 5},
    ]}


def test_sequential_shorthand_names_nodes_and_chains_them():
    model = Model.from_config(seq_config())
    assert list(model.nodes) == ["conv2d_1", "batch_norm2d_1", "relu_1", "conv2d_2", "relu_2",
                                 "max_pool2d_1", "dropout_1", "flatten_1", "head"]
    assert model.inputs == {"input": (3, 8, 8)} and model.outputs == ["head"]
    assert model.node_inputs["conv2d_2"] == ["relu_1"]
    assert model.shapes["max_pool2d_1"] == (4, 3, 3)


def test_to_config_round_trips_exactly_and_rebuilds_equal_outputs(rng):
    model = Model.from_config(seq_config())
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    for _ in range(3):  # move weights and running stats away from their initial values
        y = model.forward(x)
        model.backward(np.ones_like(y))
        for k, p in model.params.items():
            p -= 0.1 * model.grads[k]
    cfg = model.to_config()
    import json
    assert json.loads(json.dumps(cfg)) == cfg           # plain JSON values
    clone = Model.from_config(cfg)
    assert clone.to_config() == cfg
    clone.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(clone.forward(x, training=False),
                                  model.forward(x, training=False))
    # graph-form input gives back the same graph-form config
    assert Model.from_config(branchy_model().to_config()).to_config() == branchy_model().to_config()


def test_model_seed_makes_weights_reproducible_and_distinct_per_node():
    a, b = Model.from_config(seq_config()), Model.from_config(seq_config())
    for k, v in a.params.items():
        np.testing.assert_array_equal(v, b.params[k])
    cfg = seq_config()
    cfg["seed"] = 12
    c = Model.from_config(cfg)
    assert not np.array_equal(a.params["head.weight"], c.params["head.weight"])
    cfg = seq_config()
    cfg["layers"][0]["seed"] = 5  # a layer's own seed wins
    d = Model.from_config(cfg)
    np.testing.assert_array_equal(d.params["conv2d_1.weight"], Conv2d(3, 4, 3, padding=1, seed=5)
                                  .params["weight"])
    np.testing.assert_array_equal(d.params["head.weight"], a.params["head.weight"])


def test_params_and_grads_are_the_live_layer_arrays(rng):
    model = Model.from_config(seq_config())
    assert model.params["head.weight"] is model.nodes["head"].params["weight"]
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = model.forward(x, training=False).copy()
    model.params["head.bias"] += 1.0
    np.testing.assert_allclose(model.forward(x, training=False), y + 1.0, rtol=1e-6)
    g_before = model.grads["head.weight"]
    model.backward(np.ones_like(y))
    assert model.grads["head.weight"] is g_before          # updated in place
    assert set(model.params) == set(model.grads)
    assert set(model.buffers) == {"batch_norm2d_1.running_mean", "batch_norm2d_1.running_var"}
    assert model.num_params() == sum(p.size for p in model.params.values())


def test_need_input_grad_false_returns_none_with_the_same_param_grads(rng):
    a, b = Model.from_config(seq_config()), Model.from_config(seq_config())
    x = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    g = rng.standard_normal((3, 5)).astype(np.float32)
    for m in (a, b):
        m.nodes["dropout_1"].rng = np.random.default_rng(0)
        m.forward(x)
    assert a.backward(g).shape == x.shape
    assert b.backward(g, need_input_grad=False) is None
    for k in a.grads:
        np.testing.assert_allclose(b.grads[k], a.grads[k], rtol=1e-5, atol=1e-6)


def test_returned_outputs_and_input_grads_survive_later_calls(rng):
    # flatten output (a view) and eval-mode dropout (returns its input) are returned directly
    cfg = {"input_shape": [2, 4, 4], "layers": [
        {"type": "conv2d", "in_channels": 2, "out_channels": 2, "kernel_size": 1},
        {"type": "relu"}, {"type": "dropout", "p": 0.5}, {"type": "flatten"}]}
    model = Model.from_config(cfg)
    x1 = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    x2 = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    y1 = model.forward(x1, training=False)
    keep = y1.copy()
    model.forward(x2, training=False)
    np.testing.assert_array_equal(y1, keep)
    model.forward(x1)
    g1 = model.backward(np.ones((2, 32), np.float32))
    keep = g1.copy()
    model.forward(x2)
    model.backward(np.full((2, 32), 3.0, np.float32))
    np.testing.assert_array_equal(g1, keep)


def test_internal_buffers_are_reused_across_steps(rng):
    model = Model.from_config(seq_config())
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    model.forward(x)
    relu = model.nodes["relu_2"]   # (relu_1 is fused into batch_norm2d_1: no buffer of its own)
    first = relu._planned["y"]     # its view of the model's memory plan (cnnframe.graph.memory)
    assert np.shares_memory(relu._y, first)
    model.forward(x)
    assert relu._planned["y"] is first and np.shares_memory(relu._y, first)
    assert not model.nodes["head"].reuse_buffers


def test_state_dict_is_a_copy_and_load_state_dict_checks_keys_and_shapes():
    model = Model.from_config(seq_config())
    state = model.state_dict()
    state["head.bias"][:] = 7
    assert not (model.params["head.bias"] == 7).any()
    model.load_state_dict(state)
    assert (model.params["head.bias"] == 7).all()
    bad = dict(state)
    del bad["head.bias"]
    bad["extra.weight"] = np.zeros(2)
    bad["head.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"missing keys \['head.bias'\].*unexpected keys "
                       r"\['extra.weight'\].*head.weight: expected \(5, 36\), got \(2, 2\)"):
        model.load_state_dict(bad)


def test_float64_models_and_input_conversion(rng):
    cfg = seq_config()
    cfg["dtype"] = "float64"
    model = Model.from_config(cfg)
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert model.to_config()["dtype"] == "float64"
    y = model.forward(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    assert y.dtype == np.float64
    model.astype(np.float32)
    assert model.forward(np.zeros((1, 3, 8, 8))).dtype == np.float32


def test_models_can_be_built_from_layer_objects(rng):
    model = Model({"x": (4,)}, [("fc1", Linear(4, 8, seed=0), ["x"]), ("act", ReLU(), "fc1"),
                                ("fc2", Linear(8, 2, seed=1), ["act"])])
    assert model.outputs == ["fc2"]
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w1, w2 = model.params["fc1.weight"], model.params["fc2.weight"]
    np.testing.assert_allclose(model(x), np.maximum(x @ w1.T, 0) @ w2.T, rtol=1e-5, atol=1e-6)
    assert cnnframe.Model is Model
    assert Model.from_config(model.to_config()).to_config() == model.to_config()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hypothesis_budget import scaled  # noqa: E402


@settings(max_examples=scaled(25))
@given(c=st.integers(1, 3), h=st.integers(4, 9), seed=st.integers(0, 1000), data=st.data())
def test_random_stacks_infer_shapes_round_trip_and_save(tmp_path_factory, c, h, seed, data):
    layers, cc, hh = [], c, h
    for _ in range(data.draw(st.integers(1, 5))):
        kind = data.draw(st.sampled_from(["conv2d", "max_pool2d", "avg_pool2d", "batch_norm2d",
                                          "relu", "tanh", "dropout"]))
        if kind == "conv2d":
            cout, k, pad = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(
                st.integers(0, 1))
            stride = data.draw(st.integers(1, 2))
            if hh + 2 * pad < k:
                continue
            layers.append({"type": kind, "in_channels": cc, "out_channels": cout,
                           "kernel_size": k, "padding": pad, "stride": stride})
            cc, hh = cout, (hh + 2 * pad - k) // stride + 1
        elif kind.endswith("pool2d"):
            if hh < 2:
                continue
            layers.append({"type": kind, "kernel_size": 2})
            hh //= 2
        elif kind == "batch_norm2d":
            layers.append({"type": kind, "num_features": cc})
        else:
            layers.append({"type": kind, **({"p": 0.5} if kind == "dropout" else {})})
    layers += [{"type": "flatten"}, {"type": "linear", "in_features": cc * hh * hh, "out_features": 2}]
    model = Model.from_config({"input_shape": [c, h, h], "layers": layers, "seed": seed})
    x = np.random.default_rng(seed).standard_normal((3, c, h, h)).astype(np.float32)
    values = x
    for name in model._order:  # every inferred shape matches what forward produces
        values = model.nodes[name].forward(values, training=False)
        assert values.shape[1:] == model.shapes[name]
    y = model.forward(x)
    assert y.shape == (3, 2)
    model.backward(np.ones_like(y))
    cfg = model.to_config()
    assert Model.from_config(cfg).to_config() == cfg
    path = tmp_path_factory.mktemp("stack") / "m.cnnf"
    model.save(path)
    np.testing.assert_array_equal(Model.load(path).forward(x, training=False),
                                  model.forward(x, training=False))
