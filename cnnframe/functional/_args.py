"""Argument checks shared by the functional ops.

Every check runs in Python before a kernel sees the data: a kernel without
bounds checks must only ever receive shapes it can handle.
"""
import math
import numbers
import os

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pair(value, name, minimum):
    """Turn an int or an (h, w) pair into a tuple of two ints >= minimum."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, numbers.Integral):
        value = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in value):
        value = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if value[0] < minimum or value[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if max(value) > 2**30:
        raise ValueError(f"{name} is too large: {value}")
    return value


def positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def float_array(x, name, ndim, dtype=None, copy=True):
    """Check x is a float32/float64 ndarray of `ndim` dims; return it C-contiguous.

    A non-contiguous or non-native-byte-order input is copied once.
    `dtype`, when given, is the dtype x must share (e.g. the input's, for weights).
    With copy=False x is only checked and returned as it is (check shapes first, then
    call `contiguous`: copying a huge broadcast array before a shape error costs seconds).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy ndarray, got {type(x).__name__}")
    if x.dtype.newbyteorder("=") not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype.newbyteorder("=") != dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but the input has dtype {dtype}; "
                        f"convert one so both match")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    return contiguous(x) if copy else x


def contiguous(x):
    """x as a C-contiguous array in native byte order (a copy only when needed)."""
    return np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))


def out_size(size, kernel, stride, pad, dilation=1):
    """floor((size + 2*pad - dilation*(kernel-1) - 1) / stride) + 1, as torch.nn.functional."""
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def nonempty_planes(x, name):
    if x.shape[1] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} has shape {x.shape}: channels, height and width must be >= 1 "
                         "(only the batch may be empty)")


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return 1 << 46


PHYSICAL_MEMORY = _physical_memory()


def output_array(shape, dtype, fn, what="output", out=None, inputs=()):
    """The array a kernel writes its result into: `out` after checks, else a new one.

    A caller that passes `out` (e.g. a layer reusing its buffer between training
    steps) must give a C-contiguous, writeable array of exactly `shape` and `dtype`
    that does not overlap any of `inputs`.  A new array is np.empty(shape, dtype),
    refusing sizes beyond the machine's RAM with MemoryError: with memory overcommit
    the allocation itself may succeed and the process then be killed by the OS while
    filling it; refusing first names the sizes instead.
    """
    shape = tuple(shape)
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{fn}: out (for the {what}) must be a numpy ndarray, "
                            f"got {type(out).__name__}")
        if out.shape != shape or out.dtype != dtype:
            raise ValueError(f"{fn}: out (for the {what}) must have shape {shape} and dtype "
                             f"{np.dtype(dtype)}, got shape {out.shape} and dtype {out.dtype}")
        if not (out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"{fn}: out (for the {what}) must be C-contiguous and writeable")
        if any(np.may_share_memory(out, a) for a in inputs):
            raise ValueError(f"{fn}: out (for the {what}) must not overlap the inputs")
        return out
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > PHYSICAL_MEMORY:
        raise MemoryError(f"{fn}: the {what} of shape {shape} needs "
                          f"{nbytes / 2**30:.1f} GiB, more than this machine's "
                          f"{PHYSICAL_MEMORY / 2**30:.1f} GiB of RAM")
    return np.empty(shape, dtype)
