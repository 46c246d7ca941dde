"""Saving and loading models: round trips, atomic writes, and damaged or foreign files."""
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from cnnframe.graph import Model
from cnnframe.graph.io import CONFIG_KEY, FORMAT_KEY


def trained_model(rng, dtype="float32"):
    cfg = {"input_shape": [2, 6, 6], "dtype": dtype, "layers": [
        {"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"type": "batch_norm2d", "num_features": 3},
        {"type": "leaky_relu", "negative_slope": 0.05},
        {"type": "avg_pool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.1},
        {"type": "linear", "in_features": 27, "out_features": 4},
        {"type": "batch_norm1d", "num_features": 4}]}
    model = Model.from_config(cfg)  # unseeded: weights exist only in the saved file
    x = rng.standard_normal((5, 2, 6, 6))
    for _ in range(3):
        y = model.forward(x)
        model.backward(np.ones_like(y))
        for k, p in model.params.items():
            p -= 0.05 * model.grads[k]
    return model, x


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, rng, dtype):
    model, x = trained_model(rng, dtype)
    path = tmp_path / "model.cnnf"
    assert model.save(path) == str(path)
    loaded = Model.load(path)
    assert loaded.to_config() == model.to_config()
    assert loaded.dtype == model.dtype
    for k, v in {**model.params, **model.buffers}.items():
        ref = loaded.params.get(k, loaded.buffers.get(k))
        np.testing.assert_array_equal(ref, v)
        assert ref.dtype == v.dtype
    np.testing.assert_array_equal(loaded.forward(x, training=False), model.forward(x, training=False))
    assert os.listdir(tmp_path) == ["model.cnnf"]  # no temporary files left behind


def test_the_file_is_a_plain_npz_without_pickles(tmp_path, rng):
    model, _ = trained_model(rng)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as data:
        assert int(data[FORMAT_KEY][0]) == 1
        cfg = json.loads(data[CONFIG_KEY].tobytes().decode())
        assert cfg == model.to_config()
        assert set(data.files) == {FORMAT_KEY, CONFIG_KEY, *model.params, *model.buffers}


def test_save_replaces_an_existing_file_atomically(tmp_path, rng, monkeypatch):
    model, x = trained_model(rng)
    path = tmp_path / "m.cnnf"
    path.write_bytes(b"old contents")
    model.save(path)
    assert Model.load(path).to_config() == model.to_config()

    def exploding_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    good = path.read_bytes()
    monkeypatch.setattr(np, "savez", exploding_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == good          # the old file is untouched
    assert os.listdir(tmp_path) == ["m.cnnf"]  # and the temporary file is gone


def test_every_truncation_gives_a_value_error_naming_the_file(tmp_path, rng):
    model, _ = trained_model(rng)
    path = tmp_path / "m.cnnf"
    model.save(path)
    blob = path.read_bytes()
    cut = tmp_path / "cut.cnnf"
    for size in sorted({0, 1, 10, 100, len(blob) // 3, len(blob) // 2, len(blob) - 200,
                        len(blob) - 22, len(blob) - 1}):
        cut.write_bytes(blob[:size])
        with pytest.raises(ValueError, match=r"cut\.cnnf: "):
            Model.load(cut)


def test_corrupted_bytes_give_a_value_error(tmp_path, rng):
    model, _ = trained_model(rng)
    path = tmp_path / "m.cnnf"
    model.save(path)
    blob = bytearray(path.read_bytes())
    r = np.random.default_rng(0)
    bad = tmp_path / "bad.cnnf"
    for _ in range(20):
        damaged = bytearray(blob)
        for i in r.integers(0, len(blob), 8):
            damaged[i] ^= 0xFF
        bad.write_bytes(bytes(damaged))
        try:
            Model.load(bad)  # a flip inside a stored weight is not detectable: then it loads
        except ValueError as exc:
            assert "bad.cnnf" in str(exc)


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("case", ["text", "npy", "pickle", "zip", "npz_without_keys", "bad_json",
                                  "bad_version", "bad_config", "missing_weights",
                                  "pickled_object_array"])
def test_foreign_files_give_a_clear_value_error(tmp_path, rng, case):
    model, _ = trained_model(rng)
    cfg = json.dumps(model.to_config()).encode()
    weights = {**model.state_dict()}
    meta = {FORMAT_KEY: np.array([1]), CONFIG_KEY: np.frombuffer(cfg, np.uint8)}
    path = tmp_path / f"{case}.cnnf"
    if case == "text":
        path.write_text("hello, I am not a model\n")
    elif case == "npy":
        np.save(open(path, "wb"), np.arange(3))
    elif case == "pickle":
        path.write_bytes(pickle.dumps({"weights": [1, 2]}))
    elif case == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hi")
    elif case == "npz_without_keys":
        path.write_bytes(npz_bytes(a=np.zeros(2)))
    elif case == "bad_json":
        path.write_bytes(npz_bytes(**weights, **{**meta, CONFIG_KEY: np.frombuffer(b"{nope", np.uint8)}))
    elif case == "bad_version":
        path.write_bytes(npz_bytes(**weights, **{**meta, FORMAT_KEY: np.array([99])}))
    elif case == "bad_config":
        bad = json.dumps({"input_shape": [2, 6, 6],
                          "layers": [{"type": "relu", "bogus": 1}]}).encode()
        path.write_bytes(npz_bytes(**weights, **{**meta, CONFIG_KEY: np.frombuffer(bad, np.uint8)}))
    elif case == "missing_weights":
        weights.pop(next(iter(weights)))
        path.write_bytes(npz_bytes(**weights, **meta))
    elif case == "pickled_object_array":
        weights[next(iter(weights))] = np.array([{"a": 1}], dtype=object)
        path.write_bytes(npz_bytes(**weights, **meta))
    expected = {"bad_version": "format version 99 is not supported",
                "bad_config": "corrupted or incompatible model config",
                "missing_weights": "stored weights do not match the stored config"}
    with pytest.raises(ValueError, match=expected.get(case)) as info:
        Model.load(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.cnnf"):
        Model.load(tmp_path / "missing.cnnf")


@pytest.mark.parametrize("content", [b"hello, I am not a model\n", pickle.dumps({"w": [1, 2]}),
                                     bytes(range(256)) * 4, b""])
def test_a_file_that_is_not_a_model_says_so_without_pickle_advice(tmp_path, content):
    path = tmp_path / "garbage.cnnf"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"garbage\.cnnf: not a cnnframe model file") as info:
        Model.load(path)
    assert "pickle=" not in str(info.value)  # never suggest allow_pickle=True


def test_a_missing_plugin_layer_is_named_not_called_corrupted(tmp_path, rng):
    from cnnframe.layers.activations import ReLU
    from cnnframe.registry import register_layer, unregister_layer

    @register_layer("io_test_plugin_relu")
    class PluginReLU(ReLU):
        pass

    try:
        model = Model.from_config({"input_shape": [2, 3, 3], "layers": [
            {"type": "conv2d", "in_channels": 2, "out_channels": 2, "kernel_size": 1},
            {"type": "io_test_plugin_relu"}]})
        model.save(tmp_path / "m.cnnf")
    finally:
        unregister_layer("io_test_plugin_relu")  # as if its package were uninstalled
    with pytest.raises(ValueError, match=r"m\.cnnf: .*layer type 'io_test_plugin_relu' "
                       r"\(node '[^']+'\).* plugin package .* is not installed") as info:
        Model.load(tmp_path / "m.cnnf")
    assert "corrupt" not in str(info.value)


def test_load_accepts_a_run_folder_as_the_cli_does(tmp_path, rng):
    model, x = trained_model(rng)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.cnnf")
    loaded = Model.load(run)
    np.testing.assert_array_equal(loaded.forward(x, training=False),
                                  model.forward(x, training=False))
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"unfinished is a folder without model\.cnnf"):
        Model.load(tmp_path / "unfinished")


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_saved_models_get_the_mode_open_would_give(tmp_path, rng, umask):
    model, _ = trained_model(rng)
    old = os.umask(umask)
    try:
        model.save(tmp_path / "m.cnnf")
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old)
    want = os.stat(tmp_path / "plain").st_mode & 0o777
    assert want == 0o666 & ~umask
    assert os.stat(tmp_path / "m.cnnf").st_mode & 0o777 == want
