"""Scratch buffers reused across kernel calls.

Touching freshly allocated memory costs about 1 ms per MiB here (page faults),
more than a small convolution, so each (purpose, dtype) keeps one buffer that
only grows.  The kernels index it per OpenMP thread.
"""
import threading

import numpy as np

# Upper bound on one call's scratch memory; a conv needing more raises MemoryError.
MAX_SCRATCH_BYTES = 1 << 30

_buffers = {}
_lock = threading.Lock()


def scratch(purpose, dtype, rows, cols):
    """A (rows, cols) C-contiguous view of a reused buffer; contents are undefined."""
    dtype = np.dtype(dtype)
    rows, cols = max(int(rows), 1), max(int(cols), 1)
    need = rows * cols
    if need * dtype.itemsize > MAX_SCRATCH_BYTES:
        raise MemoryError(
            f"{purpose}: needs {rows} x {cols} x {dtype.itemsize} bytes = "
            f"{need * dtype.itemsize / 2**20:.1f} MiB of scratch memory, above the limit of "
            f"{MAX_SCRATCH_BYTES} bytes = {MAX_SCRATCH_BYTES / 2**20:.1f} MiB "
            "(cnnframe.functional.set_scratch_limit)")
    key = (purpose, dtype, threading.get_ident())
    with _lock:
        buf = _buffers.get(key)
        if buf is None or buf.size < need:
            buf = np.empty(max(need, 1), dtype)
            _buffers[key] = buf
    return buf[:need].reshape(rows, cols)


def set_scratch_limit(nbytes):
    """Set the largest scratch memory one kernel call may use, in bytes."""
    global MAX_SCRATCH_BYTES
    if not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"nbytes must be a positive int, got {nbytes!r}")
    MAX_SCRATCH_BYTES = nbytes


def release_scratch():
    """Drop every cached scratch buffer (they are rebuilt on demand)."""
    with _lock:
        _buffers.clear()
