"""Model.load_state_dict with PyTorch-style keys: nested module paths, num_batches_tracked,
matching by mapping, name, node name and graph order, and the table shown on mismatches."""
import importlib.util
import json

import numpy as np
import pytest

from cnnframe.graph import Model

# PyTorch is never a dependency of cnnframe (nor in the `test` extra): the tests reading
# real PyTorch objects run where it is installed and are skipped elsewhere.
# (found without importing it: torch's import is slow and brings its own OpenMP runtime)
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="needs torch (optional; never a dependency of cnnframe)")

# A ResNet-style net: stem, one basic block with a 1x1 projection shortcut, head.
RESNET = {
    "inputs": {"image": [3, 8, 8]},
    "nodes": [
        {"name": "stem", "type": "conv2d", "inputs": ["image"],
         "config": {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1,
                    "bias": False}},
        {"name": "stem_bn", "type": "batch_norm2d", "config": {"num_features": 4}},
        {"name": "stem_relu", "type": "relu"},
        {"name": "b1_conv1", "type": "conv2d",
         "config": {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2,
                    "padding": 1, "bias": False}},
        {"name": "b1_bn1", "type": "batch_norm2d", "config": {"num_features": 6}},
        {"name": "b1_relu1", "type": "relu"},
        {"name": "b1_conv2", "type": "conv2d",
         "config": {"in_channels": 6, "out_channels": 6, "kernel_size": 3, "padding": 1,
                    "bias": False}},
        {"name": "b1_bn2", "type": "batch_norm2d", "config": {"num_features": 6}},
        {"name": "b1_proj", "type": "conv2d", "inputs": ["stem_relu"],
         "config": {"in_channels": 4, "out_channels": 6, "kernel_size": 1, "stride": 2,
                    "bias": False}},
        {"name": "b1_proj_bn", "type": "batch_norm2d", "config": {"num_features": 6}},
        {"name": "b1_add", "type": "add", "inputs": ["b1_bn2", "b1_proj_bn"]},
        {"name": "b1_out", "type": "relu"},
        {"name": "pool", "type": "global_avg_pool2d"},
        {"name": "fc", "type": "linear", "config": {"in_features": 6, "out_features": 5}},
    ],
    "outputs": ["fc"],
}
# node -> the PyTorch module path of torchvision's ResNet for it (in its state-dict order)
RESNET_TORCH_NAMES = {
    "stem": "conv1", "stem_bn": "bn1", "b1_conv1": "layer1.0.conv1", "b1_bn1": "layer1.0.bn1",
    "b1_conv2": "layer1.0.conv2", "b1_bn2": "layer1.0.bn2", "b1_proj": "layer1.0.downsample.0",
    "b1_proj_bn": "layer1.0.downsample.1", "fc": "fc"}
PLAIN = {"input_shape": [2, 6, 6], "layers": [
    {"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3},
    {"type": "batch_norm2d", "num_features": 3}, {"type": "relu"}, {"type": "flatten"},
    {"type": "linear", "in_features": 48, "out_features": 4}]}
# nn.Sequential(conv, bn, relu, flatten, linear): modules named by their index
PLAIN_TORCH_NAMES = {"conv2d_1": "0", "batch_norm2d_1": "1", "linear_1": "4"}


def torch_style_state(model, module_of, rng, dtype=np.float32):
    """A PyTorch-style state dict for `model` built in numpy: module paths from `module_of`,
    PyTorch's key order (parameters, then buffers, then num_batches_tracked), random values.

    Returns (state, expected) where expected maps model keys to the values loaded there."""
    state, expected = {}, {}
    for node, module in module_of.items():
        layer = model.nodes[node]
        for key, arr in [*layer.params.items(), *layer.buffers.items()]:
            value = (rng.uniform(0.5, 2, arr.shape) if key == "running_var"
                     else rng.standard_normal(arr.shape)).astype(dtype)
            state[f"{module}.{key}"] = value
            expected[f"{node}.{key}"] = value
        if "running_mean" in layer.buffers:
            state[f"{module}.num_batches_tracked"] = np.array(7, np.int64)
    return state, expected


def assert_loaded(model, expected):
    current = {**model.params, **model.buffers}
    assert set(current) == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(current[k], v.astype(current[k].dtype), err_msg=k)


@pytest.mark.parametrize("config,names", [(RESNET, RESNET_TORCH_NAMES), (PLAIN, PLAIN_TORCH_NAMES)],
                         ids=["resnet", "plain"])
def test_pytorch_names_load_by_graph_order(config, names, rng):
    model = Model.from_config(config)
    state, expected = torch_style_state(model, names, rng)
    loaded = model.load_state_dict(state)
    assert_loaded(model, expected)
    assert not any(k.endswith("num_batches_tracked") for k in loaded)
    for node, module in names.items():
        assert loaded[f"{module}.weight"] == f"{node}.weight"


def test_float64_values_are_converted_and_int_counters_dropped(rng):
    model = Model.from_config(PLAIN)
    state, expected = torch_style_state(model, PLAIN_TORCH_NAMES, rng, dtype=np.float64)
    model.load_state_dict(state)
    assert_loaded(model, expected)
    assert all(p.dtype == np.float32 for p in model.params.values())


def test_node_names_spelled_like_module_paths_match_whatever_the_order(rng):
    renamed = {"b1_bn1": "layer1_0_bn1", "b1_proj_bn": "layer1_0_downsample_1"}
    text = json.dumps(RESNET)
    for old, new in renamed.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    model = Model.from_config(json.loads(text))
    names = {renamed.get(node, node): module for node, module in RESNET_TORCH_NAMES.items()}
    state, expected = torch_style_state(model, names, rng)
    state = dict(reversed(list(state.items())))  # graph order cannot match now
    with pytest.raises(ValueError, match="mismatch"):
        model.load_state_dict(state)
    # the renamed nodes match by name; the rest through module path -> node name
    mapping = {module: node for node, module in names.items() if node not in renamed.values()}
    loaded = model.load_state_dict(state, mapping=mapping)
    assert loaded["layer1.0.downsample.1.running_var"] == "layer1_0_downsample_1.running_var"
    assert loaded["layer1.0.bn1.weight"] == "layer1_0_bn1.weight"
    assert_loaded(model, expected)


def test_mapping_dict_of_full_keys_and_callable(rng):
    model = Model.from_config(PLAIN)
    state, expected = torch_style_state(model, PLAIN_TORCH_NAMES, rng)
    renamed = {f"net.{k}": v for k, v in state.items()}
    full = {f"net.{module}.{k.split('.', 1)[1]}": k for k in expected
            for node, module in PLAIN_TORCH_NAMES.items() if k.split(".")[0] == node}
    model.load_state_dict(renamed, mapping=full)
    assert_loaded(model, expected)

    other = Model.from_config(PLAIN)
    back = {module: node for node, module in PLAIN_TORCH_NAMES.items()}

    def by_function(key):
        _, module, param = key.split(".")
        return None if param == "num_batches_tracked" else f"{back[module]}.{param}"
    other.load_state_dict(renamed, mapping=by_function)
    assert_loaded(other, expected)


def test_mapping_to_none_drops_a_key_and_strict_false_keeps_missing_params(rng):
    model = Model.from_config(PLAIN)
    state, expected = torch_style_state(model, PLAIN_TORCH_NAMES, rng)
    before = model.params["linear_1.bias"].copy()
    model.load_state_dict(state, mapping={"4.bias": None}, strict=False)
    np.testing.assert_array_equal(model.params["linear_1.bias"], before)
    np.testing.assert_array_equal(model.params["linear_1.weight"], expected["linear_1.weight"])
    with pytest.raises(ValueError, match=r"missing keys \['linear_1.bias'\]"):
        model.load_state_dict(state, mapping={"4.bias": None})


def test_shape_mismatch_shows_the_table_and_loads_nothing(rng):
    model = Model.from_config(RESNET)
    state, _ = torch_style_state(model, RESNET_TORCH_NAMES, rng)
    state["fc.weight"] = np.zeros((5, 7), np.float32)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    msg = str(err.value)
    assert "shape mismatch (fc.weight: expected (5, 6), got (5, 7))" in msg.splitlines()[0]
    row = next(line for line in msg.splitlines() if line.strip().startswith("fc.weight"))
    assert row.split()[-2:] == ["shape", "mismatch"] and "(5, 7)" in row and "(5, 6)" in row
    ok_row = next(line for line in msg.splitlines()
                  if line.strip().startswith("layer1.0.downsample.0.weight"))
    assert "b1_proj.weight" in ok_row and "ok (order)" in ok_row
    assert "state key" in msg and "mapping=" in msg
    for k, v in model.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(v, before[k])


def test_missing_module_and_unexpected_key_are_listed(rng):
    model = Model.from_config(PLAIN)
    state, _ = torch_style_state(model, PLAIN_TORCH_NAMES, rng)
    del state["4.weight"], state["4.bias"]
    state["extra_head.scale"] = np.ones(3, np.float32)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    msg = str(err.value)
    assert "missing keys ['linear_1.weight', 'linear_1.bias']" in msg
    assert "kind mismatch" in msg  # extra_head pairs with the linear node by order
    lines = {line.split()[0]: line for line in msg.splitlines()[2:] if line.strip()}
    assert lines["-"].rstrip().endswith("missing")


def test_unexpected_key_without_a_node_left(rng):
    model = Model.from_config(PLAIN)
    state, expected = torch_style_state(model, PLAIN_TORCH_NAMES, rng)
    state["5.weight"] = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"unexpected keys \['5.weight'\]"):
        model.load_state_dict(state)
    model.load_state_dict(state, strict=False)
    assert_loaded(model, expected)


def test_modules_in_another_order_are_a_kind_mismatch_not_a_silent_swap(rng):
    model = Model.from_config(PLAIN)
    state, _ = torch_style_state(model, PLAIN_TORCH_NAMES, rng)
    swapped = {k: v for k, v in state.items() if k.startswith("1.")}
    swapped.update({k: v for k, v in state.items() if not k.startswith("1.")})
    with pytest.raises(ValueError, match=r"kind mismatch: 1 has weight, bias, running_mean, "
                                         r"running_var; node 'conv2d_1' \(conv2d\) has weight, "
                                         r"bias"):
        model.load_state_dict(swapped, strict=False)


def test_mapping_errors(rng):
    model = Model.from_config(PLAIN)
    state, _ = torch_style_state(model, PLAIN_TORCH_NAMES, rng)
    with pytest.raises(ValueError, match=r"0.weight: mapped to 'conv9.weight', which is not"):
        model.load_state_dict(state, mapping={"0.weight": "conv9.weight"})
    with pytest.raises(ValueError, match=r"0.bias: 'conv2d_1.bias' is also given by '0.weight'"):
        model.load_state_dict(state, mapping={"0.weight": "conv2d_1.bias"})
    with pytest.raises(TypeError, match="mapping must be a dict or a callable"):
        model.load_state_dict(state, mapping=["0.weight"])
    with pytest.raises(TypeError, match="expected floats"):
        model.load_state_dict({**model.state_dict(), "conv2d_1.bias": np.array(["a", "b", "c"])})


def test_cnnframe_names_still_load_and_ignore_num_batches_tracked(rng):
    model = Model.from_config(RESNET)
    state = {k: rng.standard_normal(v.shape).astype(np.float32)
             for k, v in model.state_dict().items()}
    state["stem_bn.num_batches_tracked"] = np.array(3)
    assert model.load_state_dict(state) == {k: k for k in state if "num_batches" not in k}
    assert_loaded(model, {k: v for k, v in state.items() if "num_batches" not in k})


@needs_torch
def test_torch_tensors_are_accepted(rng):
    import torch
    model = Model.from_config(PLAIN)
    state, expected = torch_style_state(model, PLAIN_TORCH_NAMES, rng)
    tensors = {k: torch.from_numpy(v).requires_grad_(v.dtype.kind == "f") for k, v in
               state.items()}
    model.load_state_dict(tensors)
    assert_loaded(model, expected)
