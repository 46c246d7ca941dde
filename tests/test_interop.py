"""cnnframe.interop: .safetensors and PyTorch .pt weights as numpy dicts, and models saved as
.safetensors (config in the metadata); hostile files are refused before allocation."""
import builtins
import importlib.util
import json
import os
import struct

import numpy as np
import pytest

from cnnframe import interop
from cnnframe.graph import Model

# PyTorch is never a dependency of cnnframe (nor in the `test` extra): the tests reading
# real PyTorch objects run where it is installed and are skipped elsewhere.
# (found without importing it: torch's import is slow and brings its own OpenMP runtime)
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="needs torch (optional; never a dependency of cnnframe)")

safetensors_numpy = pytest.importorskip("safetensors.numpy")

NET = {"input_shape": [2, 6, 6], "layers": [
    {"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3},
    {"type": "batch_norm2d", "num_features": 3}, {"type": "relu"}, {"type": "flatten"},
    {"type": "linear", "in_features": 48, "out_features": 4}]}


def random_model(rng, cfg=NET):
    model = Model.from_config(cfg)
    for k, v in {**model.params, **model.buffers}.items():
        v[...] = rng.uniform(0.5, 2, v.shape) if "var" in k else rng.standard_normal(v.shape)
    return model


def write_raw_safetensors(path, header, data=b""):
    """A .safetensors file from a header dict and data bytes as given (for hostile files)."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def block_import(monkeypatch, *names):
    real = builtins.__import__

    def fake(name, *args, **kw):
        if any(name == n or name.startswith(n + ".") for n in names):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kw)
    monkeypatch.setattr(builtins, "__import__", fake)


# --- models as .safetensors ------------------------------------------------------------------
def test_model_safetensors_round_trip(tmp_path, rng):
    model = random_model(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = Model.load(path)
    assert again.to_config() == model.to_config()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(again.forward(x, training=False), model.forward(x, False))
    # an ordinary safetensors file: other tools read the weights under the state-dict keys
    plain = safetensors_numpy.load_file(str(path))
    assert set(plain) == set(model.state_dict())
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]  # no temporary file left


def test_model_save_keeps_cnnf_format_for_other_suffixes(tmp_path, rng):
    model = random_model(rng)
    model.save(tmp_path / "m.cnnf")
    with open(tmp_path / "m.cnnf", "rb") as f:
        assert f.read(2) == b"PK"  # the npz (zip) format, as before
    assert Model.load(tmp_path / "m.cnnf").to_config() == model.to_config()


def test_loading_weights_only_safetensors_as_a_model_says_what_to_do(tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors_numpy.save_file({"fc.weight": np.zeros((2, 2), np.float32)}, str(path))
    with pytest.raises(ValueError, match=r"w.safetensors: not a cnnframe model file.*"
                                         r"load_state_dict\(cnnframe.interop.read_weights"):
        Model.load(path)


def test_model_safetensors_with_weights_not_matching_its_config_is_refused(tmp_path, rng):
    model = random_model(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    meta, _ = interop.read_safetensors_header(path)
    state = model.state_dict()
    state["linear_1.weight"] = np.zeros((4, 5), np.float32)
    interop.write_safetensors(state, path, meta)
    with pytest.raises(ValueError, match=r"do not match the stored config.*linear_1.weight: "
                                         r"expected shape \(4, 48\), got \(4, 5\)"):
        Model.load(path)


# --- read_weights: .safetensors --------------------------------------------------------------
def test_read_weights_safetensors_feeds_load_state_dict(tmp_path, rng):
    model = random_model(rng)
    torch_names = {"conv2d_1": "0", "batch_norm2d_1": "1", "linear_1": "4"}
    state = {f"{torch_names[k.split('.')[0]]}.{k.split('.')[1]}": v
             for k, v in model.state_dict().items()}
    state["1.num_batches_tracked"] = np.array(10, np.int64)
    path = tmp_path / "w.safetensors"
    safetensors_numpy.save_file(state, str(path))
    read = interop.read_weights(path)
    assert list(read) == sorted(state)
    other = Model.from_config(NET)
    other.load_state_dict(read)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


def test_safetensors_keys_come_in_natural_order(tmp_path):
    keys = ["10.weight", "2.bias", "2.weight", "layer.10.a", "layer.9.b", "fc.weight"]
    path = tmp_path / "w.safetensors"
    safetensors_numpy.save_file({k: np.zeros(1, np.float32) for k in keys}, str(path))
    assert list(interop.read_weights(path)) == ["2.bias", "2.weight", "10.weight", "fc.weight",
                                                "layer.9.b", "layer.10.a"]


def test_bfloat16_tensors_are_widened_to_float32(tmp_path):
    values = np.array([1.5, -2.0, 0.15625, 2.0 ** 100], np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")  # exact in bfloat16
    header = {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}
    path = write_raw_safetensors(tmp_path / "b.safetensors", header, bits.tobytes())
    out = interop.read_weights(path)["w"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values.reshape(2, 2))


@pytest.mark.parametrize("header,data,match", [
    ({"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 16]}}, bytes(16),
     r"needs 4,398,046,511,104 bytes but data_offsets \[0, 16\] hold 16"),
    ({"w": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 1 << 32]}}, bytes(16),
     "beyond the end of the file"),
    ({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, bytes(2),
     "dtype 'F8_E4M3' is not supported"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "shape must be"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4), "data_offsets"),
    ({"w": [1, 2]}, b"", "expected dtype, shape and data_offsets"),
    ({"__metadata__": {"a": 1}}, b"", "__metadata__ must map strings"),
])
def test_hostile_safetensors_headers_are_refused_before_reading(tmp_path, header, data, match):
    path = write_raw_safetensors(tmp_path / "h.safetensors", header, data)
    with pytest.raises(ValueError, match=match):
        interop.read_weights(path)
    with pytest.raises(ValueError, match="h.safetensors"):
        Model.load(path)


@pytest.mark.parametrize("raw,match", [
    (b"abc", "shorter than its 8-byte header length"),
    (struct.pack("<Q", 1 << 40) + b"{}", "declares a 1,099,511,627,776-byte header"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "not JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
])
def test_malformed_safetensors_files_are_refused(tmp_path, raw, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        interop.read_weights(path)


def test_max_bytes_refuses_large_files_before_reading(tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors_numpy.save_file({"w": np.zeros(1000, np.float32)}, str(path))
    with pytest.raises(ValueError, match="hold 4,000 bytes, more than the limit of 3,999"):
        interop.read_weights(path, max_bytes=3999)
    assert interop.read_weights(path, max_bytes=4000)["w"].shape == (1000,)


def test_read_weights_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        interop.read_weights(tmp_path / "nope.safetensors")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"reads .safetensors, .pt and .pth files, not .npz"):
        interop.read_weights(tmp_path / "w.npz")


def test_missing_safetensors_package_gives_the_install_hint(tmp_path, monkeypatch, rng):
    block_import(monkeypatch, "safetensors")
    with pytest.raises(ImportError, match=r"pip install cnnframe\[onnx\]"):
        random_model(rng).save(tmp_path / "m.safetensors")
    assert not os.listdir(tmp_path)


# --- read_weights: PyTorch .pt ---------------------------------------------------------------
def test_missing_torch_gives_a_clear_message(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    path.write_bytes(b"PK")
    block_import(monkeypatch, "torch")
    with pytest.raises(ImportError, match=r"w.pt: reading PyTorch .pt/.pth files needs torch.*"
                                          r"safetensors"):
        interop.read_weights(path)


@needs_torch
def test_pt_state_dict_loads_into_cnnframe_and_matches_pytorch(tmp_path, rng):
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(48, 4))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.normal_()
    net.eval()
    path = tmp_path / "w.pth"
    torch.save({"epoch": 3, "state_dict": net.state_dict()}, path)  # a nested checkpoint
    model = Model.from_config(NET)
    loaded = model.load_state_dict(interop.read_weights(path))
    assert loaded["1.running_var"] == "batch_norm2d_1.running_var"
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x, training=False), expected, rtol=1e-5,
                               atol=1e-5)


@needs_torch
def test_pt_files_that_are_not_weights_are_refused(tmp_path):
    import torch
    whole = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), whole)  # a pickled module: weights_only refuses it
    with pytest.raises(ValueError, match=r"model.pt: torch.load\(weights_only=True\) failed"):
        interop.read_weights(whole)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(ValueError, match="holds a list, not a dict of tensors"):
        interop.read_weights(listed)
    nested = tmp_path / "nested.pt"
    torch.save({"optimizer": {"lr": 0.1}, "step": 3}, nested)
    with pytest.raises(ValueError, match="no state dict found.*'optimizer', 'step'"):
        interop.read_weights(nested)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(b"\x80\x02not a zip")
    with pytest.raises(ValueError, match="not a PyTorch zip file"):
        interop.read_weights(legacy)


@needs_torch
def test_pt_size_limit_is_checked_from_the_zip_directory(tmp_path):
    import torch
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(10000)}, path)
    with pytest.raises(ValueError, match="more than the limit of 1,000 bytes"):
        interop.read_weights(path, max_bytes=1000)
    assert interop.read_weights(path)["w"].shape == (10000,)
