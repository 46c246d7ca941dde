import json

import numpy as np
import pytest

from cnnframe.cli import main
from cnnframe.data import CIFAR10, MNIST, ImageFolder, Shapes, available_datasets, get_dataset
from cnnframe.data.cifar import CLASSES

Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")


@pytest.fixture
def data_root(tmp_path, writers, cifar_arrays):
    """A root holding CIFAR-10 (binary archive + python dir), an image folder and MNIST."""
    writers.write_cifar_archive(tmp_path, "binary", cifar_arrays)
    writers.write_cifar_dir(tmp_path, "python", cifar_arrays)
    for split, n in (("train", 3), ("test", 1)):
        for name in ("cats", "dogs"):
            folder = tmp_path / "pets" / split / name
            folder.mkdir(parents=True)
            for i in range(n + (name == "dogs")):
                Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / f"{i}.png")
    rng = np.random.default_rng(0)
    (tmp_path / "digits").mkdir()
    writers.write_idx_split(tmp_path / "digits", True, rng.integers(0, 256, (5, 28, 28)),
                            np.array([0, 1, 1, 9, 9]), gz=True)
    writers.write_idx_split(tmp_path / "digits", False, rng.integers(0, 256, (2, 28, 28)),
                            np.array([3, 3]))
    return tmp_path


def run_cli(capsys, *argv):
    code = main(["datasets", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_datasets_command_lists_what_is_where(data_root, capsys, cifar_arrays):
    code, out, _ = run_cli(capsys, "--root", str(data_root))
    assert code == 0
    assert f"CIFAR-10  [binary archive]  {data_root / 'cifar-10-binary.tar.gz'}" in out
    assert f"CIFAR-10  [python directory]  {data_root / 'cifar-10-batches-py'}" in out
    assert f"image folder  [class-per-subfolder images]  {data_root / 'pets'}" in out
    assert f"MNIST  [IDX]  {data_root / 'digits'}" in out
    assert "Shapes" in out
    train_labels = np.concatenate([cifar_arrays[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert f"train      {len(train_labels)}" in out
    assert "cats 3, dogs 4" in out and "cats 1, dogs 2" in out


def test_datasets_json_counts(data_root, capsys, cifar_arrays):
    code, out, _ = run_cli(capsys, "--root", str(data_root), "--json")
    assert code == 0
    found = {(e["dataset"], e["format"]): e for e in json.loads(out)}
    cifar = found[("CIFAR-10", "binary archive")]
    test_labels = cifar_arrays["test_batch"][1]
    expected = {name: int((test_labels == k).sum()) for k, name in enumerate(CLASSES)}
    assert cifar["splits"]["test"] == {"n": len(test_labels), "classes": expected}
    mnist = found[("MNIST", "IDX")]
    assert mnist["splits"]["train"]["classes"]["9"] == 2
    assert mnist["splits"]["test"] == {"n": 2, "classes": {str(d): 2 * (d == 3) for d in range(10)}}
    assert found[("image folder", "class-per-subfolder images")]["splits"]["test"]["n"] == 3


def test_datasets_reports_broken_copies(data_root, capsys):
    (data_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02garbage")
    code, out, _ = run_cli(capsys, "--root", str(data_root))
    assert code == 1
    assert "error:" in out and "test_batch" in out


def test_datasets_missing_root(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--root", str(tmp_path / "nowhere"))
    assert code == 1 and "nowhere" in err


def test_get_dataset_by_name(data_root):
    assert isinstance(get_dataset("cifar10", data_root, train=False), CIFAR10)
    pets = get_dataset("image-folder", data_root / "pets", train=True, cache=False)
    assert isinstance(pets, ImageFolder) and len(pets) == 7 and pets.classes == ["cats", "dogs"]
    assert len(get_dataset("cifar10_jpeg", data_root / "pets", train=False, cache=False)) == 3
    assert isinstance(get_dataset("MNIST", data_root / "digits"), MNIST)
    shapes = get_dataset("shapes", train=False, n=16, seed=2)
    assert isinstance(shapes, Shapes) and len(shapes) == 16 and not shapes.train
    assert set(available_datasets()) == {"cifar10", "image_folder", "mnist", "fashion_mnist",
                                         "shapes"}
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid names: cifar10"):
        get_dataset("imagenet")
    with pytest.raises(FileNotFoundError, match="no test or val or valid folder"):
        get_dataset("image_folder", data_root / "pets" / "train", train=False)
