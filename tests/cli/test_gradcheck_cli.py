"""`cnnframe gradcheck`: exit status and printed report."""
import json
import sys
import textwrap

from cnnframe.cli import main

CONV = json.dumps({"in_channels": 2, "out_channels": 3, "kernel_size": 3})


def test_registered_layer_passes(capsys):
    assert main(["gradcheck", "conv2d", "--input-shape", "2,2,5,5", "--config", CONV]) == 0
    out = capsys.readouterr().out
    assert "gradcheck conv2d" in out and "passed" in out and "param weight" in out


def test_multi_input_and_seed_sweep(capsys):
    assert main(["gradcheck", "add", "--input-shape", "2,3,4,4", "--input-shape", "2,3,4,4",
                 "--seeds", "3"]) == 0
    assert "3 of 3 seeds passed" in capsys.readouterr().out


def test_module_class_spec_and_failure_exit_code(tmp_path, monkeypatch, capsys):
    (tmp_path / "buggy_layers.py").write_text(textwrap.dedent("""
        import numpy as np
        from cnnframe.layers.base import Layer

        class Double(Layer):
            def forward(self, x, training=True):
                return 2 * x

            def backward(self, grad_y):
                return -2 * grad_y          # sign flipped
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["gradcheck", "buggy_layers:Double", "--input-shape", "2,3,4,4"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "sign flipped" in out
    sys.modules.pop("buggy_layers", None)


def test_bad_arguments_exit_1(capsys):
    assert main(["gradcheck", "nosuchmodule_xyz:Layer", "--input-shape", "2,3"]) == 1
    assert main(["gradcheck", "conv2d", "--input-shape", "2,2,5,5", "--config", "{"]) == 1
    err = capsys.readouterr().err
    assert "nosuchmodule_xyz" in err and "JSON" in err


def test_module_in_the_current_directory_is_found_as_python_m_finds_it(tmp_path, monkeypatch,
                                                                        capsys):
    (tmp_path / "my_cwd_layer.py").write_text(textwrap.dedent("""
        from cnnframe import Layer

        class Triple(Layer):
            def forward(self, x, training=True):
                return 3 * x

            def backward(self, grad_y):
                return 3 * grad_y
    """))
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    try:
        assert main(["gradcheck", "my_cwd_layer:Triple", "--input-shape", "2,3"]) == 0
    finally:
        sys.modules.pop("my_cwd_layer", None)
    assert "gradcheck Triple: passed" in capsys.readouterr().out
    assert sys.path == path_before   # the current directory is put on sys.path only meanwhile
