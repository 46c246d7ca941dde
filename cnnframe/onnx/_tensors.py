"""Reading ONNX tensors and attributes safely.

Every tensor's size is checked against a limit from its declared dims *before*
anything is allocated, its data length is checked against its dims, and external
data is read only from files inside the model's own folder.
"""
import math
import os

import numpy as np


class TensorLimits:
    """How large the tensors of one import may be.

    Parameters
    ----------
    max_bytes : int
        The most bytes one tensor (an initializer, a Constant or a folded value) may take.
    base_dir : str
        The model file's folder: external data must lie inside it.
    path : str
        The model file (named in every error).
    """

    def __init__(self, max_bytes, base_dir, path):
        self.max_bytes = int(max_bytes)
        self.base_dir = base_dir
        self.path = path

    def check(self, shape, itemsize, what):
        """Raise ValueError if a tensor of `shape` would exceed the limit (no allocation)."""
        dims = [int(d) for d in shape]
        if any(d < 0 for d in dims):
            raise ValueError(f"{self.path}: {what} declares negative dims {dims}")
        nbytes = math.prod(dims) * int(itemsize)
        if nbytes > self.max_bytes:
            raise ValueError(f"{self.path}: {what} declares shape {dims} ({nbytes:,} bytes), "
                             f"more than the limit of {self.max_bytes:,} bytes per tensor "
                             "(refused before allocating it; pass max_tensor_bytes= to "
                             "cnnframe.onnx.load to raise the limit)")
        return nbytes


def np_dtype(elem_type, what, path):
    """The numpy dtype of an ONNX TensorProto data type (ValueError for strings and unknowns)."""
    import onnx
    if elem_type == onnx.TensorProto.STRING:
        raise ValueError(f"{path}: {what} holds strings, which cnnframe cannot use")
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"{path}: {what} has an unknown data type {elem_type}") from None


# TensorProto fields that hold typed (not raw) data, by the numpy kind they store.
_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")


def tensor_to_array(tensor, limits, what=None):
    """A numpy array of an ONNX TensorProto, after checking its size and data.

    Raises
    ------
    ValueError
        Naming the model file and the tensor: too large for the limit, data of the
        wrong length, external data outside the model's folder or missing, strings.
    """
    import onnx
    from onnx import numpy_helper
    what = what or f"tensor {tensor.name!r}"
    dtype = np_dtype(tensor.data_type, what, limits.path)
    dims = list(tensor.dims)
    nbytes = limits.check(dims, dtype.itemsize, what)
    count = math.prod(dims)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raw = _read_external(tensor, nbytes, limits, what)
        return np.frombuffer(raw, dtype.newbyteorder("<")).reshape(dims).astype(dtype)
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise ValueError(f"{limits.path}: {what} has {len(tensor.raw_data)} bytes of data "
                             f"but its shape {dims} and type {dtype} need {nbytes}")
    else:
        stored = max((len(getattr(tensor, f)) for f in _TYPED_FIELDS), default=0)
        # float16, bool and small ints are packed one per int32_data entry; complex twice
        expected = count * (2 if dtype.kind == "c" else 1)
        if stored != expected:
            raise ValueError(f"{limits.path}: {what} has {stored} values but its shape "
                             f"{dims} needs {expected}")
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for bad data
        raise ValueError(f"{limits.path}: {what}: cannot read its data: {exc}") from None


def _read_external(tensor, nbytes, limits, what):
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location")
    if not location:
        raise ValueError(f"{limits.path}: {what} is stored externally but names no location")
    base = os.path.realpath(limits.base_dir)
    target = os.path.realpath(os.path.join(base, location))
    if os.path.isabs(location) or os.path.commonpath([base, target]) != base:
        raise ValueError(f"{limits.path}: {what} refers to external data {location!r} outside "
                         f"the model's folder {limits.base_dir!r}; refused (external data must "
                         "be a file in the model's folder or below it)")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else nbytes
    except ValueError:
        raise ValueError(f"{limits.path}: {what}: external data offset/length must be "
                         f"integers, got {info}") from None
    if length != nbytes or offset < 0:
        raise ValueError(f"{limits.path}: {what}: external data length {length} at offset "
                         f"{offset} does not match its shape {list(tensor.dims)} "
                         f"({nbytes} bytes)")
    if not os.path.isfile(target):
        raise ValueError(f"{limits.path}: {what}: external data file {location!r} not found "
                         f"in {limits.base_dir!r}")
    size = os.path.getsize(target)
    if offset + length > size:
        raise ValueError(f"{limits.path}: {what}: external data file {location!r} has "
                         f"{size} bytes, too few for {length} bytes at offset {offset}")
    with open(target, "rb") as f:
        f.seek(offset)
        return f.read(length)


def attributes(node, limits):
    """A node's attributes as {name: Python value or numpy array}."""
    import onnx
    A = onnx.AttributeProto
    out = {}
    for a in node.attribute:
        where = f"attribute {a.name!r} of node {node.name!r} ({node.op_type})"
        if a.type == A.FLOAT:
            out[a.name] = float(a.f)
        elif a.type == A.INT:
            out[a.name] = int(a.i)
        elif a.type == A.STRING:
            out[a.name] = a.s.decode("utf-8", "replace")
        elif a.type == A.FLOATS:
            out[a.name] = [float(v) for v in a.floats]
        elif a.type == A.INTS:
            out[a.name] = [int(v) for v in a.ints]
        elif a.type == A.STRINGS:
            out[a.name] = [s.decode("utf-8", "replace") for s in a.strings]
        elif a.type == A.TENSOR:
            out[a.name] = tensor_to_array(a.t, limits, where)
        else:  # graphs (If/Loop bodies), sparse tensors, type protos
            out[a.name] = _Unsupported(a.type)
    return out


class _Unsupported:
    """An attribute kind the importer does not read (reported if a converter needs it)."""

    def __init__(self, kind):
        self.kind = kind

    def __repr__(self):
        return f"<unsupported attribute type {self.kind}>"
