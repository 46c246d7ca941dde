"""What the compiled kernels were built with, the instruction set they use, and OpenMP's
default thread count.

The kernels exist in up to three versions (src/simd.h): for AVX-512, for AVX2 and FMA,
and generic.  They use the best one the CPU runs.  Every kernel module registers its
level setter here when imported (`_register`).
"""
cimport cnnframe_ext._simd as _simd


cdef extern from "src/runtime.h":
    int cnnframe_max_threads() noexcept nogil
    int CNNFRAME_HAVE_OPENMP

OPENMP = bool(CNNFRAME_HAVE_OPENMP)
_active = _simd.cnnf_cpu_isa()
_setters = []


def max_threads():
    """The number of threads OpenMP would use by default (1 in a serial build)."""
    return cnnframe_max_threads()


def _register(setter):
    """Called by each kernel module at import with its own level setter (an int level)."""
    _setters.append(setter)
    setter(_active)
