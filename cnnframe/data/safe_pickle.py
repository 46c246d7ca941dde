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


def _check_plain(obj, depth=0):
    if depth > 20:
        raise pickle.UnpicklingError("nesting deeper than 20 levels")
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("arrays of objects are not allowed")
        return
    if isinstance(obj, dict):
        items = [v for kv in obj.items() for v in kv]
    elif isinstance(obj, (list, tuple)):
        items = obj
    else:
        raise pickle.UnpicklingError(f"value of type {type(obj).__name__} is not allowed")
    for item in items:
        _check_plain(item, depth + 1)


def safe_loads(data, encoding="bytes"):
    """Unpickle `data` (bytes) admitting only dict/list/tuple/bytes/str/numbers/numpy arrays.

    Parameters
    ----------
    data : bytes
        The pickle.
    encoding : str
        How Python 2 str objects are decoded; "bytes" (the default) keeps them as bytes, which is
        how the CIFAR-10 batches are meant to be read.

    Returns
    -------
    object
        The unpickled value.

    Raises
    ------
    pickle.UnpicklingError
        For any disallowed global or value; also for malformed or truncated data.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. numpy's SystemError/RuntimeError from
        # BUILD on an admitted dtype: any failure of a hostile file is an UnpicklingError
        raise pickle.UnpicklingError(f"malformed pickle ({type(exc).__name__}: {exc})") from exc
    _check_plain(obj)
    return obj
