"""Saving and loading models: one .npz file with the config (JSON) and the weights.

File layout (written with ``np.savez``; read with ``np.load(allow_pickle=False)``,
so loading never unpickles anything):

- ``__cnnframe_format__``: int64 array ``[FORMAT_VERSION]``
- ``__cnnframe_config__``: uint8 array, the UTF-8 JSON of ``model.to_config()``
- ``"<node>.<name>"``: one array per parameter and buffer (``model.state_dict()``)

The suggested extension is ``.cnnf`` (any name works; ``.npz`` lets numpy tools
open the file).  Writes are atomic: a temporary file in the same directory is
renamed over the target, so a crash never leaves a half-written model.
"""
import json
import os

import numpy as np
from numpy.lib.npyio import NpzFile

from cnnframe._files import atomic_write

FORMAT_VERSION = 1
FORMAT_KEY = "__cnnframe_format__"
CONFIG_KEY = "__cnnframe_config__"
SUFFIX = ".cnnf"


def save_model(model, path):
    """Write `model` (config, parameters, buffers) to `path` atomically; return the path."""
    path = os.fspath(path)
    config = json.dumps(model.to_config(), sort_keys=False).encode("utf-8")
    arrays = {FORMAT_KEY: np.array([FORMAT_VERSION], np.int64),
              CONFIG_KEY: np.frombuffer(config, np.uint8)}
    for k, v in model.params.items():
        arrays[k] = v
    for k, v in model.buffers.items():
        arrays[k] = v
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def _read_arrays(path):
    """All arrays of an npz file, fully read (so corruption shows up here)."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, NpzFile):
            raise ValueError(f"it holds a single {type(data).__name__}, not a saved model")
        with data:
            return {k: data[k] for k in data.files}
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # any damage (zipfile/zlib/format errors) -> one clear error
        raise ValueError(f"{path}: not a cnnframe model file or it is truncated/corrupted "
                         f"({type(exc).__name__}: {exc})") from None


def load_model(path, cls=None):
    """Load a model written by :func:`save_model`.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        Naming `path`, for a truncated, corrupted or foreign file, an unsupported
        format version, or weights that do not match the stored config.
    """
    if cls is None:
        from cnnframe.graph.model import Model as cls
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    arrays = _read_arrays(path)
    if FORMAT_KEY not in arrays or CONFIG_KEY not in arrays:
        raise ValueError(f"{path}: not a cnnframe model file (an npz archive without the "
                         f"{FORMAT_KEY} and {CONFIG_KEY} entries)")
    version = arrays.pop(FORMAT_KEY)
    if version.shape != (1,) or version.dtype.kind not in "iu":
        raise ValueError(f"{path}: corrupted cnnframe model file (bad format version entry)")
    if int(version[0]) != FORMAT_VERSION:
        raise ValueError(f"{path}: cnnframe model format version {int(version[0])} is not "
                         f"supported by this cnnframe (it reads version {FORMAT_VERSION})")
    raw = arrays.pop(CONFIG_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("config entry is not a uint8 vector")
        config = json.loads(raw.tobytes().decode("utf-8"))
        model = cls.from_config(config)
    except Exception as exc:  # a damaged config must not surface as some other error
        raise ValueError(f"{path}: corrupted or incompatible model config: {exc}") from None
    try:
        model.load_state_dict(arrays)
    except Exception as exc:
        raise ValueError(f"{path}: the stored weights do not match the stored config: "
                         f"{exc}") from None
    return model
