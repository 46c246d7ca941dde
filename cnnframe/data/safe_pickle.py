"""A restricted unpickler for the official CIFAR-10 python batches.

Those batches are pickled dicts of bytes, str, int, lists and numpy arrays. `safe_load` admits only
the few callables needed to rebuild those values; any other global (``os.system``,
``builtins.eval``, ...) is refused before it can be called, so a malicious file cannot run code.
"""
import codecs
import io
import pickle

import numpy as np


def _dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("object dtypes are not allowed")
    return dt


def _latin1_encode(text, encoding="latin1"):
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(text, "latin1"); admit only that.
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"array subtype {subtype!r} is not allowed")
    return np.ndarray.__new__(np.ndarray, shape, _dtype(dtype))


def _frombuffer(buf, dtype, shape, order):
    # protocol 5 form of an array; a copy so the result owns writable memory
    return np.frombuffer(buf, dtype=_dtype(dtype)).reshape(shape, order=order).copy()


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class admits only the globals in `_ALLOWED`."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only plain values and numpy arrays "
                "are allowed in a dataset file") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in a dataset file")


_PLAIN = (bytes, str, int, float, bool, type(None))
MAX_DEPTH = 20
# A CIFAR-10 batch holds about 20,000 values (10,000 labels and 10,000 file names).
MAX_OBJECTS = 1_000_000


def _check_plain(obj, max_objects=MAX_OBJECTS):
    """Raise UnpicklingError unless `obj` is built of plain values only.

    A pickle can refer to one container many times (its memo), so a few hundred bytes can
    describe a tree with billions of paths. The walk therefore visits each container once (by
    id) and counts every reference it looks at, so its cost is linear in the pickle's size and
    never more than `max_objects` steps.
    """
    seen = set()
    stack = [(obj, 0)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > max_objects:
            raise pickle.UnpicklingError(
                f"more than {max_objects} values: too many for a dataset batch")
        if isinstance(item, _PLAIN):
            continue
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise pickle.UnpicklingError("arrays of objects are not allowed")
            continue
        if not isinstance(item, (dict, list, tuple)):
            raise pickle.UnpicklingError(f"value of type {type(item).__name__} is not allowed")
        if id(item) in seen:  # a shared (or cyclic) reference: its contents are checked
            continue
        seen.add(id(item))
        if depth >= MAX_DEPTH:
            raise pickle.UnpicklingError(f"nesting deeper than {MAX_DEPTH} levels")
        children = [v for kv in item.items() for v in kv] if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)


def safe_loads(data, encoding="bytes", max_objects=MAX_OBJECTS):
    """Unpickle `data` (bytes) admitting only dict/list/tuple/bytes/str/numbers/numpy arrays.

    Parameters
    ----------
    data : bytes
        The pickle.
    encoding : str
        How Python 2 str objects are decoded; "bytes" (the default) keeps them as bytes, which is
        how the CIFAR-10 batches are meant to be read.
    max_objects : int
        The most values (container entries, counted once per container) the result may hold.

    Returns
    -------
    object
        The unpickled value.

    Raises
    ------
    pickle.UnpicklingError
        For any disallowed global or value, more than `max_objects` values or nesting deeper
        than 20 levels; also for malformed or truncated data.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. numpy's SystemError/RuntimeError from
        # BUILD on an admitted dtype: any failure of a hostile file is an UnpicklingError
        raise pickle.UnpicklingError(f"malformed pickle ({type(exc).__name__}: {exc})") from exc
    _check_plain(obj, max_objects)
    return obj
