"""Every bad config gives a clear ValueError naming the node (or the file)."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from cnnframe.graph import Model


def base():
    return {
        "inputs": {"image": [3, 8, 8]},
        "nodes": [
            {"name": "conv1", "type": "conv2d", "inputs": ["image"],
             "config": {"in_channels": 3, "out_channels": 4, "kernel_size": 3}},
            {"name": "act", "type": "relu", "inputs": ["conv1"]},
            {"name": "flat", "type": "flatten", "inputs": ["act"]},
            {"name": "fc", "type": "linear", "inputs": ["flat"],
             "config": {"in_features": 144, "out_features": 2}},
        ],
        "outputs": ["fc"],
    }


def edit(fn):
    cfg = base()
    fn(cfg)
    return cfg


def node(cfg, name):
    return next(n for n in cfg["nodes"] if n["name"] == name)


BAD = {
    "unknown layer type": (
        lambda c: node(c, "act").update(type="reluu"),
        r"node 'act': unknown layer type 'reluu' \(did you mean 'relu'\?\); known layer types: "),
    "unknown input": (
        lambda c: node(c, "act").update(inputs=["conv_1"]),
        r"node 'act': unknown input 'conv_1' \(did you mean 'conv1'\?\)"),
    "cycle": (
        lambda c: node(c, "conv1").update(type="identity", config={}, inputs=["act"]),
        r"cycle in the graph: (conv1 -> act -> conv1|act -> conv1 -> act)"),
    "shape mismatch": (
        lambda c: node(c, "fc")["config"].update(in_features=100),
        r"node 'fc' \(linear\): shape mismatch: input shape \[144\] from \['flat'\]: linear: "
        r"expects input shape \[in_features=100\]"),
    "channel mismatch": (
        lambda c: c["inputs"].update(image=[1, 8, 8]),
        r"node 'conv1' \(conv2d\): shape mismatch: input shape \[1, 8, 8\]"),
    "unknown config key": (
        lambda c: node(c, "conv1")["config"].update(kernal_size=3),
        r"node 'conv1' \(conv2d\): unknown config key 'kernal_size'; valid keys: in_channels, "
        r"out_channels, kernel_size, stride, padding, dilation, groups, bias, init, bias_init, seed"),
    "missing config key": (
        lambda c: node(c, "conv1")["config"].pop("kernel_size"),
        r"node 'conv1' \(conv2d\): missing required config key 'kernel_size'"),
    "bad config value": (
        lambda c: node(c, "conv1")["config"].update(stride=0),
        r"node 'conv1' \(conv2d\): stride must be >= 1"),
    "duplicate node names": (
        lambda c: node(c, "flat").update(name="act"),
        r"node 'act': duplicate node name"),
    "node named like an input": (
        lambda c: node(c, "conv1").update(name="image"),
        r"node 'image': the name is already used by a graph input"),
    "unknown output": (
        lambda c: c.update(outputs=["fc2"]),
        r"outputs: unknown node 'fc2' \(did you mean 'fc'\?\)"),
    "dead node": (
        lambda c: c["nodes"].append({"name": "spare", "type": "relu", "inputs": ["act"]}),
        r"node 'spare': does not feed any output"),
    "unused input": (
        lambda c: c["inputs"].update(extra=[2]),
        r"graph input 'extra' is not used by any node"),
    "wrong arity": (
        lambda c: node(c, "act").update(inputs=["conv1", "image"]),
        r"node 'act' \(relu\): takes 1 input\(s\), got 2"),
    "merge with one input": (
        lambda c: node(c, "act").update(type="add"),
        r"node 'act' \(add\): takes at least 2 inputs"),
    "unknown node key": (
        lambda c: node(c, "act").update(input=["conv1"]),
        r"node 'act': unknown key 'input' \(did you mean 'inputs'\?\); valid keys: name, type, "
        r"inputs, config"),
    "unknown top-level key": (
        lambda c: c.update(output=["fc"]),
        r"model config: unknown key 'output' \(did you mean 'outputs'\?\)"),
    "missing nodes": (lambda c: c.pop("nodes"), r"missing 'nodes'"),
    "bad input shape": (
        lambda c: c["inputs"].update(image=[3, 0, 8]),
        r"input 'image': shape must be a non-empty list of ints >= 1"),
    "bad dtype": (lambda c: c.update(dtype="float16"),
                  r"dtype must be one of float32, float64, got 'float16'"),
    "node name with a dot": (
        lambda c: node(c, "act").update(name="a.b"), r"'name' must be a non-empty string without '.'"),
    "missing type": (lambda c: node(c, "act").pop("type"), r"node 'act': each node needs a 'name' and a 'type'"),
    "config not a dict": (lambda c: node(c, "conv1").update(config=[3, 4]),
                          r"node 'conv1': 'config' must be an object"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_graph_configs(case):
    fn, match = BAD[case]
    cfg = edit(fn)
    with pytest.raises(ValueError, match=match):
        Model.from_config(cfg)


def test_the_base_config_is_valid_and_error_cases_do_not_modify_it():
    cfg = base()
    before = copy.deepcopy(cfg)
    assert Model.from_config(cfg).shapes["fc"] == (2,)
    assert cfg == before


@pytest.mark.parametrize("cfg,match", [
    ({"input_shape": [3, 4, 4], "layers": [{"type": "conv2d", "in_channels": 2, "out_channels": 1,
                                            "kernel_size": 1}]},
     r"node 'conv2d_1' \(conv2d\): shape mismatch"),
    ({"input_shape": [3, 4, 4], "layers": [{"type": "relu"}, {"type": "relux"}]},
     r"node 'relux_1': unknown layer type 'relux' \(did you mean 'relu'\?\)"),
    ({"input_shape": [3, 4, 4], "layers": [{"type": "relu", "inputs": ["x"]}]},
     r"layers\[0\] \(relu\): 'inputs' is not allowed in the sequential form"),
    ({"input_shape": [3, 4, 4], "layers": [{"type": "relu", "slope": 1}]},
     r"node 'relu_1' \(relu\): unknown config key 'slope'"),
    ({"input_shape": [3, 4, 4], "layers": []}, r"'layers' must be a non-empty list"),
    ({"input_shape": [3, 4, 4], "layers": [{"name": "x"}]}, r"layers\[0\]: each layer must be"),
    ({"input_shape": [3, 4, 4], "layers": [{"type": "relu"}], "nodes": []}, "not both"),
    ({"input_shape": [3, 4, 4], "layers": [{"type": "relu"}], "sead": 1},
     r"unknown key 'sead' \(did you mean 'seed'\?\)"),
])
def test_bad_sequential_configs(cfg, match):
    with pytest.raises(ValueError, match=match):
        Model.from_config(cfg)


def test_file_errors_name_the_file(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("input_shape = [3, 4, 4\n")
    with pytest.raises(ValueError, match=r"bad\.toml: invalid TOML"):
        Model.from_file(bad_toml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"input_shape": [3, 4, 4], "layers": [{"type": "relu"},]}')
    with pytest.raises(ValueError, match=r"bad\.json: invalid JSON"):
        Model.from_file(bad_json)
    wrong = tmp_path / "model.json"
    wrong.write_text('{"input_shape": [3, 4, 4], "layers": [{"type": "rellu"}]}')
    with pytest.raises(ValueError, match=r"model\.json: node 'rellu_1': unknown layer type"):
        Model.from_file(wrong)
    with pytest.raises(ValueError, match=r"\.yaml: model configs are \.json or \.toml"):
        Model.from_file(tmp_path / "m.yaml")
    with pytest.raises(FileNotFoundError):
        Model.from_file(tmp_path / "missing.toml")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        Model.from_file(listed)


# --- training configs: Model.from_file uses their [model] table --------------------------------

EXAMPLE_CONFIG = Path(__file__).parents[2] / "examples" / "configs" / "cifar10_small.toml"


def test_from_file_builds_a_training_configs_model_as_cnnframe_train_does(tmp_path):
    from cnnframe.train.config import load_config
    from cnnframe.train.runs import build_model
    path = tmp_path / "train.toml"
    path.write_text(EXAMPLE_CONFIG.read_text())
    model = Model.from_file(path)
    trained = build_model(load_config(str(path)))  # what `cnnframe train` starts from
    assert model.to_config() == trained.to_config()
    state, want = model.state_dict(), trained.state_dict()
    assert state.keys() == want.keys()
    for key in state:
        np.testing.assert_array_equal(state[key], want[key], err_msg=key)


def test_from_file_follows_a_training_configs_model_file(tmp_path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "net.json").write_text(json.dumps(base()))
    path = tmp_path / "train.toml"
    path.write_text('epochs = 1\nbatch_size = 8\n[model]\nfile = "nets/net.json"\n'
                    '[data]\ndataset = "shapes"\n[optimizer]\ntype = "sgd"\nlr = 0.1\n')
    assert Model.from_file(path).to_config()["nodes"] == Model.from_config(base()).to_config()[
        "nodes"]


@pytest.mark.parametrize("model_table, match", [
    ('file = "train.toml"', r"train\.toml \(the \[model\] file of .*train\.toml\) is a training "
                            "config"),
    ('file = "net.json"\nseed = 1', r"train\.toml: \[model\] with 'file' takes no other keys"),
    ('input_shape = [3, 4, 4]\nlayers = [{type = "rellu"}]',
     r"train\.toml \[model\]: node 'rellu_1': unknown layer type"),
])
def test_training_config_model_errors_name_the_file_and_table(tmp_path, model_table, match):
    (tmp_path / "net.json").write_text(json.dumps(base()))
    path = tmp_path / "train.toml"
    path.write_text(f"epochs = 1\n[model]\n{model_table}\n")
    with pytest.raises(ValueError, match=match):
        Model.from_file(path)
