"""Weights from elsewhere: ``.safetensors`` and PyTorch ``.pt``/``.pth`` files as numpy dicts.

- :func:`read_weights` reads a weights file into ``{key: ndarray}``, ready for
  :meth:`cnnframe.graph.Model.load_state_dict` (which matches PyTorch's key names to
  the model's nodes).  ``.safetensors`` files are read with the ``safetensors``
  package's numpy API (``pip install cnnframe[onnx]``); ``.pt``/``.pth`` files with
  ``torch.load(weights_only=True)``, only where PyTorch is installed (cnnframe never
  needs it).
- :func:`write_safetensors` writes such a dict, atomically (``Model.save("m.safetensors")``
  uses it, with the model's config in the file's metadata).

Nothing is allocated from a size a file merely declares: a ``.safetensors`` header is
checked (every tensor's dtype, shape and byte range must agree and lie inside the file)
and a ``.pt`` file's zip directory read, and the total is compared with `max_bytes`
(by default the model size limit of :mod:`cnnframe.graph.sizes`), before any tensor is
read.  Nothing is unpickled beyond what ``torch.load(weights_only=True)`` allows.
"""
import json
import math
import os
import struct
import zipfile

import numpy as np

from cnnframe._files import atomic_write

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pt", ".pth")
MAX_SAFETENSORS_HEADER = 100 << 20   # the safetensors format's own limit
# safetensors dtype -> numpy dtype (BF16 is widened to float32 here: numpy has no bfloat16)
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
                      "I32": "<i4", "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4",
                      "U16": "<u2", "U8": "u1", "BOOL": "?"}
# Top-level keys under which training scripts commonly nest the state dict in a .pt file.
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


def _require_safetensors():
    try:
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError("reading and writing .safetensors files needs the safetensors "
                          "package, an optional dependency of cnnframe: pip install "
                          "cnnframe[onnx]") from exc
    return safetensors


def _default_max_bytes(max_bytes):
    if max_bytes is None:
        from cnnframe.graph.sizes import model_size_limit
        return model_size_limit()[0]
    return max_bytes


def read_safetensors_header(path):
    """The checked header of a .safetensors file, without reading any tensor.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    metadata : dict of str -> str
    tensors : dict
        Name -> (safetensors dtype, shape tuple, (begin, end) byte offsets from the
        start of the file), in the file's order.

    Raises
    ------
    ValueError
        Naming the file, for anything but a well-formed header whose tensors' byte
        ranges match their dtypes and shapes and lie inside the file.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{path}: not a .safetensors file (shorter than its 8-byte header "
                             "length)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise ValueError(f"{path}: not a .safetensors file or truncated (it declares a "
                             f"{n:,}-byte header; the file has {size:,} bytes, the format "
                             f"allows at most {MAX_SAFETENSORS_HEADER:,})")
        text = f.read(n)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a .safetensors file (its header is not JSON: "
                         f"{exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a .safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"{path}: corrupted .safetensors file (__metadata__ must map strings "
                         "to strings)")
    data_start, tensors = 8 + n, {}
    for name, entry in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{where}: expected dtype, shape and data_offsets, got {entry!r}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{where}: dtype {dtype!r} is not supported (supported: "
                             f"{', '.join(SAFETENSORS_DTYPES)})")
        if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise ValueError(f"{where}: shape must be a list of ints >= 0, got {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(
                isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise ValueError(f"{where}: data_offsets must be [begin, end] with 0 <= begin <= "
                             f"end, got {offsets!r}")
        nbytes = math.prod(shape) * np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise ValueError(f"{where}: shape {shape} of {dtype} needs {nbytes:,} bytes but "
                             f"data_offsets {offsets} hold {offsets[1] - offsets[0]:,}")
        if data_start + offsets[1] > size:
            raise ValueError(f"{where}: its data ends at byte {data_start + offsets[1]:,}, "
                             f"beyond the end of the file ({size:,} bytes): truncated?")
        tensors[name] = (dtype, tuple(shape), (data_start + offsets[0], data_start + offsets[1]))
    return metadata, tensors


def _bfloat16_to_float32(raw):
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path, names=None, max_bytes=None):
    """Tensors of a .safetensors file as numpy arrays (BF16 widened to float32).

    Parameters
    ----------
    path : str or os.PathLike
    names : iterable of str, optional
        Only these tensors (default: all).
    max_bytes : int, optional
        Refuse files whose tensors hold more (default: the model size limit).

    Returns
    -------
    dict of str -> ndarray, in the file's order.

    Raises
    ------
    ValueError
        Naming the file: a malformed header (:func:`read_safetensors_header`), a
        missing name, or more than `max_bytes` of tensors.
    ImportError
        Without the safetensors package.
    """
    path = os.fspath(path)
    _, tensors = read_safetensors_header(path)
    wanted = list(tensors) if names is None else list(names)
    absent = [k for k in wanted if k not in tensors]
    if absent:
        raise ValueError(f"{path}: no tensor{'s' if len(absent) > 1 else ''} "
                         f"{', '.join(map(repr, absent))} in the file")
    total = sum(tensors[k][2][1] - tensors[k][2][0] for k in wanted)
    limit = _default_max_bytes(max_bytes)
    if total > limit:
        raise ValueError(f"{path}: its tensors hold {total:,} bytes, more than the limit of "
                         f"{limit:,} bytes")
    safetensors = _require_safetensors()
    out = {}
    with safetensors.safe_open(path, framework="np") as f:
        for k in wanted:
            dtype, shape, (begin, end) = tensors[k]
            if dtype == "BF16":  # numpy has no bfloat16: read the raw bits
                with open(path, "rb") as raw:
                    raw.seek(begin)
                    bits = np.frombuffer(raw.read(end - begin), "<u2").reshape(shape)
                out[k] = _bfloat16_to_float32(bits)
            else:
                out[k] = f.get_tensor(k)
    return out


def write_safetensors(tensors, path, metadata=None):
    """Write {name: ndarray} as a .safetensors file, atomically; return the path.

    Parameters
    ----------
    tensors : dict of str -> ndarray
    path : str or os.PathLike
    metadata : dict of str -> str, optional
        Stored in the header's ``__metadata__``.
    """
    safetensors = _require_safetensors()
    path = os.fspath(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    data = safetensors.numpy.save(arrays, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))
    return path


def _torch_state(obj, path, torch):
    """The flat {key: tensor} dict inside what torch.load returned."""
    def is_state(d):
        return isinstance(d, dict) and d and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())
    if is_state(obj):
        return obj
    if isinstance(obj, dict):
        for key in _NESTED_STATE_KEYS:
            if is_state(obj.get(key)):
                return obj[key]
        keys = ", ".join(map(repr, list(obj)[:10]))
        raise ValueError(f"{path}: no state dict found: expected a dict of tensors, or one "
                         f"under {', '.join(_NESTED_STATE_KEYS)}; the file holds a dict with "
                         f"keys {keys}")
    raise ValueError(f"{path}: no state dict found: the file holds a {type(obj).__name__}, "
                     "not a dict of tensors (save model.state_dict(), not the model)")


def read_torch(path, max_bytes=None):
    """The state dict of a PyTorch .pt/.pth file as numpy arrays (needs torch installed).

    Reads with ``torch.load(path, map_location="cpu", weights_only=True)`` after checking
    the zip directory's total size against `max_bytes`.  A state dict nested under
    ``state_dict``, ``model_state_dict``, ``model``, ``module`` or ``net`` is found;
    float16/bfloat16 tensors are widened to float32.

    Raises
    ------
    ImportError
        Without torch (with how to convert the file to .safetensors elsewhere).
    ValueError
        Naming the file: not a zip-format PyTorch file (the legacy format of torch < 1.6
        is refused), more than `max_bytes`, or no state dict inside.
    """
    path = os.fspath(path)
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"{path}: reading PyTorch .pt/.pth files needs torch, which is not installed "
            "(cnnframe itself never needs it).  Install torch, or convert the file where "
            "torch is installed: from safetensors.torch import save_file; "
            "save_file(torch.load('weights.pt', weights_only=True), 'weights.safetensors') "
            "and read the .safetensors file") from exc
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a PyTorch zip file (torch.save's format since torch "
                         "1.6; files in the older format are refused: re-save them with a "
                         "current torch)")
    limit = _default_max_bytes(max_bytes)
    with zipfile.ZipFile(path) as z:
        total = sum(info.file_size for info in z.infolist())
    if total > limit:
        raise ValueError(f"{path}: it declares {total:,} bytes of contents, more than the "
                         f"limit of {limit:,} bytes")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusals and damaged files alike
        raise ValueError(f"{path}: torch.load(weights_only=True) failed: "
                         f"{type(exc).__name__}: {exc}") from None
    from cnnframe.graph.state_names import as_array
    return {k: as_array(v, k) for k, v in _torch_state(obj, path, torch).items()}


def natural_key(key):
    """Sort key putting ``layer.2.conv`` before ``layer.10.conv`` (numbers compared as numbers)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def read_weights(path, max_bytes=None):
    """A weights file as ``{key: ndarray}``, for :meth:`cnnframe.graph.Model.load_state_dict`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file (read with the safetensors package), or a PyTorch
        ``.pt``/``.pth`` file (read with torch, when it is installed).
    max_bytes : int, optional
        Refuse files holding more (default: the model size limit of
        :mod:`cnnframe.graph.sizes`).

    Returns
    -------
    dict of str -> ndarray
        The file's keys and arrays (PyTorch's names, e.g. ``layer1.0.conv1.weight``).
        A .pt file's keys keep their order (PyTorch's module order, which
        ``load_state_dict`` can match to graph order); a .safetensors file does not
        record one, so its keys come in natural order (``2`` before ``10``): modules
        numbered as in ``nn.Sequential`` still match by order, named ones match by node
        name or a `mapping`.

    Raises
    ------
    FileNotFoundError
    ValueError
        Naming the file: another suffix, a malformed or oversized file.
    ImportError
        Naming the package to install (safetensors, or torch for .pt files).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == SAFETENSORS_SUFFIX:
        tensors = read_safetensors(path, max_bytes=max_bytes)
        return {k: tensors[k] for k in sorted(tensors, key=natural_key)}
    if suffix in TORCH_SUFFIXES:
        return read_torch(path, max_bytes=max_bytes)
    raise ValueError(f"{path}: read_weights reads .safetensors, .pt and .pth files, not "
                     f"{suffix or 'files without a suffix'} (cnnframe models load with "
                     "Model.load)")
