"""Safe loading: no pickle for models/checkpoints; CIFAR batches through the restricted
unpickler; malicious pickles refused without running code; damaged files give clear errors."""
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cnnframe
from cnnframe.data import CIFAR10, DatasetError
from cnnframe.graph import Model
from cnnframe.train import CheckpointError, load_state, save_state

PACKAGE = Path(cnnframe.__file__).parent


def test_every_np_load_in_the_package_refuses_pickles():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for m in re.finditer(r"np\.load\((.*)", path.read_text()):
            calls.append((path.name, m.group(1)))
            assert "allow_pickle=False" in m.group(1), f"{path}: np.load({m.group(1)}"
    assert calls, "expected the model and checkpoint readers to call np.load"
    # and nothing unpickles except through the restricted unpickler
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"pickle\.loads?\(|Unpickler\(", text) or \
            path.name == "safe_pickle.py", path


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar_python_dir(root, batch):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(good, protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(good, protocol=2))
    (folder / "data_batch_3").write_bytes(batch)
    return root


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_cifar_batch_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((2, 3072), np.uint8), b"labels": RunsCode(marker)}
    root = _cifar_python_dir(tmp_path / "root", pickle.dumps(evil, protocol=protocol))
    with pytest.raises(DatasetError, match=r"data_batch_3: cannot unpickle .*posix\.system"):
        CIFAR10(root, train=True)
    assert not marker.exists()
    # sanity: plain pickle would have run it
    pickle.loads(pickle.dumps(RunsCode(marker), protocol=protocol))
    assert marker.exists()


def test_dtype_state_tampering_is_an_unpickling_error(tmp_path):
    """BUILD on an admitted numpy dtype made numpy raise SystemError inside the unpickler;
    run in a subprocess so a crash would show as a signal, not take pytest down."""
    code = textwrap.dedent("""
        import pickle, numpy as np
        from cnnframe.data.safe_pickle import safe_loads
        class D:
            def __reduce__(self):
                return (np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0x3f))
        class A:
            def __reduce__(self):
                return (np.core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                        (1, (2,), D(), False, b"\\x10" * 16))
        try:
            safe_loads(pickle.dumps({"a": A()}, protocol=2))
        except pickle.UnpicklingError as exc:
            print("refused", exc)
    """)
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused"), out.stdout + out.stderr


# ------------------------------------------------------------------ damaged model/checkpoint files

def _model():
    return Model.from_config({"input_shape": [1, 6, 6], "seed": 0, "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3},
        {"type": "batch_norm2d", "num_features": 2}, {"type": "relu"},
        {"type": "flatten"}, {"type": "linear", "in_features": 32, "out_features": 3}]})


def _damage(path, how, rng):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[:int(rng.integers(1, len(data)))]
    elif how == "flip":  # flip bytes inside the stored arrays (CRC must catch it)
        for i in rng.integers(0, len(data), 8):
            data[i] ^= 0xFF
    elif how == "empty":
        data = b""
    elif how == "garbage":
        data = rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
    elif how == "pickle":
        data = pickle.dumps(RunsCode(path.parent / "pwned"))
    elif how == "npy":
        import io
        buf = io.BytesIO()
        np.save(buf, np.arange(3))
        data = buf.getvalue()
    path.write_bytes(bytes(data))


HOWS = ["truncate", "flip", "empty", "garbage", "pickle", "npy"]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("seed", range(4))
def test_damaged_model_file_gives_a_clear_value_error(tmp_path, how, seed):
    path = tmp_path / "m.cnnf"
    model = _model()
    model.save(path)
    _damage(path, how, np.random.default_rng(seed))
    try:
        loaded = Model.load(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    else:  # a flip landing in zip padding/comments may leave the data intact: then it is equal
        assert how == "flip"
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(loaded.state_dict()[k], v)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("seed", range(4))
def test_damaged_checkpoint_gives_checkpoint_error(tmp_path, how, seed):
    path = tmp_path / "ckpt-e0001-s000000010.npz"
    state = {"model": _model().state_dict(), "step": 10, "lr": np.float32(0.1)}
    save_state(path, state)
    _damage(path, how, np.random.default_rng(seed))
    try:
        loaded = load_state(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
    else:
        assert how == "flip" and loaded["step"] == 10
        for k, v in state["model"].items():
            np.testing.assert_array_equal(loaded["model"][k], v)
    assert not (tmp_path / "pwned").exists()
