"""Thread settings shared by the compiled kernels and BLAS.

The conv kernels split a batch between OpenMP threads and call a
single-threaded BLAS GEMM inside each thread, so the BLAS library that
scipy's Cython BLAS resolves to is pinned to one thread.  numpy's own BLAS
(linear layers, einsum) runs on one thread too by default: its idle workers
busy-wait after each call and take a core away from the next conv kernel
(measured on cifar10_small: 15% fewer images/s with 2 numpy BLAS threads).
"""
import os
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

_BLAS_APIS = ("openblas", "mkl", "blis")


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _split_blas_libraries():
    """Return (numpy's BLAS controllers, the BLAS controllers scipy's Cython BLAS uses)."""
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS the kernels call)
    scipy_dir = Path(scipy.__file__).resolve().parent
    # Wheels vendor scipy's BLAS in site-packages/scipy.libs; other builds link inside scipy/.
    scipy_places = (str(scipy_dir) + os.sep, str(scipy_dir.parent / "scipy.libs") + os.sep)
    libs = [lib for lib in ThreadpoolController().lib_controllers
            if lib.internal_api in _BLAS_APIS]
    kernel_libs = [lib for lib in libs
                   if str(Path(lib.filepath).resolve()).startswith(scipy_places)]
    if not kernel_libs:  # numpy and scipy share one system BLAS
        return [], libs
    return [lib for lib in libs if lib not in kernel_libs], kernel_libs


_numpy_blas, _kernel_blas = _split_blas_libraries()
_num_threads = _cpu_count()


def set_num_threads(n, blas_threads=1):
    """Set the threads of cnnframe's kernels and of the BLAS libraries, together.

    Parameters
    ----------
    n : int
        OpenMP threads for the conv/pool kernels, >= 1.  The default is every
        core this process may run on.  Each kernel thread calls BLAS on its own
        single thread.
    blas_threads : int
        Threads for numpy's BLAS (linear layers, einsum); 1 by default, since
        its spinning idle workers slow the conv kernels down.
    """
    global _num_threads
    for value, name in ((n, "n"), (blas_threads, "blas_threads")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"set_num_threads: {name} must be an integer >= 1, got {value!r}")
    _num_threads = int(n)
    for lib in _kernel_blas:
        lib.set_num_threads(1)
    for lib in _numpy_blas:
        lib.set_num_threads(int(blas_threads))


set_num_threads(_num_threads)


def get_num_threads():
    """The number of threads cnnframe's kernels use."""
    return _num_threads


# Below this many basic operations (multiply-adds, element visits) a kernel call
# runs on one thread: waking a second thread, and waiting for it at the end when
# the machine is busy, costs more than the split saves.
SERIAL_WORK = 1 << 20


def threads_for(work, items):
    """Threads for one kernel call doing `work` operations over `items` independent pieces."""
    if work < SERIAL_WORK:
        return 1
    return max(1, min(_num_threads, items))
