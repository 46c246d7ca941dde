"""examples/configs/cifar10_fast*.toml (airbench's recipe) end to end on a tiny CIFAR-10
folder: the whitening `init`, frozen layers, EMA, alternating flip, piecewise-linear lr, exact
resume and `cnnframe evaluate --tta multicrop`."""
from pathlib import Path

import numpy as np
import pytest
from dataset_writers import write_cifar_folder

from cnnframe.cli import main
from cnnframe.data import build_transforms
from cnnframe.graph import Model
from cnnframe.layers.data_init import sample_images, whitening_weights
from cnnframe.train import History, load_config
from cnnframe.train.runs import build_model, eval_transform_config, load_datasets

CONFIGS = Path(__file__).parents[2] / "examples" / "configs"
FAST = [CONFIGS / "cifar10_fast.toml", CONFIGS / "cifar10_fast_short.toml"]


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A class-per-folder CIFAR-10 copy of random images: 2 per class to train, 1 to test."""
    pytest.importorskip("PIL.Image")
    monkeypatch.setenv("CNNFRAME_CACHE", str(tmp_path / "cache"))
    return write_cifar_folder(tmp_path / "cifar10")


def train(config, root, out, *extra):
    return main(["--threads", "1", "train", str(config), "--data-dir", str(root), "--out",
                 str(out), "--batch-size", "8", "--no-progress", *extra])


@pytest.mark.parametrize("config", FAST, ids=lambda p: p.stem)
def test_fast_config_trains_with_a_whitened_frozen_first_conv(config, cifar_root, tmp_path,
                                                              capsys):
    cfg = load_config(config)
    assert cfg["init"][0]["type"] == "whitening" and cfg["ema"]["save"]
    run = tmp_path / "run"
    assert train(config, cifar_root, run, "--epochs", "2") == 0  # 6 steps: 1 EMA update
    out = capsys.readouterr().out
    assert "init from data in" in out and "epoch 2/2" in out
    # The saved model (the EMA of the weights) has the whitening filters of the training
    # images, untouched by training (frozen): all 20 images, as samples > 20.
    train_set, _ = load_datasets({**cfg, "data": {**cfg["data"], "root": str(cifar_root)}})
    x = sample_images(train_set, 5000, cfg["seed"],
                      build_transforms(eval_transform_config(cfg)))
    saved = Model.load(run / "model.cnnf")
    np.testing.assert_allclose(saved.params["whiten.weight"],
                               whitening_weights(x, 24, 2, eps=5e-4), rtol=1e-5, atol=1e-6)
    assert (saved.params["whiten.bias"] == 0).all()
    assert (saved.params["b1_bn1.weight"] == 1).all()  # frozen batch-norm scales
    assert not (saved.params["b1_bn1.bias"] == 0).all()  # trained (and averaged in)
    # what `cnnframe train` builds: build_model with the training set runs the init
    model = build_model({**cfg}, train_set)
    np.testing.assert_array_equal(model.params["whiten.weight"], saved.params["whiten.weight"])
    assert main(["evaluate", str(run), "--tta", "multicrop", "--out", str(tmp_path)]) == 0
    assert "test (10 images, multicrop TTA): accuracy" in capsys.readouterr().out


def test_a_fast_run_resumed_ends_as_an_uninterrupted_one(cifar_root, tmp_path):
    config = CONFIGS / "cifar10_fast_short.toml"
    assert train(config, cifar_root, tmp_path / "whole", "--epochs", "2") == 0
    assert train(config, cifar_root, tmp_path / "parts", "--epochs", "2", "--max-steps",
                 "4") == 0
    assert train(config, cifar_root, tmp_path / "parts", "--epochs", "2", "--resume") == 0
    whole = Model.load(tmp_path / "whole" / "model.cnnf").state_dict()
    parts = Model.load(tmp_path / "parts" / "model.cnnf").state_dict()
    assert whole.keys() == parts.keys()
    for k in whole:
        np.testing.assert_array_equal(parts[k], whole[k], err_msg=k)
    assert History.from_csv(tmp_path / "parts" / "metrics.csv")["epoch"] == [1, 2]


def test_a_bad_init_node_is_a_clear_error_before_training(cifar_root, tmp_path, capsys):
    text = (CONFIGS / "cifar10_fast_short.toml").read_text().replace(
        'node = "whiten"', 'node = "whitener"')
    (tmp_path / "bad.toml").write_text(text)
    assert train(tmp_path / "bad.toml", cifar_root, tmp_path / "run") != 0
    assert "init[0]: whiten_conv: no node 'whitener'; nodes: whiten, " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
