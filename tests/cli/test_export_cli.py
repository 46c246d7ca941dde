"""`cnnframe export MODEL out.onnx [--opset N]`."""
import numpy as np
import pytest

from cnnframe.cli import main
from cnnframe.graph import Model
from fake_plugins import Double, FakeEntryPoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

NET = {"input_shape": [1, 6, 6], "seed": 1, "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3},
    {"type": "batch_norm2d", "num_features": 2}, {"type": "relu"}, {"type": "flatten"},
    {"type": "dropout", "p": 0.5}, {"type": "linear", "in_features": 32, "out_features": 3}]}


def onnx_outputs(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("where", ["run folder", "model.cnnf", "model.safetensors"])
def test_export_writes_an_onnx_file_computing_the_model(where, tmp_path, capsys, rng):
    model = Model.from_config(NET)
    model.buffers["batch_norm2d_1.running_var"][:] = [0.5, 2.0]
    if where == "run folder":
        (tmp_path / "run").mkdir()
        model.save(tmp_path / "run" / "model.cnnf")
        source = tmp_path / "run"
    else:
        source = model.save(tmp_path / where)
    out = tmp_path / "exported" / "m.onnx"
    assert main(["export", str(source), str(out), "--opset", "14"]) == 0, capsys.readouterr().err
    assert f"wrote {out} (ONNX opset 14): inputs input (N, 1, 6, 6); outputs linear_1 (N, 3)" \
        in capsys.readouterr().out
    assert onnx.load(out).opset_import[0].version == 14
    x = rng.standard_normal((3, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(onnx_outputs(out, x), model.forward(x, training=False),
                               rtol=1e-5, atol=1e-6)


def test_default_opset_and_config_input(tmp_path, capsys):
    import json
    cfg = tmp_path / "net.json"
    cfg.write_text(json.dumps(NET))
    assert main(["export", str(cfg), str(tmp_path / "m.onnx")]) == 0, capsys.readouterr().err
    assert onnx.load(tmp_path / "m.onnx").opset_import[0].version == 17


@pytest.mark.parametrize("opset", ["12", "22", "x"])
def test_bad_opset_is_a_usage_error(opset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "m.cnnf", str(tmp_path / "m.onnx"), "--opset", opset])
    assert exit_.value.code == 2
    assert "argument --opset: expected an integer from 13 to 21" in capsys.readouterr().err


def test_missing_model_is_one_error_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.cnnf"), str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnframe export: error: model file") and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_layer_without_export_is_one_error_line_naming_the_node(plugins, tmp_path, capsys):
    plugins(FakeEntryPoint("fake_double", "fake_pkg:Double", "fake-pkg", lambda: Double))
    model = Model.from_config({"input_shape": [3], "layers": [
        {"type": "relu"}, {"type": "fake_double", "name": "twice"}]})
    model.save(tmp_path / "m.cnnf")
    assert main(["export", str(tmp_path / "m.cnnf"), str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnframe export: error: node 'twice' (fake_double") and \
        "to_onnx" in err
    assert not (tmp_path / "m.onnx").exists()
