"""`cnnframe summary` on training configs, model configs, saved models and run folders."""
import json
import sys
from pathlib import Path

import pytest

from cnnframe.cli import main
from cnnframe.graph import Model

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "configs").glob("*.toml"))

MODEL = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 3, "kernel_size": 3},
    {"type": "relu"}, {"type": "flatten"},
    {"type": "linear", "in_features": 108, "out_features": 4}]}


def _training(model_section, **top):
    return {"seed": 1, "epochs": 1, "batch_size": 8, "data": {"dataset": "shapes"},
            "optimizer": {"type": "sgd", "lr": 0.1}, "model": model_section, **top}


def _summary(capsys, path):
    assert main(["summary", str(path)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_there_are_example_configs():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_summary_of_each_example_training_config(capsys, path):
    out = _summary(capsys, path)
    section = tomllib.loads(path.read_text())["model"]
    model = Model.from_config(section)  # built directly from the [model] table
    assert out.strip() == model.summary().strip()
    assert f"Total params: {model.num_params():,}" in out
    for name in model.nodes:
        assert name in out


def test_training_config_with_a_model_file_relative_to_the_config(tmp_path, monkeypatch,
                                                                 capsys):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "net.json").write_text(json.dumps(MODEL))
    cfg = tmp_path / "exp" / "train.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps(_training({"file": "../nets/net.json"})))
    monkeypatch.chdir(tmp_path / "nets")  # not the config's folder
    out = _summary(capsys, cfg)
    assert out.strip() == Model.from_config(MODEL).summary().strip()
    assert "(3, 6, 6)" in out and "linear_1" in out


def test_model_config_and_saved_model_and_run_folder_still_work(tmp_path, capsys):
    cfg = tmp_path / "net.json"
    cfg.write_text(json.dumps(MODEL))
    expected = Model.from_config(MODEL).summary().strip()
    assert _summary(capsys, cfg).strip() == expected
    run = tmp_path / "run"
    run.mkdir()
    Model.from_config(MODEL).save(run / "model.cnnf")
    assert _summary(capsys, run / "model.cnnf").strip() == expected
    assert _summary(capsys, run).strip() == expected


@pytest.mark.parametrize("cfg, message", [
    (_training(dict(MODEL, layers=[{"type": "conv"}])), "unknown layer type 'conv'"),
    (_training(MODEL, epochz=3), "'epochz' (did you mean 'epochs'?)"),
    (_training({"file": "missing.toml"}), "missing.toml"),
], ids=["bad-layer", "bad-top-key", "missing-model-file"])
def test_bad_training_config_is_a_clear_error(tmp_path, capsys, cfg, message):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(cfg))
    assert main(["summary", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err
    if "missing" not in message:
        assert str(path) in err


def test_folder_without_a_model_is_a_clear_error(tmp_path, capsys):
    assert main(["summary", str(tmp_path)]) == 1
    assert "model.cnnf" in capsys.readouterr().err


def test_cli_summary_reads_configs_and_saved_models(tmp_path, capsys):
    cfg = tmp_path / "net.toml"
    cfg.write_text('input_shape = [1, 8, 8]\n\n[[layers]]\ntype = "conv2d"\nin_channels = 1\n'
                   'out_channels = 2\nkernel_size = 3\n\n[[layers]]\ntype = "flatten"\n')
    assert main(["summary", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "conv2d_1" in out and "(2, 6, 6)" in out and "3x3" in out
    saved = tmp_path / "net.cnnf"
    Model.from_file(cfg).save(saved)
    assert main(["summary", str(saved)]) == 0
    assert "flatten_1" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"input_shape": [1, 8, 8], "layers": [{"type": "conv"}]}')
    assert main(["summary", str(bad)]) == 1
    assert "unknown layer type 'conv'" in capsys.readouterr().err
