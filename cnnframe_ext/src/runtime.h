/* Whether the kernels were built with OpenMP, and its default thread count, for
   cnnframe_ext.runtime. */
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

#endif /* CNNFRAME_RUNTIME_H */
