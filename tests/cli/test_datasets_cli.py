"""`cnnframe datasets`: what is found under a root, as a table or JSON, and broken copies."""
import json

import numpy as np
import pytest
from dataset_writers import make_cifar_arrays, write_data_root

from cnnframe.cli import main
from cnnframe.data.cifar import CLASSES

pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")
CIFAR_ARRAYS = make_cifar_arrays(0)


@pytest.fixture
def data_root(tmp_path):
    """A root holding CIFAR-10 (binary archive + python dir), an image folder and MNIST."""
    return write_data_root(tmp_path, CIFAR_ARRAYS)


def run_cli(capsys, *argv):
    code = main(["datasets", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_datasets_command_lists_what_is_where(data_root, capsys):
    code, out, _ = run_cli(capsys, "--root", str(data_root))
    assert code == 0
    assert f"CIFAR-10  [binary archive]  {data_root / 'cifar-10-binary.tar.gz'}" in out
    assert f"CIFAR-10  [python directory]  {data_root / 'cifar-10-batches-py'}" in out
    assert f"image folder  [class-per-subfolder images]  {data_root / 'pets'}" in out
    assert f"MNIST  [IDX]  {data_root / 'digits'}" in out
    assert "Shapes" in out
    train_labels = np.concatenate([CIFAR_ARRAYS[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert f"train      {len(train_labels)}" in out
    assert "cats 3, dogs 4" in out and "cats 1, dogs 2" in out


def test_datasets_json_counts(data_root, capsys):
    code, out, _ = run_cli(capsys, "--root", str(data_root), "--json")
    assert code == 0
    found = {(e["dataset"], e["format"]): e for e in json.loads(out)}
    cifar = found[("CIFAR-10", "binary archive")]
    test_labels = CIFAR_ARRAYS["test_batch"][1]
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
