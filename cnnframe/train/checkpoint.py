"""Training checkpoints: one uncompressed ``.npz`` file per checkpoint, written atomically.

A checkpoint is a nested dict of plain values (None, bool, int, float, str, lists,
tuples, dicts with str keys) and numpy arrays / numpy scalars.  It is stored as

- every array (and numpy scalar, as a 0-d array) under its own npz key ``a0``,
  ``a1``, ...; and
- one JSON document (npz key ``__meta__``, a 0-d unicode array) holding the
  structure, with each array replaced by ``{"__array__": "a0"}``.

So loading needs ``np.load(..., allow_pickle=False)`` only: nothing is ever
unpickled.  Numpy scalars come back as numpy scalars of the same dtype and
tuples as tuples, so a restored optimizer or RNG state is exactly the saved one.

Files are named ``ckpt-e{epoch}-s{step}.npz`` and ordered by the global step.
Writes go to a temporary file in the same folder, are flushed to disk and then
renamed over the final name (``os.replace``), so a crash never leaves a
half-written checkpoint under a checkpoint name.
"""
import json
import os
import re
import zipfile

import numpy as np

from cnnframe._files import atomic_write

FORMAT = "cnnframe-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "__meta__"
_NAME_RE = re.compile(r"^ckpt-e(\d+)-s(\d+)(?:-([a-z]+))?\.npz$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or not a cnnframe checkpoint."""


# ----------------------------------------------------------------------------- encoding

def _encode(value, arrays, where):
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"checkpoint: {where} is an object array; only numeric, bool and "
                            "string arrays can be stored without pickle")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(value)
        return {"__scalar__": key}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint: {where} has a non-string key {k!r}")
            out[k] = _encode(v, arrays, f"{where}.{k}")
        # Keep user keys that look like our markers unambiguous.
        return {"__dict__": out} if any(k.startswith("__") for k in out) else out
    raise TypeError(f"checkpoint: cannot store {where} of type {type(value).__name__} "
                    "(expected arrays, numbers, strings, lists, tuples or dicts)")


def _decode(value, data):
    if isinstance(value, list):
        return [_decode(v, data) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (marker, inner), = value.items()
            if marker == "__array__":
                return data[inner]
            if marker == "__scalar__":
                return data[inner][()]
            if marker == "__tuple__":
                return tuple(_decode(v, data) for v in inner)
            if marker == "__dict__":
                return {k: _decode(v, data) for k, v in inner.items()}
        return {k: _decode(v, data) for k, v in value.items()}
    return value


def save_state(path, state):
    """Save a nested dict of plain values and arrays to an ``.npz`` file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    state : dict
        Values: None, bool, int, float, str, list, tuple, dict (str keys), numpy
        arrays (not object arrays) and numpy scalars.

    Raises
    ------
    TypeError
        For a value that cannot be stored without pickle.
    """
    if not isinstance(state, dict):
        raise TypeError(f"save_state: state must be a dict, got {type(state).__name__}")
    arrays = {}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "state": _encode(state, arrays, "state")}
    # allow_nan: JSON's NaN/Infinity extensions round-trip through Python's json module.
    arrays[_META_KEY] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_state(path):
    """Load a file written by `save_state` (``np.load(allow_pickle=False)``; no pickle).

    Raises
    ------
    CheckpointError
        When the file cannot be read, is truncated or corrupt, or is not a
        cnnframe checkpoint.
    """
    path = os.fspath(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    # A .npy file (or anything else np.load reads as a plain array) is not an npz archive.
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        del loaded  # drops a possible memmap
        raise CheckpointError(f"{path}: not a cnnframe checkpoint (an .npy array, "
                              "not an .npz archive)")
    try:
        with loaded as npz:
            data = {k: npz[k] for k in npz.files}  # reads (and CRC-checks) every member
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if _META_KEY not in data:
        raise CheckpointError(f"{path}: not a cnnframe checkpoint (no {_META_KEY} entry)")
    try:
        meta = json.loads(str(data.pop(_META_KEY)[()]))
    except ValueError as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnframe checkpoint")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')!r}, "
                              f"this cnnframe reads version {FORMAT_VERSION}")
    try:
        return _decode(meta["state"], data)
    except KeyError as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint (missing array {exc})") from exc


# ----------------------------------------------------------------------------- a folder of them

def checkpoint_name(epoch, step, tag=None):
    """The file name of the checkpoint after `epoch` epochs and `step` steps."""
    return f"ckpt-e{epoch:04d}-s{step:09d}" + (f"-{tag}" if tag else "") + ".npz"


def list_checkpoints(folder):
    """Checkpoint files in `folder`, oldest first (by global step, then epoch).

    Temporary files of unfinished writes are not listed.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        m = _NAME_RE.match(name)
        if m:
            found.append((int(m.group(2)), int(m.group(1)), name))
    found.sort()
    return [os.path.join(folder, name) for _, _, name in found]


def latest_checkpoint(folder):
    """The newest checkpoint in `folder` that loads completely, or None.

    Returns
    -------
    (path, state) or None
        Corrupt or truncated files are skipped (a warning names them).
    """
    import warnings
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_state(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", RuntimeWarning, stacklevel=2)
    return None


class CheckpointManager:
    """Saves checkpoints into a folder and keeps the newest `keep` of them.

    Parameters
    ----------
    folder : str or os.PathLike
    keep : int
        How many checkpoint files to keep (>= 1); older ones are deleted after
        each successful save.
    """

    def __init__(self, folder, keep=3):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"CheckpointManager: keep must be an int >= 1, got {keep!r}")
        self.folder = os.fspath(folder)
        self.keep = keep
        self.last_saved = None

    def save(self, state, epoch, step, tag=None):
        """Write `state` as the checkpoint of (`epoch`, `step`); return its path."""
        path = os.path.join(self.folder, checkpoint_name(epoch, step, tag))
        save_state(path, state)
        self.last_saved = path
        self._prune()
        return path

    def _prune(self):
        paths = list_checkpoints(self.folder)
        for old in paths[:-self.keep]:
            if old != self.last_saved:
                try:
                    os.unlink(old)
                except FileNotFoundError:
                    pass

    def latest(self):
        """(path, state) of the newest complete checkpoint, or None."""
        return latest_checkpoint(self.folder)
