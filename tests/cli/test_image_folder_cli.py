"""`cnnframe train` on a folder of mixed-size images with examples/configs/image_folder.toml:
one config line names the size; the validation split is recorded and reused (issue 23)."""
import json
from pathlib import Path

import numpy as np
import pytest
from dataset_writers import write_mixed_image_folder

from cnnframe.cli import main
from cnnframe.graph import Model
from cnnframe.train import History, load_config

pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")
EXAMPLE = Path(__file__).parents[2] / "examples" / "configs" / "image_folder.toml"


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """A folder of cats (15 images: 10 of 5 sizes, CMYK, 16-bit, palette, RGBA, EXIF-rotated)
    and dogs (10), with no train/ or test/ folder; the decode cache in tmp_path."""
    monkeypatch.setenv("CNNFRAME_CACHE", str(tmp_path / "cache"))
    write_mixed_image_folder(tmp_path / "photos", per_class=10)
    return tmp_path / "photos"


def train(config, photos, out, *extra):
    return main(["train", str(config), "--data-dir", str(photos), "--out", str(out),
                 "--epochs", "2", "--no-progress", *extra])


def test_example_config_trains_two_epochs_on_mixed_images(tmp_path, photos, capsys):
    assert "image_size = [64, 64]" in EXAMPLE.read_text().splitlines()
    run = tmp_path / "run"
    assert train(EXAMPLE, photos, run) == 0
    out = capsys.readouterr().out
    # 10% of each class held out: round(1.5) = 2 cats, 1 dog
    assert "22 training images, 3 for evaluation" in out and "final validation accuracy" in out
    assert History.from_csv(run / "metrics.csv")["epoch"] == [1, 2]
    cfg = load_config(run / "config.toml")
    assert cfg["data"]["image_size"] == [64, 64] and cfg["data"]["validation"] == 0.1
    pre = json.loads((run / "preprocess.json").read_text())
    assert pre["image_shape"] == [3, 64, 64] and pre["resize"] == "shorter_side_then_center_crop"
    # evaluate finds the same held-out images from the run folder alone
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "image_folder test (3 images" in out
    assert main(["evaluate", str(run), "--split", "train"]) == 0
    assert "image_folder train (22 images" in capsys.readouterr().out
    assert main(["predict", str(run), str(photos / "cats" / "cmyk.jpg")]) == 0
    assert "cmyk.jpg: " in capsys.readouterr().out


def test_resume_reads_the_same_split_and_gives_the_same_weights(tmp_path, photos, capsys):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert train(EXAMPLE, photos, ref) == 0
    assert train(EXAMPLE, photos, run, "--max-steps", "1") == 0
    assert "stopped by --max-steps 1" in capsys.readouterr().out
    # resumed without --data-dir: the run's config.toml recorded the folder
    assert main(["train", str(EXAMPLE), "--out", str(run), "--epochs", "2", "--resume",
                 "--no-progress"]) == 0
    want = Model.load(ref / "model.cnnf").state_dict()
    got = Model.load(run / "model.cnnf").state_dict()
    for k in want:
        assert np.array_equal(want[k], got[k]), k


def test_single_folder_without_a_fraction_says_how_to_hold_out_images(tmp_path, photos, capsys):
    config = tmp_path / "test_split.toml"
    config.write_text(EXAMPLE.read_text().replace("validation = 0.1", 'validation = "test"'))
    assert train(config, photos, tmp_path / "run") == 1
    assert "hold out part of each class for evaluation with validation = 0.1" in \
        capsys.readouterr().err


def test_train_test_folders_and_eval_transforms(tmp_path, photos, capsys):
    """A folder with train/ and test/, cached at 40x40 and trained at 32x32: random crops for
    training, a resize for evaluation, both recorded for predict."""
    root = tmp_path / "split"
    write_mixed_image_folder(root / "train", per_class=10)
    write_mixed_image_folder(root / "test", per_class=2, seed=1)
    text = EXAMPLE.read_text().replace("image_size = [64, 64]", "image_size = 40").replace(
        '{type = "random_resized_crop", scale = [0.35, 1.0]}',
        '{type = "random_resized_crop", size = 32}').replace(
        "input_shape = [3, 64, 64]", "input_shape = [3, 32, 32]").replace(
        "validation = 0.1 ", 'eval_transforms = [{type = "resize", size = 32}]\n#')
    config = tmp_path / "sized.toml"
    config.write_text(text)
    assert train(config, root, tmp_path / "run") == 0
    assert "25 training images, 9 for evaluation" in capsys.readouterr().out
    pre = json.loads((tmp_path / "run" / "preprocess.json").read_text())
    assert pre["image_shape"] == [3, 40, 40]
    assert pre["transforms"][0] == {"type": "resize", "size": 32}
    assert main(["predict", str(tmp_path / "run"), str(root / "test" / "dogs" / "000.png")]) == 0
