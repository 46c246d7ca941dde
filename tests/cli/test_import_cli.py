"""`cnnframe import MODEL.onnx OUT.cnnf [--input-shape C,H,W]`."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

from cnnframe.cli import main  # noqa: E402
from cnnframe.graph import Model  # noqa: E402
from onnx_graphs import assert_close, make_model, run_onnxruntime, save  # noqa: E402


def conv_relu(hw=(6, 6)):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["out"], name="relu")]
    return make_model(nodes, {"image": ["N", 2, *hw]}, ["out"],
                      {"w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32)})


def test_import_writes_a_loadable_model_and_prints_its_summary(tmp_path, capsys):
    proto = conv_relu()
    src, out = save(proto, tmp_path / "m.onnx"), tmp_path / "m.cnnf"
    assert main(["import", src, str(out)]) == 0
    printed = capsys.readouterr().out
    assert "conv2d" in printed and str(out) in printed
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    assert_close(Model.load(out).forward(x, training=False),
                 run_onnxruntime(proto, {"image": x})[0])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_input_shape_fixes_dynamic_axes(tmp_path, capsys):
    src, out = save(conv_relu(("H", "W")), tmp_path / "m.onnx"), tmp_path / "m.cnnf"
    assert main(["import", src, str(out)]) == 1
    err = capsys.readouterr().err
    assert "cnnframe import: error:" in err and "dynamic axis 'H'" in err
    assert "input_shape" in err
    assert not out.exists()
    assert main(["import", src, str(out), "--input-shape", "2,5,7"]) == 0
    assert Model.load(out).inputs == {"image": (2, 5, 7)}


@pytest.mark.parametrize("text", ["3,x", "0,4", ""])
def test_bad_input_shape_flag_exits_2(tmp_path, capsys, text):
    src = save(conv_relu(), tmp_path / "m.onnx")
    with pytest.raises(SystemExit) as exc:
        main(["import", src, str(tmp_path / "o.cnnf"), "--input-shape", text])
    assert exc.value.code == 2
    assert "without the batch axis" in capsys.readouterr().err


def test_malformed_file_is_one_error_line_and_nothing_written(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    out = tmp_path / "o.cnnf"
    assert main(["import", str(bad), str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.onnx" in err[0]
    assert not out.exists() and os.listdir(tmp_path) == ["bad.onnx"]
