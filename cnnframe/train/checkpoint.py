"""Training checkpoints: one uncompressed ``.npz`` file per checkpoint, written atomically.

A checkpoint is a nested dict of plain values (None, bool, int, float, str, lists,
tuples, dicts with str keys) and numpy arrays / numpy scalars.  It is stored as

- every array (and numpy scalar, as a 0-d array) under its own npz key ``a0``,
  ``a1``, ...; and
- one JSON document (npz key ``__meta__``, a 0-d unicode array) holding the
  structure, with each array replaced by ``{"__array__": "a0"}``.

So loading never unpickles anything.  Numpy scalars come back as numpy scalars of
the same dtype and tuples as tuples, so a restored optimizer or RNG state is exactly
the saved one.

Loading (:func:`load_state`) reads through :mod:`cnnframe._npz` and checks before it
reads: the zip directory and every array's ``.npy`` header first, then the metadata
(at most 64 MiB of JSON, nested at most 100 deep).  Every array must be one the
metadata refers to, and together they may declare at most the machine's physical
memory (:func:`max_checkpoint_bytes`); cnnframe writes arrays uncompressed, so an
array it wrote is also bounded by the file's own size.  Each array is then read into
exactly its declared size, and a compressed stream that would inflate beyond it is
refused.  Any failure to read a file is a :class:`CheckpointError` naming the file and
the cause, and :func:`latest_checkpoint` falls back to the newest readable one.

Files are named ``ckpt-e{epoch}-s{step}.npz`` and ordered by the global step; a
Trainer with ``keep_best`` also keeps the best epoch's checkpoint as ``best.npz``.
Writes go to a temporary file in the same folder, are flushed to disk and then
renamed over the final name (``os.replace``), so a crash never leaves a
half-written checkpoint under a checkpoint name.  The temporary files of writes
killed mid-way are removed when a :class:`CheckpointManager` next opens the folder
(:func:`cnnframe._files.remove_stale_temp_files` says which files count as stale).
"""
import json
import os
import re
import warnings

import numpy as np

from cnnframe._files import atomic_write, remove_stale_temp_files
from cnnframe._npz import NotAnArchiveError, NpzError, NpzReader

FORMAT = "cnnframe-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "__meta__"
_MAX_META_BYTES = 64 << 20  # the JSON structure; real ones are a few KB plus a row per epoch
_MAX_DEPTH = 100            # nesting of the state; real ones are about 6 deep
_NAME_RE = re.compile(r"^ckpt-e(\d+)-s(\d+)(?:-([a-z]+))?\.npz$")
BEST_NAME = "best.npz"  # the best epoch's checkpoint (Trainer keep_best): never pruned
_FILE_RE = re.compile(r"^(?:ckpt-e\d+-s\d+(?:-[a-z]+)?|best)\.npz$")  # files the folder holds


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


class _BadMeta(Exception):
    """Metadata that does not describe a state (the message says where)."""


def _decode(value, fetch, where="state", depth=0):
    """The state `value` describes, with ``fetch(key, where)`` giving the array of each key.

    Checks the structure as it goes (a crafted ``__meta__`` raises _BadMeta, nothing else).
    """
    if depth > _MAX_DEPTH:
        raise _BadMeta(f"{where[:40]}...: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, list):
        return [_decode(v, fetch, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if len(value) == 1:
            (marker, inner), = value.items()
            if marker in ("__array__", "__scalar__"):
                if not isinstance(inner, str):
                    raise _BadMeta(f"{where}: {marker} must name an array, got {inner!r:.80}")
                array = fetch(inner, where)
                return array[()] if marker == "__scalar__" and array is not None else array
            if marker == "__tuple__":
                if not isinstance(inner, list):
                    raise _BadMeta(f"{where}: __tuple__ must hold a list, got {inner!r:.80}")
                return tuple(_decode(v, fetch, f"{where}[{i}]", depth + 1)
                             for i, v in enumerate(inner))
            if marker == "__dict__":
                if not isinstance(inner, dict):
                    raise _BadMeta(f"{where}: __dict__ must hold an object, got {inner!r:.80}")
                return {k: _decode(v, fetch, f"{where}.{k}", depth + 1) for k, v in inner.items()}
        return {k: _decode(v, fetch, f"{where}.{k}", depth + 1) for k, v in value.items()}
    return value


def max_checkpoint_bytes():
    """The most array data a checkpoint may declare in all: this machine's physical memory.

    (A checkpoint that cannot fit in memory cannot be loaded anyway; the bound refuses a
    crafted or damaged size before anything is allocated.)
    """
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 1 << 40


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
    """Load a file written by `save_state` (through :mod:`cnnframe._npz`; nothing is unpickled).

    The archive's headers and metadata are checked before any array is read: every array
    must be one the metadata refers to, and all of them together must fit in memory
    (:func:`max_checkpoint_bytes`).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    CheckpointError
        Naming `path` and the cause, for every other failure to read it: a file that is
        truncated, corrupt, encrypted, oversized or not a cnnframe checkpoint.
    """
    path = os.fspath(path)
    try:
        with NpzReader(path) as npz:
            return _read_state(path, npz)
    except (CheckpointError, FileNotFoundError):
        raise
    except NotAnArchiveError as exc:
        raise CheckpointError(f"{path}: not a cnnframe checkpoint ({exc})") from None
    except NpzError as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    except _BadMeta as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata at {exc}") from None
    except Exception as exc:  # whatever else a damaged file provokes (MemoryError, OSError, ...)
        raise CheckpointError(f"{path}: not a readable checkpoint "
                              f"({type(exc).__name__}: {exc})") from exc


def _read_state(path, npz):
    members = npz.members
    meta_member = members.get(_META_KEY)
    if meta_member is None:
        raise CheckpointError(f"{path}: not a cnnframe checkpoint (no {_META_KEY} entry)")
    if meta_member.dtype.kind != "U" or meta_member.shape != ():
        raise CheckpointError(f"{path}: corrupt checkpoint metadata (a text entry expected, "
                              f"got {meta_member.describe()})")
    text = str(npz.read(_META_KEY, max_bytes=_MAX_META_BYTES)[()])
    try:
        meta = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata (nested too deeply)") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnframe checkpoint")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')!r:.40}, "
                              f"this cnnframe reads version {FORMAT_VERSION}")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: corrupt checkpoint metadata (the state is not a dict)")

    # First pass: which arrays the metadata refers to (no data read yet).
    referenced = set()

    def note(key, where):
        if key == _META_KEY or key not in members:
            raise _BadMeta(f"{where}: refers to a missing array {key!r:.80}")
        referenced.add(key)

    _decode(state, note)
    unexpected = [k for k in members if k != _META_KEY and k not in referenced]
    if unexpected:
        listed = ", ".join(f"{k!r} ({members[k].describe()})" for k in unexpected[:5])
        raise CheckpointError(f"{path}: not a cnnframe checkpoint: entries its metadata does "
                              f"not refer to: {listed}" + (" ..." if len(unexpected) > 5 else ""))
    total = sum(members[k].nbytes for k in referenced)
    limit = max_checkpoint_bytes()
    if total > limit:
        raise CheckpointError(f"{path}: its arrays declare {total:,} bytes in all, more than "
                              f"this machine's memory ({limit:,} bytes)")
    data = {k: npz.read(k) for k in referenced}
    return _decode(state, lambda key, where: data[key])


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
    """The newest checkpoint in `folder` that loads completely, or None when there is none.

    Returns
    -------
    (path, state) or None
        Damaged files are skipped with a RuntimeWarning naming each of them and the cause.

    Raises
    ------
    CheckpointError
        When checkpoint files exist but none of them loads (listing them): starting
        over from scratch would not be what the caller asked for.
    """
    damaged = []
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_state(path)
        except FileNotFoundError:  # deleted since it was listed (pruned by another writer)
            continue
        except CheckpointError as exc:
            damaged.append(str(exc))
            warnings.warn(f"skipping unreadable checkpoint: {exc}", RuntimeWarning, stacklevel=2)
    if damaged:
        raise CheckpointError(f"{os.fspath(folder)}: no checkpoint loads; "
                              + "; ".join(damaged))
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
        # Temporary files of writes killed mid-way by an earlier run (see cnnframe._files).
        self.removed_temp_files = remove_stale_temp_files(self.folder, _FILE_RE)

    def save(self, state, epoch, step, tag=None):
        """Write `state` as the checkpoint of (`epoch`, `step`); return its path."""
        path = os.path.join(self.folder, checkpoint_name(epoch, step, tag))
        save_state(path, state)
        self.last_saved = path
        self._prune()
        return path

    def save_best(self, state):
        """Write `state` as ``best.npz`` in the folder (replacing it); return its path.

        It is not one of the numbered checkpoints: never pruned, never the one resumed
        by default (``Trainer.fit(resume="…/best.npz")`` resumes from it).
        """
        path = os.path.join(self.folder, BEST_NAME)
        save_state(path, state)
        return path

    @property
    def best_path(self):
        """The path of ``best.npz`` (whether or not it exists yet)."""
        return os.path.join(self.folder, BEST_NAME)

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
