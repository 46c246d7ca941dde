"""Saving and loading models: one .npz file with the config (JSON) and the weights.

File layout (written with ``np.savez``; read with the safe reader of :mod:`cnnframe._npz`,
so loading never unpickles anything):

- ``__cnnframe_format__``: int64 array ``[FORMAT_VERSION]``
- ``__cnnframe_config__``: uint8 array, the UTF-8 JSON of ``model.to_config()``
- ``"<node>.<name>"``: one array per parameter and buffer (``model.state_dict()``)

The suggested extension is ``.cnnf`` (any name works; ``.npz`` lets numpy tools
open the file).  A name ending in ``.safetensors`` is written and read as a safetensors
file instead (see :func:`save_model`), which other frameworks' tools read too.  Writes
are atomic: a temporary file in the same directory is renamed over the target, so a
crash never leaves a half-written model.

Loading checks before it reads: the zip directory and every member's ``.npy`` header
(name, shape, dtype) are read first; the config (at most ``MAX_CONFIG_BYTES``) is read
and the model built; then every other member must be one of the model's parameters or
buffers with exactly its shape (so its size is the one the config implies) before
any weight is decompressed.  A file with extra, missing, misshapen or oversized members
is refused without inflating them.
"""
import json
import os
from pathlib import Path

import numpy as np

from cnnframe._files import atomic_write
from cnnframe._npz import NotAnArchiveError, NpzError, NpzReader
from cnnframe.graph.sizes import ModelTooLargeError
from cnnframe.registry import UnknownLayerError, get_layer, plugin_errors

FORMAT_VERSION = 1
FORMAT_KEY = "__cnnframe_format__"
CONFIG_KEY = "__cnnframe_config__"
SUFFIX = ".cnnf"
SAFETENSORS_SUFFIX = ".safetensors"  # save_model/load_model's other format
RUN_MODEL_FILE = "model.cnnf"      # the final model inside a run folder (cnnframe train --out)
MAX_CONFIG_BYTES = 16 << 20        # a config's JSON; real ones are a few KB
_WEIGHT_KINDS = "fiu"              # dtypes Model.load_state_dict converts
_MAX_WEIGHT_ITEMSIZE = 8           # float64 / int64: caps a weight at 8 bytes per element


def _is_safetensors(path):
    return os.fspath(path).lower().endswith(SAFETENSORS_SUFFIX)


def save_model(model, path):
    """Write `model` (config, parameters, buffers) to `path` atomically; return the path.

    A path ending in ``.safetensors`` gets a safetensors file: the parameters and buffers
    as tensors named like ``Model.state_dict`` keys, and the config (JSON) and format
    version in its metadata under the same keys as in the npz format (needs the
    safetensors package).  Any other path gets the npz format described above.
    """
    path = os.fspath(path)
    if _is_safetensors(path):
        from cnnframe.interop import write_safetensors
        metadata = {FORMAT_KEY: str(FORMAT_VERSION),
                    CONFIG_KEY: json.dumps(model.to_config(), sort_keys=False)}
        return write_safetensors({**model.params, **model.buffers}, path, metadata)
    config = json.dumps(model.to_config(), sort_keys=False).encode("utf-8")
    arrays = {FORMAT_KEY: np.array([FORMAT_VERSION], np.int64),
              CONFIG_KEY: np.frombuffer(config, np.uint8)}
    for k, v in model.params.items():
        arrays[k] = v
    for k, v in model.buffers.items():
        arrays[k] = v
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def find_model_file(path):
    """The model file for a model file or a run folder, as the CLI accepts either.

    Parameters
    ----------
    path : str or os.PathLike
        A model file, or a run folder (``cnnframe train --out``) holding ``model.cnnf``.

    Returns
    -------
    (Path, Path)
        The model file and the folder it is in (the run folder).

    Raises
    ------
    FileNotFoundError
        For a missing path, or a folder without ``model.cnnf`` (the message says where a
        run's checkpoints are).
    """
    path = Path(path)
    if path.is_dir():
        model = path / RUN_MODEL_FILE
        if not model.exists():
            raise FileNotFoundError(f"{path} is a folder without {RUN_MODEL_FILE} (is the run "
                                    "finished? a checkpoint's weights are in checkpoints/)")
        return model, path
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    return path, path.parent


def _missing_layer_types(config):
    """[(node name, layer type)] of the config's layers that no registered class provides."""
    from cnnframe.graph.config import normalize_config
    missing = []
    for node in normalize_config(config)["nodes"]:
        try:
            get_layer(node["type"])
        except UnknownLayerError:
            missing.append((node["name"], node["type"]))
    return missing


def _plugin_message(path, missing):
    types = sorted({t for _, t in missing})
    where = ", ".join(f"{t!r} (node {n!r})" for n, t in missing)
    msg = (f"{path}: the model uses layer type{'s' if len(types) > 1 else ''} {where}, which "
           "cnnframe does not provide: the plugin package that registers "
           f"{'them' if len(types) > 1 else 'it'} is not installed. Install that package in "
           "this environment (`cnnframe layers` lists the layer types available now)")
    broken = plugin_errors()
    if broken:
        msg += ". Note: " + "; ".join(str(e) for e in broken)
    return msg


def _check_weights(path, model, members):
    """Refuse (before reading any) members that are not the model's params/buffers as built."""
    expected = {**model.params, **model.buffers}
    unexpected = [f"{k!r} ({m.describe()})" for k, m in members.items()
                  if k not in expected and k not in (FORMAT_KEY, CONFIG_KEY)]
    missing = [k for k in expected if k not in members]
    bad = []
    for k, target in expected.items():
        m = members.get(k)
        if m is None:
            continue
        if m.shape != target.shape:
            bad.append(f"{k}: expected shape {target.shape}, got {m.shape}")
        elif m.dtype.kind not in _WEIGHT_KINDS or m.dtype.itemsize > _MAX_WEIGHT_ITEMSIZE:
            bad.append(f"{k}: dtype {m.dtype}, expected a float or int of at most "
                       f"{_MAX_WEIGHT_ITEMSIZE} bytes")
    if missing or unexpected or bad:
        parts = ([f"missing entries {missing}"] if missing else []) + (
            [f"unexpected entries {', '.join(unexpected)}"] if unexpected else []) + (
            [f"mismatches ({'; '.join(bad)})"] if bad else [])
        raise ValueError(f"{path}: the stored weights do not match the stored config: "
                         + ", ".join(parts))
    return {k: target.size * _MAX_WEIGHT_ITEMSIZE for k, target in expected.items()}


def load_model(path, cls=None):
    """Load a model written by :func:`save_model` (a model file or a run folder).

    Parameters
    ----------
    path : str or os.PathLike
        A model file (``.safetensors`` files are read as such), or a run folder holding
        ``model.cnnf``.
    cls : type, optional
        The Model class to build (default :class:`cnnframe.graph.Model`).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist, or is a folder without ``model.cnnf``.
    ValueError
        Naming the file, for: a file that is not a cnnframe model file; a truncated
        or corrupted one; an unsupported format version; a layer type whose plugin
        package is not installed; weights that do not match the stored config
        (extra, missing, misshapen or oversized entries are refused before they are
        decompressed).
    """
    if cls is None:
        from cnnframe.graph.model import Model as cls
    path, _ = find_model_file(path)
    path = str(path)
    if _is_safetensors(path):
        return _load_safetensors(path, cls)
    try:
        with NpzReader(path) as npz:
            return _load(path, npz, cls)
    except NotAnArchiveError as exc:
        raise ValueError(f"{path}: not a cnnframe model file ({exc})") from None
    except NpzError as exc:
        raise ValueError(f"{path}: not a cnnframe model file or it is truncated/corrupted "
                         f"({exc})") from None


def _load_safetensors(path, cls):
    """A model from a .safetensors file written by :func:`save_model`: the header and its
    metadata are checked, and the model built, before any tensor is read."""
    from cnnframe.interop import read_safetensors, read_safetensors_header
    metadata, tensors = read_safetensors_header(path)
    if CONFIG_KEY not in metadata:
        raise ValueError(f"{path}: not a cnnframe model file (a .safetensors file without "
                         f"the {CONFIG_KEY} metadata); to load its weights into a model use "
                         "model.load_state_dict(cnnframe.interop.read_weights(path))")
    if metadata.get(FORMAT_KEY) != str(FORMAT_VERSION):
        raise ValueError(f"{path}: cnnframe model format version "
                         f"{metadata.get(FORMAT_KEY)!r} is not supported by this cnnframe "
                         f"(it reads version {FORMAT_VERSION})")
    try:
        config = json.loads(metadata[CONFIG_KEY])
        missing_types = _missing_layer_types(config)
    except Exception as exc:  # a damaged config must not surface as some other error
        raise ValueError(f"{path}: corrupted or incompatible model config: {exc}") from None
    if missing_types:
        raise ValueError(_plugin_message(path, missing_types))
    try:
        model = cls.from_config(config)
    except ModelTooLargeError as exc:
        raise ModelTooLargeError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{path}: corrupted or incompatible model config: {exc}") from None
    members = {k: _SafetensorsMember(dtype, shape) for k, (dtype, shape, _) in tensors.items()}
    _check_weights(path, model, members)
    arrays = read_safetensors(path)
    try:
        model.load_state_dict(arrays)
    except Exception as exc:
        raise ValueError(f"{path}: the stored weights do not match the stored config: "
                         f"{exc}") from None
    return model


class _SafetensorsMember:
    """A safetensors header entry with the npz member attributes _check_weights reads."""

    def __init__(self, dtype, shape):
        from cnnframe.interop import SAFETENSORS_DTYPES
        self.safetensors_dtype = dtype
        self.dtype = np.dtype(SAFETENSORS_DTYPES[dtype])
        self.shape = shape

    def describe(self):
        return f"{self.safetensors_dtype} {self.shape}"


def _load(path, npz, cls):
    members = npz.members
    if FORMAT_KEY not in members or CONFIG_KEY not in members:
        raise ValueError(f"{path}: not a cnnframe model file (an npz archive without the "
                         f"{FORMAT_KEY} and {CONFIG_KEY} entries)")
    version_member = members[FORMAT_KEY]
    if version_member.shape != (1,) or version_member.dtype.kind not in "iu":
        raise ValueError(f"{path}: corrupted cnnframe model file (bad format version entry)")
    version = int(npz.read(FORMAT_KEY)[0])
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: cnnframe model format version {version} is not "
                         f"supported by this cnnframe (it reads version {FORMAT_VERSION})")
    config_member = members[CONFIG_KEY]
    try:
        if config_member.dtype != np.uint8 or len(config_member.shape) != 1:
            raise ValueError("config entry is not a uint8 vector")
        raw = npz.read(CONFIG_KEY, max_bytes=MAX_CONFIG_BYTES)
        config = json.loads(raw.tobytes().decode("utf-8"))
        missing_types = _missing_layer_types(config)
    except NpzError:
        raise
    except Exception as exc:  # a damaged config must not surface as some other error
        raise ValueError(f"{path}: corrupted or incompatible model config: {exc}") from None
    if missing_types:
        raise ValueError(_plugin_message(path, missing_types))
    try:
        model = cls.from_config(config)
    except ModelTooLargeError as exc:  # a well-formed config too big for this machine
        raise ModelTooLargeError(f"{path}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{path}: corrupted or incompatible model config: {exc}") from None
    limits = _check_weights(path, model, members)
    arrays = {k: npz.read(k, max_bytes=limit) for k, limit in limits.items()}
    try:
        model.load_state_dict(arrays)
    except Exception as exc:
        raise ValueError(f"{path}: the stored weights do not match the stored config: "
                         f"{exc}") from None
    return model
