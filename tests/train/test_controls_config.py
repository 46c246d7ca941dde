"""The training controls from a config file: schema errors, and `cnnframe train` with many
controls at once (the README's example), stopped by --max-steps and resumed exactly."""
import copy

import numpy as np
import pytest

from cnnframe.cli import main
from cnnframe.graph import Model
from cnnframe.train import History, build_controls, load_config, load_state, validate_config
from cnnframe.train.runs import build_model
from cnnframe.train.checkpoint import BEST_NAME

CONFIG = """
seed = 1
epochs = 3
batch_size = 16
freeze = ["stem"]

[model]
input_shape = [3, 12, 12]
layers = [
    {type = "conv2d", name = "stem", in_channels = 3, out_channels = 4, kernel_size = 3},
    {type = "conv2d", in_channels = 4, out_channels = 6, kernel_size = 3, init = "dirac"},
    {type = "batch_norm2d", name = "bn1", num_features = 6},
    {type = "relu"},
    {type = "max_pool2d", kernel_size = 2},
    {type = "flatten"},
    {type = "linear", in_features = 96, out_features = 8, bias_init = "lecun_uniform"},
]

[data]
dataset = "shapes"
normalize = {mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25]}
options = {size = 12, train = {n = 96}, test = {n = 48}}

[optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
clip_grad_norm = 1.0
lookahead = {k = 4, alpha = 0.5}

[[optimizer.groups]]
params = ["*.bias", "bn*"]
weight_decay = 0.0

[schedule]
type = "plateau"
monitor = "val_loss"
patience = 1
factor = 0.5

[ema]
decay = 0.9
warmup = true
save = true

[early_stopping]
monitor = "val_accuracy"
patience = 2
restore_best = true

[checkpoint]
keep_best = {monitor = "val_accuracy", mode = "max"}
"""


def test_many_controls_at_once_resume_exactly_through_the_cli(tmp_path, capsys):
    cfg = tmp_path / "controls.toml"
    cfg.write_text(CONFIG)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(ref), "--no-progress"]) == 0
    assert main(["train", str(cfg), "--out", str(run), "--no-progress", "--max-steps", "8"]) == 0
    assert main(["train", str(cfg), "--out", str(run), "--no-progress", "--resume"]) == 0
    want, got = Model.load(ref / "model.cnnf"), Model.load(run / "model.cnnf")
    for k, v in want.state_dict().items():
        assert np.array_equal(v, got.state_dict()[k]), k
    for col in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "step"):
        assert History.from_csv(ref / "metrics.csv")[col] == \
            History.from_csv(run / "metrics.csv")[col], col
    best_ref = load_state(ref / "checkpoints" / BEST_NAME)
    best_run = load_state(run / "checkpoints" / BEST_NAME)
    assert best_ref["trainer"]["best"] == best_run["trainer"]["best"]
    # The frozen stem kept its initial weights; model.cnnf holds the EMA weights.
    initial = build_model(load_config(cfg))
    np.testing.assert_array_equal(want.params["stem.weight"], initial.params["stem.weight"])
    last = load_state(sorted((ref / "checkpoints").glob("ckpt-*.npz"))[-1])
    ema = {k[len("average/"):]: v for k, v in last["ema"].items() if k.startswith("average/")}
    for k, v in want.state_dict().items():
        assert np.array_equal(v, ema[k]), k


BASE = validate_config({"model": {"input_shape": [4], "layers": [
    {"type": "linear", "in_features": 4, "out_features": 2}]}, "data": {"dataset": "shapes"},
    "optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 1, "batch_size": 2})


@pytest.mark.parametrize("edit,error,match", [
    (lambda c: c.update(ema={"decay": 0.9, "decy": 1}), ValueError,
     r"'decy'.*in \[ema\]; valid keys: decay, every_steps, warmup, buffers, evaluate, save"),
    (lambda c: c.update(ema={"every_steps": 2}), ValueError, r"\[ema\] needs 'decay'"),
    (lambda c: c.update(ema={"decay": 0.9, "save": "yes"}), ValueError, "ema.save must be true"),
    (lambda c: c.update(early_stopping={"patiense": 3}), ValueError,
     r"'patiense' \(did you mean 'patience'\?\) in \[early_stopping\]; valid keys: monitor"),
    (lambda c: c.update(early_stopping=3), TypeError, r"\[early_stopping\] must be a table"),
    (lambda c: c["checkpoint"].update(keep_best={"mode": "max"}), ValueError,
     "keep_best must be a metric name or a table"),
    (lambda c: c["checkpoint"].update(keep_best={"monitor": "val_loss", "delta": 1}),
     ValueError, r"'delta'.*checkpoint.keep_best; valid keys: monitor, mode, min_delta"),
    (lambda c: c.update(freeze=[3]), ValueError, "freeze must be a list of parameter patterns"),
    (lambda c: c.update(frieze=["x"]), ValueError, r"'frieze' \(did you mean 'freeze'\?\)"),
])
def test_bad_control_config_names_the_key(edit, error, match):
    cfg = copy.deepcopy(BASE)
    edit(cfg)
    with pytest.raises(error, match=match):
        validate_config(cfg)


def test_build_controls_from_a_config():
    cfg = copy.deepcopy(BASE)
    cfg.update(freeze="linear_1.bias", ema={"decay": 0.5, "evaluate": False},
               early_stopping={"monitor": "loss", "patience": 2})
    cfg["checkpoint"]["keep_best"] = "val_loss"
    cfg = validate_config(cfg)
    model = Model.from_config(cfg["model"])
    kw = build_controls(cfg, model)
    assert model.frozen_params == {"linear_1.bias"}
    assert kw["ema"].decay == 0.5 and kw["evaluate_ema"] is False and kw["save_ema"] is False
    assert [type(c).__name__ for c in kw["callbacks"]] == ["EarlyStopping"]
    assert kw["callbacks"][0].patience == 2 and kw["keep_best"] == {"monitor": "val_loss"}
    cfg["freeze"] = ["nothing*"]
    with pytest.raises(ValueError, match="'nothing\\*' selects no parameter"):
        build_controls(cfg, Model.from_config(cfg["model"]))
