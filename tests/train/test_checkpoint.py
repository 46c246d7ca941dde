"""Checkpoint files: exact round trip without pickle, atomic writes, keep last K, newest complete."""
import os
import random
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from cnnframe import _files
from cnnframe.train.checkpoint import (CheckpointError, CheckpointManager, atomic_write,
                                       checkpoint_name, latest_checkpoint, list_checkpoints,
                                       load_state, save_state)


def _same(a, b):
    """Equal values of equal types, recursively (arrays: dtype, shape and bits)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def test_round_trip_keeps_types_and_bits(tmp_path):
    state = {
        "model": {"conv1.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
                  "bn.running_var": np.array([1.5, np.inf], np.float64)},
        "optimizer": {"lr": 0.1, "step_count": 7, "beta": np.float32(0.9),
                      "exp_avg/x": np.zeros((0, 3), np.float32)},
        "rng": {"numpy": np.random.RandomState(3).get_state(),
                "python": random.Random(4).getstate(),
                "pcg": np.random.default_rng(5).bit_generator.state},
        "odd": {"__array__": "not a marker", "": None, "nan": float("nan"), "flag": True,
                "names": ["a", "b"], "tuple": (1, (2.5, "x")), "u8": np.uint8(255),
                "strs": np.array(["ab", "c"])},
    }
    path = tmp_path / "c.npz"
    save_state(path, state)
    got = load_state(path)
    _same(state, got)
    # The restored RNG states work: same draws as the originals.
    r = np.random.RandomState()
    r.set_state(got["rng"]["numpy"])
    assert r.randint(1 << 30) == np.random.RandomState(3).randint(1 << 30)
    g = np.random.default_rng()
    g.bit_generator.state = got["rng"]["pcg"]
    assert g.random() == np.random.default_rng(5).random()


@given(st.dictionaries(st.text(min_size=1, max_size=8),
                       st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                                 st.text(max_size=5), st.booleans(), st.none(),
                                 hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64,
                                                             np.uint8, np.bool_]),
                                            hnp.array_shapes(min_dims=0, max_dims=3,
                                                             min_side=0, max_side=3))),
                       max_size=6))
def test_round_trip_property(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("ck") / "c.npz"
    save_state(path, state)
    _same(state, load_state(path))


def test_file_is_a_plain_npz_loadable_without_pickle(tmp_path):
    save_state(tmp_path / "c.npz", {"w": np.ones(3, np.float32)})
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        assert "__meta__" in f.files
        assert all(f[k].dtype != object for k in f.files)


def test_unstorable_values_raise(tmp_path):
    with pytest.raises(TypeError, match="object array"):
        save_state(tmp_path / "c.npz", {"x": np.array([{}, 1], dtype=object)})
    with pytest.raises(TypeError, match="set"):
        save_state(tmp_path / "c.npz", {"x": {1, 2}})
    with pytest.raises(TypeError, match="non-string key"):
        save_state(tmp_path / "c.npz", {"x": {1: 2}})
    assert os.listdir(tmp_path) == []  # failed saves leave nothing behind


def test_object_array_in_a_foreign_npz_is_refused(tmp_path):
    """A file with pickled content is never unpickled."""
    path = tmp_path / "evil.npz"
    np.savez(path, __meta__=np.array('{"format": "cnnframe-checkpoint", "version": 1, '
                                     '"state": {"x": {"__array__": "a0"}}}'),
             a0=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError):
        load_state(path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write(path, lambda f: f.write("old"), mode="w")

    def boom(f):
        f.write("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, boom, mode="w")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_corrupt_and_foreign_files_raise_checkpoint_error(tmp_path):
    good = tmp_path / "good.npz"
    save_state(good, {"w": np.arange(1000.0)})
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "plain.npz", w=np.ones(2))
    for name in ("trunc.npz", "junk.npz", "plain.npz"):
        with pytest.raises(CheckpointError):
            load_state(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.npz")


def test_bit_flip_is_detected(tmp_path):
    """The zip CRC catches a damaged array."""
    path = tmp_path / "c.npz"
    save_state(path, {"w": np.arange(4096, dtype=np.float64)})
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("a0.npy")
    raw = bytearray(path.read_bytes())
    raw[info.header_offset + 30 + len(info.filename) + 2000] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        load_state(path)


def test_arrays_beyond_the_memory_bound_are_refused_before_they_are_read(tmp_path, monkeypatch):
    import cnnframe.train.checkpoint as checkpoint
    path = tmp_path / "c.npz"
    save_state(path, {"w": np.zeros(1000), "v": np.zeros(1000)})
    monkeypatch.setattr(checkpoint, "max_checkpoint_bytes", lambda: 10000)
    read, real_read = [], checkpoint.NpzReader.read

    def recording_read(self, name, **kw):
        read.append(name)
        return real_read(self, name, **kw)

    monkeypatch.setattr(checkpoint.NpzReader, "read", recording_read)
    with pytest.raises(CheckpointError, match=r"c\.npz: its arrays declare 16,000 bytes in all, "
                       r"more than this machine's memory \(10,000 bytes\)"):
        load_state(path)
    assert read == ["__meta__"]  # only the metadata was read


def test_manager_keeps_last_k_and_latest_skips_corrupt(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    for epoch in range(1, 5):
        mgr.save({"epoch": epoch}, epoch, epoch * 10)
    names = [os.path.basename(p) for p in list_checkpoints(tmp_path)]
    assert names == [checkpoint_name(3, 30), checkpoint_name(4, 40)]
    # A leftover temporary file of an unfinished write is ignored.
    (tmp_path / ".ckpt-e0005-s000000050.npz.abc.tmp").write_bytes(b"partial")
    path, state = latest_checkpoint(tmp_path)
    assert state == {"epoch": 4} and path.endswith(checkpoint_name(4, 40))
    # Corrupt the newest: the previous complete one is used.
    with open(path, "r+b") as f:
        f.truncate(20)
    with pytest.warns(RuntimeWarning, match="skipping"):
        path, state = latest_checkpoint(tmp_path)
    assert state == {"epoch": 3}
    assert latest_checkpoint(tmp_path / "nowhere") is None
    with pytest.raises(ValueError, match="keep"):
        CheckpointManager(tmp_path, keep=0)


@pytest.mark.parametrize("array", [np.arange(3), np.zeros((2, 2), np.float32),
                                   np.array("text")])
def test_npy_named_as_checkpoint_is_skipped(tmp_path, array):
    """np.load returns a plain ndarray for .npy content: a CheckpointError, not a TypeError."""
    mgr = CheckpointManager(tmp_path, keep=3)
    mgr.save({"epoch": 1}, 1, 10)
    fake = tmp_path / checkpoint_name(2, 20)
    with open(fake, "wb") as f:  # a file handle: np.save would append ".npy" to a path
        np.save(f, array)
    with pytest.raises(CheckpointError, match=re.escape(str(fake))):
        load_state(fake)
    with pytest.warns(RuntimeWarning, match="skipping unreadable checkpoint"):
        path, state = latest_checkpoint(tmp_path)
    assert state == {"epoch": 1} and path.endswith(checkpoint_name(1, 10))


def test_ordering_is_by_step_not_name(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=5)
    mgr.save({"s": 9}, 1, 9)
    mgr.save({"s": 100}, 2, 100, tag="interrupt")
    mgr.save({"s": 20}, 1, 20)
    assert [load_state(p)["s"] for p in list_checkpoints(tmp_path)] == [9, 20, 100]


# ----------------------------------------------------------------------------- file modes

def _write_with(writer, path):
    if writer == "atomic_write":
        atomic_write(path, lambda f: f.write("text"), mode="w")
    elif writer == "save_state":
        save_state(path, {"w": np.ones(3)})
    elif writer == "download":
        from cnnframe.data.download import download
        source = path.parent / "source.bin"
        source.write_bytes(b"payload")
        os.chmod(source, 0o600)  # the source's mode must not leak into the download
        download(source.as_uri(), path, progress=False)


@pytest.mark.parametrize("writer", ["atomic_write", "save_state", "download"])
@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_written_files_get_the_mode_open_would_give(tmp_path, writer, umask):
    """mkstemp made every file 0600 whatever the umask."""
    old = os.umask(umask)
    try:
        _write_with(writer, tmp_path / "out")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o666 & ~umask


# ----------------------------------------------------------------------------- stale temp files

def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temp(folder, final, host=None, pid=None, age_s=0.0, old_style=False):
    """A temporary file as atomic_write names it (or as mkstemp did), `age_s` seconds old."""
    token = f"{len(os.listdir(folder)):08x}"  # a new name each time
    name = (f".{final}.k3x_{token[-4:]}.tmp" if old_style else
            f".{final}.{host or _files._HOST}.{pid}.{token}.tmp")
    path = folder / name
    path.write_bytes(b"partial")
    when = time.time() - age_s
    os.utime(path, (when, when))
    return name


def test_a_killed_write_leaves_a_temp_file_the_next_run_removes(tmp_path):
    """SIGKILL in the middle of atomic_write, then a CheckpointManager opens the folder."""
    folder = tmp_path / "checkpoints"
    code = ("import os, signal, sys\n"
            "from cnnframe._files import atomic_write\n"
            "def write(f):\n"
            "    f.write(b'x' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            f"atomic_write({str(folder / checkpoint_name(1, 10))!r}, write)\n")
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ),
                          capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    [left] = os.listdir(folder)
    assert left.startswith("." + checkpoint_name(1, 10)) and left.endswith(".tmp")
    CheckpointManager(folder)
    assert os.listdir(folder) == []


def test_only_stale_temp_files_of_checkpoints_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.05)  # files below are modified after the live process started
        ckpt = checkpoint_name(3, 30)
        stale = {_temp(tmp_path, ckpt, pid=_dead_pid()),                  # writer gone
                 _temp(tmp_path, ckpt, pid=live.pid, age_s=7200),         # pid reused since
                 _temp(tmp_path, ckpt, host="00000000", pid=1, age_s=7200),  # other host, old
                 _temp(tmp_path, ckpt, old_style=True, age_s=7200)}       # mkstemp name, old
        kept = {_temp(tmp_path, ckpt, pid=live.pid),                      # live writer
                _temp(tmp_path, ckpt, pid=os.getpid(), age_s=7200),       # this process
                _temp(tmp_path, ckpt, host="00000000", pid=1),            # other host, fresh
                _temp(tmp_path, ckpt, old_style=True),                    # mkstemp name, fresh
                _temp(tmp_path, "notes.txt", pid=_dead_pid()),            # not a checkpoint's
                ckpt}
        (tmp_path / ckpt).write_bytes(b"a checkpoint")
        (tmp_path / "user.tmp").write_bytes(b"not ours")
        mgr = CheckpointManager(tmp_path)
    finally:
        live.kill()
        live.wait()
    assert set(os.listdir(tmp_path)) == kept | {"user.tmp"}
    assert sorted(os.path.basename(p) for p in mgr.removed_temp_files) == sorted(stale)


def test_atomic_write_names_its_temp_file_as_the_cleanup_expects(tmp_path):
    seen = []
    atomic_write(tmp_path / "f.txt", lambda f: seen.extend(os.listdir(tmp_path)), mode="w")
    [name] = seen
    assert not _files.is_stale_temp_file(tmp_path / name)  # this process is writing it
    assert _files._TEMP_NAME.match(name).group("pid") == str(os.getpid())
