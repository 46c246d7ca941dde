"""Safe loading: no pickle for models/checkpoints; CIFAR batches through the restricted
unpickler; malicious pickles refused without running code; damaged files give clear errors."""
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import cnnframe
from cnnframe.data import CIFAR10, DatasetError
from cnnframe.graph import Model
from cnnframe.train import CheckpointError, latest_checkpoint, load_state, save_state

PACKAGE = Path(cnnframe.__file__).parent


def test_every_np_load_in_the_package_refuses_pickles():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for m in re.finditer(r"(np\.load|read_array)\((.*)", path.read_text()):
            calls.append((path.name, m.group(2)))
            assert "allow_pickle=False" in m.group(2), f"{path}: {m.group(1)}({m.group(2)}"
    assert calls, "expected the image cache reader to read arrays with numpy"
    # model files and checkpoints go through the safe reader, which never unpickles
    for reader in ("graph/io.py", "train/checkpoint.py"):
        text = (PACKAGE / reader).read_text()
        assert "NpzReader(" in text and "np.load(" not in text, reader
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


# ------------------------------------------------------------------ crafted archives
# Each damaged file is built here from a good one: rewrite members, patch zip headers.

_CENTRAL = b"PK\x01\x02"


def _zip_members(path):
    """name -> uncompressed bytes of every member of a good zip archive."""
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _write_zip(path, members, deflated=()):
    """A plain (not zip64) archive of `members`; the names in `deflated` are compressed."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data, zipfile.ZIP_DEFLATED if name in deflated
                       else zipfile.ZIP_STORED)


def _npy(array=None, shape=None, dtype="<f8", data=b""):
    """The bytes of an .npy file: of `array`, or a header declaring `shape` then `data`."""
    buf = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buf, array, allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                                   "shape": shape})
        buf.write(data)
    return buf.getvalue()


def _patch_entry(path, name, flags_or=0, crc=None, usize=None, method=None):
    """Patch the flags, compression method, CRC or uncompressed size of member `name` (in
    its local and its central header)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        local = z.getinfo(name).header_offset
    central = raw.find(_CENTRAL)
    while central >= 0:
        n = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46:central + 46 + n] == name.encode():
            break
        central = raw.find(_CENTRAL, central + 4)
    assert central >= 0, name
    for flags_at, crc_at, usize_at in ((local + 6, local + 14, local + 22),
                                       (central + 8, central + 16, central + 24)):
        struct.pack_into("<H", raw, flags_at, struct.unpack_from("<H", raw, flags_at)[0]
                         | flags_or)
        if method is not None:  # the method field follows the flags
            struct.pack_into("<H", raw, flags_at + 2, method)
        if crc is not None:
            struct.pack_into("<I", raw, crc_at, crc)
        if usize is not None:
            struct.pack_into("<I", raw, usize_at, usize)
    path.write_bytes(bytes(raw))


def _data_offset(path, name):
    with zipfile.ZipFile(path) as z:
        offset = z.getinfo(name).header_offset
    raw = path.read_bytes()
    n, m = struct.unpack_from("<HH", raw, offset + 26)
    return offset + 30 + n + m


def _inflating_beyond(path, name, extra=4096):
    """Rewrite `name` deflated so that its stream holds `extra` bytes more than declared."""
    members = _zip_members(path)
    real = members[name]
    members[name] = real + bytes(extra)
    _write_zip(path, members, deflated={name})
    _patch_entry(path, name, crc=zlib.crc32(real), usize=len(real))


def _meta(state_json):
    text = '{"format": "cnnframe-checkpoint", "version": 1, "state": ' + state_json + "}"
    return _npy(np.array(text))


def _damage_checkpoint(path, how):
    """Damage the checkpoint at `path` (whose first array is a0) in one of CHECKPOINT_DAMAGE."""
    members = _zip_members(path)
    if how == "encrypted_flag":
        _patch_entry(path, "a0.npy", flags_or=0x1)
    elif how == "unknown_compression":  # zipfile: NotImplementedError
        _patch_entry(path, "a0.npy", method=99)
    elif how == "corrupt_deflate":
        _write_zip(path, members, deflated=set(members))
        raw = bytearray(path.read_bytes())
        raw[_data_offset(path, "a0.npy")] = 0x07  # a final block of the reserved type 3
        path.write_bytes(bytes(raw))
    elif how.startswith("meta_"):
        members["__meta__.npy"] = _meta({
            "meta_unhashable_key": '{"w": {"__array__": ["a0"]}}',
            "meta_tuple_of_int": '{"w": {"__tuple__": 5}}',
            "meta_dict_of_list": '{"w": {"__dict__": [1, 2]}}',
            "meta_deep_json": '{"w": ' + "[" * 100000 + "]" * 100000 + "}",
            "meta_deep_structure": '{"w": ' + "[" * 600 + "]" * 600 + "}",
            "meta_missing_array": '{"w": {"__array__": "a7"}}'}[how])
        _write_zip(path, members)
    elif how == "huge_header":  # a0's .npy header declares 4 TiB before its original data
        buf = io.BytesIO(members["a0.npy"])
        np.lib.format.read_magic(buf)
        np.lib.format.read_array_header_1_0(buf)
        members["a0.npy"] = _npy(shape=(1 << 39,), data=buf.read())
        _write_zip(path, members)
    elif how == "inflates_beyond":
        _inflating_beyond(path, "a0.npy")
    elif how == "unexpected_bomb":  # an extra, genuinely deflated 32 MiB member
        _append_deflated_zeros(path, "extra.npy", 32 << 20)
    else:
        raise AssertionError(how)


def _append_deflated_zeros(path, name, nbytes):
    """Add member `name`: an .npy of `nbytes` zero bytes, deflated (a zip bomb in miniature)."""
    header = _npy(shape=(nbytes // 8,))
    members = _zip_members(path)
    with zipfile.ZipFile(path, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
        info = zipfile.ZipInfo(name)  # streamed in 1 MiB chunks: never nbytes in memory
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            f.write(header)
            chunk = bytes(1 << 20)
            for i in range(0, nbytes, len(chunk)):
                f.write(chunk[:min(len(chunk), nbytes - i)])


def _refused_with_peak(load, path, error, match):
    """Call load(path) expecting `error` matching `match`; return (exception, peak bytes
    numpy and Python allocated meanwhile, from tracemalloc)."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match) as info:
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, peak


CHECKPOINT_DAMAGE = ["encrypted_flag", "unknown_compression", "corrupt_deflate",
                     "meta_unhashable_key", "meta_tuple_of_int", "meta_dict_of_list",
                     "meta_deep_json", "meta_deep_structure", "meta_missing_array",
                     "huge_header", "inflates_beyond", "unexpected_bomb"]


def _good_checkpoint(path):
    save_state(path, {"w": np.arange(4096.0), "step": 3})


@pytest.mark.parametrize("how", CHECKPOINT_DAMAGE)
def test_every_damaged_checkpoint_is_a_checkpoint_error_naming_the_file(tmp_path, how):
    path = tmp_path / "ckpt-e0002-s000000020.npz"
    _good_checkpoint(path)
    _damage_checkpoint(path, how)
    _, peak = _refused_with_peak(load_state, path, CheckpointError, re.escape(str(path)))
    assert peak < 4 << 20, f"{peak:,} bytes allocated to refuse a damaged checkpoint"


@pytest.mark.parametrize("how", CHECKPOINT_DAMAGE)
def test_latest_checkpoint_falls_back_past_a_damaged_newest_one(tmp_path, how):
    older = tmp_path / "ckpt-e0001-s000000010.npz"
    newest = tmp_path / "ckpt-e0002-s000000020.npz"
    save_state(older, {"w": np.zeros(3), "step": 1})
    _good_checkpoint(newest)
    _damage_checkpoint(newest, how)
    with pytest.warns(RuntimeWarning, match=re.escape(str(newest))):
        path, state = latest_checkpoint(tmp_path)
    assert path == str(older) and state["step"] == 1


def test_a_folder_of_only_damaged_checkpoints_is_an_error_not_a_fresh_start(tmp_path):
    newest = tmp_path / "ckpt-e0002-s000000020.npz"
    _good_checkpoint(newest)
    _damage_checkpoint(newest, "encrypted_flag")
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="no checkpoint loads"):
        latest_checkpoint(tmp_path)


def test_a_deflated_copy_of_a_checkpoint_still_loads(tmp_path):
    """np.savez_compressed-style archives are read (and checked) too."""
    path = tmp_path / "c.npz"
    _good_checkpoint(path)
    members = _zip_members(path)
    _write_zip(path, members, deflated=set(members))
    state = load_state(path)
    np.testing.assert_array_equal(state["w"], np.arange(4096.0))
    assert state["step"] == 3


@pytest.mark.parametrize("how", ["encrypted_flag", "corrupt_deflate", "meta_deep_json",
                                 "huge_header", "unexpected_bomb"])
def test_trainer_resume_uses_the_newest_readable_checkpoint(tmp_path, how):
    from cnnframe.data import DataLoader
    from cnnframe.optim import SGD
    from cnnframe.train import Trainer
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((16, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 16))

    def trainer():
        model = _model()
        return Trainer(model, "cross_entropy", SGD(model, lr=0.01), out_dir=tmp_path,
                       progress=False, log=lambda *a: None)

    trainer().fit(DataLoader(data, batch_size=8, shuffle=True, seed=0), epochs=2)
    *_, previous, newest = sorted((tmp_path / "checkpoints").glob("ckpt-*.npz"))
    _damage_checkpoint(newest, how)
    again = trainer()
    with pytest.warns(RuntimeWarning, match=re.escape(str(newest))):
        assert again.resume() == str(previous)
    assert again.epoch == 1 and again.step == 2


# ------------------------------------------------------------------ model files: headers first

def _saved_model(path):
    model = _model()
    model.save(path)
    return model


def test_an_unexpected_deflated_member_is_refused_before_it_is_inflated(tmp_path):
    """The issue's 2 MB .cnnf with a 2 GiB deflated extra member, made small (32 MiB)."""
    path = tmp_path / "m.cnnf"
    _saved_model(path)
    _append_deflated_zeros(path, "extra.npy", 32 << 20)
    _, peak = _refused_with_peak(Model.load, path, ValueError,
                                 r"m\.cnnf: .*unexpected entries 'extra'")
    assert peak < 4 << 20, f"{peak:,} bytes allocated to refuse an unexpected member"


@pytest.mark.parametrize("declared", [1 << 30, 1 << 42])
def test_an_unexpected_member_declaring_a_huge_array_is_never_allocated(tmp_path, declared):
    """A member whose zip entry and .npy header both declare `declared` bytes (the file
    holds only their start) is refused from its headers alone."""
    path = tmp_path / "m.cnnf"
    _saved_model(path)
    members = _zip_members(path)
    members["huge.npy"] = _npy(shape=(declared // 8,), data=bytes(64))
    _write_zip(path, members, deflated={"huge.npy"})
    head = len(_npy(shape=(declared // 8,)))
    if declared < 1 << 32:  # a plain zip entry holds 32-bit sizes
        _patch_entry(path, "huge.npy", usize=head + declared)
    exc, peak = _refused_with_peak(Model.load, path, ValueError, r"m\.cnnf: ")
    assert "huge" in str(exc)
    assert peak < 4 << 20, f"{peak:,} bytes allocated to refuse a huge member"


@pytest.mark.parametrize("where", ["weight", "config"])
def test_a_member_inflating_beyond_its_declared_size_is_refused(tmp_path, where):
    path = tmp_path / "m.cnnf"
    model = _saved_model(path)
    name = (next(iter(model.params)) if where == "weight" else "__cnnframe_config__") + ".npy"
    _inflating_beyond(path, name)
    with pytest.raises(ValueError, match=r"m\.cnnf: .*inflates beyond"):
        Model.load(path)


def test_a_weight_of_another_shape_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "m.cnnf"
    model = _saved_model(path)
    members = _zip_members(path)
    name = next(iter(model.params))
    members[name + ".npy"] = _npy(np.zeros((1000, 1000)))  # 8 MB
    _write_zip(path, members)
    _, peak = _refused_with_peak(Model.load, path, ValueError,
                                 rf"{re.escape(name)}: expected .*\(1000, 1000\)")
    assert peak < 4 << 20, f"{peak:,} bytes allocated to refuse a misshapen weight"
