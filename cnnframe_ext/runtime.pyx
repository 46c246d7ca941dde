"""What the compiled kernels were built with, and OpenMP's default thread count."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int cnnframe_max_threads(void) { return omp_get_max_threads(); }
    #define CNNFRAME_HAVE_OPENMP 1
    #else
    static int cnnframe_max_threads(void) { return 1; }
    #define CNNFRAME_HAVE_OPENMP 0
    #endif
    """
    int cnnframe_max_threads() noexcept nogil
    int CNNFRAME_HAVE_OPENMP

OPENMP = bool(CNNFRAME_HAVE_OPENMP)


def max_threads():
    """The number of threads OpenMP would use by default (1 in a serial build)."""
    return cnnframe_max_threads()
