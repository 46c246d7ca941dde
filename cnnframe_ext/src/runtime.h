/* What the kernels were built with and OpenMP's default thread count, for
   cnnframe_ext.runtime.  setup.py defines CNNFRAME_COMPILE_FLAGS and CNNFRAME_CC. */
#ifndef CNNFRAME_RUNTIME_H
#define CNNFRAME_RUNTIME_H

#ifdef _OPENMP
#include <omp.h>
static int cnnframe_max_threads(void) { return omp_get_max_threads(); }
#define CNNFRAME_HAVE_OPENMP 1
#else
static int cnnframe_max_threads(void) { return 1; }
#define CNNFRAME_HAVE_OPENMP 0
#endif

#if defined(__clang__)
#define CNNFRAME_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define CNNFRAME_COMPILER "gcc " __VERSION__
#else
#define CNNFRAME_COMPILER "unknown"
#endif

#ifndef CNNFRAME_COMPILE_FLAGS
#define CNNFRAME_COMPILE_FLAGS "unknown"
#endif
#ifndef CNNFRAME_CC
#define CNNFRAME_CC "unknown"
#endif

#endif /* CNNFRAME_RUNTIME_H */
