/* Vectorised pooling of unpadded windows, a row of windows at a time: every window is
   computed on its own, so the compiler runs a row's windows side by side (omp simd;
   restrict: outputs never alias inputs).  Each plane kernel comes in one version per
   instruction-set level (simd.h: CNNF_MULTIVERSION).  Pooled rows are short (4 to 16
   windows), so vectors are 4 windows wide (wider ones measured no faster), and a row's
   last partial vector is redone as its last full one, overlapping the one before and
   rewriting the same values: a scalar remainder costs far more (GCC compiles its selects
   to branches).  Window indices are ptrdiff_t: Python builds extensions with -fwrapv,
   under which int arithmetic like 2 * j may wrap and GCC 12 then vectorises nothing.

   Defines, for float (_f) and double (_d):
     max_pool_2x2_f/_d, max_pool_inside_f/_d, avg_pool_2x2_f/_d, avg_unpool_2x2_f/_d
   (each dispatching to its _avx512, _avx2 and _generic version) and cnnf_select_f/_d. */
#ifndef CNNFRAME_POOL_H
#define CNNFRAME_POOL_H

#include <stdint.h>
#include <string.h>

#include "simd.h"

#define CNNF_SIMD _Pragma("omp simd simdlen(4)")
enum { CNNF_VECTOR = 4 };

/* Span s (0 or 1) of a row of OW windows as [*j0, *j0 + *n); 0 if it has none. */
static inline int cnnf_span(ptrdiff_t OW, int s, ptrdiff_t* j0, ptrdiff_t* n) {
    ptrdiff_t whole = OW - OW % CNNF_VECTOR;
    if (s == 0) {
        *j0 = 0;
        *n = whole > 0 ? whole : OW;
        return 1;
    }
    *j0 = OW - CNNF_VECTOR;
    *n = CNNF_VECTOR;
    return whole > 0 && whole < OW;
}
#define CNNF_FOR_SPANS(OW, j0, n)                                                          \
    for (ptrdiff_t s_ = 0, j0, n; s_ < 2; s_++)                                            \
        if (cnnf_span((OW), (int) s_, &j0, &n))

/* Max pooling's select, as in the generic loop: v replaces the best so far if larger,
   or if v is the first NaN (a NaN propagates and the first one wins).  Spelt with !=
   and ^ because GCC 12 vectorises this form, and neither (v > b) | (v != v & b == b)
   nor !(v <= b) & (b == b). */
#define CNNF_TAKES(v, b) (((v) > (b)) | ((((v) != (v)) ^ ((b) != (b))) & ((v) != (v))))

/* t ? p : q for t in {0, 1}, without a branch. */
static inline float cnnf_select_f(int t, float p, float q) {
    uint32_t bp, bq, m = -(uint32_t) t;
    memcpy(&bp, &p, sizeof bp);
    memcpy(&bq, &q, sizeof bq);
    bp = (bp & m) | (bq & ~m);
    memcpy(&p, &bp, sizeof bp);
    return p;
}
static inline double cnnf_select_d(int t, double p, double q) {
    uint64_t bp, bq, m = -(uint64_t) t;
    memcpy(&bp, &p, sizeof bp);
    memcpy(&bq, &q, sizeof bq);
    bp = (bp & m) | (bq & ~m);
    memcpy(&p, &bp, sizeof bp);
    return p;
}

/* The kernels' code, once per element type: pool_typed.h names its functions after the
   macros defined here. */
#define POOL_T float
#define POOL_SELECT cnnf_select_f
#define MAX_2X2_SPAN max_2x2_span_f
#define MAX_POOL_2X2 max_pool_2x2_f_body
#define MAX_POOL_INSIDE max_pool_inside_f_body
#define AVG_POOL_2X2 avg_pool_2x2_f_body
#define AVG_UNPOOL_2X2 avg_unpool_2x2_f_body
#include "pool_typed.h"

#define POOL_T double
#define POOL_SELECT cnnf_select_d
#define MAX_2X2_SPAN max_2x2_span_d
#define MAX_POOL_2X2 max_pool_2x2_d_body
#define MAX_POOL_INSIDE max_pool_inside_d_body
#define AVG_POOL_2X2 avg_pool_2x2_d_body
#define AVG_UNPOOL_2X2 avg_unpool_2x2_d_body
#include "pool_typed.h"

/* max_pool_2x2_f and _d (and their _avx512, _avx2, _generic versions) */
CNNF_MULTIVERSION(max_pool_2x2_f, (const float* restrict x, int W, float* restrict y,
                                   long long* restrict a, int OH, int OW),
                  (x, W, y, a, OH, OW))
CNNF_MULTIVERSION(max_pool_2x2_d, (const double* restrict x, int W, double* restrict y,
                                   long long* restrict a, int OH, int OW),
                  (x, W, y, a, OH, OW))
/* max_pool_inside_f and _d */
CNNF_MULTIVERSION(max_pool_inside_f, (const float* restrict x, int W, float* restrict y,
                                      long long* restrict a, int ys, int h0, int w0, int OHr,
                                      int OWr, int kh, int kw, int sh, int sw),
                  (x, W, y, a, ys, h0, w0, OHr, OWr, kh, kw, sh, sw))
CNNF_MULTIVERSION(max_pool_inside_d, (const double* restrict x, int W, double* restrict y,
                                      long long* restrict a, int ys, int h0, int w0, int OHr,
                                      int OWr, int kh, int kw, int sh, int sw),
                  (x, W, y, a, ys, h0, w0, OHr, OWr, kh, kw, sh, sw))
/* avg_pool_2x2_f and _d */
CNNF_MULTIVERSION(avg_pool_2x2_f, (const float* restrict x, int W, float* restrict y, int OH,
                                   int OW),
                  (x, W, y, OH, OW))
CNNF_MULTIVERSION(avg_pool_2x2_d, (const double* restrict x, int W, double* restrict y, int OH,
                                   int OW),
                  (x, W, y, OH, OW))
/* avg_unpool_2x2_f and _d */
CNNF_MULTIVERSION(avg_unpool_2x2_f, (const float* restrict g, int OH, int OW, int H, int W,
                                     float* restrict x),
                  (g, OH, OW, H, W, x))
CNNF_MULTIVERSION(avg_unpool_2x2_d, (const double* restrict g, int OH, int OW, int H, int W,
                                     double* restrict x),
                  (g, OH, OW, H, W, x))

#endif /* CNNFRAME_POOL_H */
