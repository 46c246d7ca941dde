/* Row helpers of the group, layer and instance normalisation kernels
   (cnnframe_ext/norm.pyx).  A normalisation row is n contiguous values; its statistics
   and the sums of the backward pass run in double, over vectors of doubles with four
   accumulators (independent add chains) in a fixed order, so a result depends only on
   the row and the instruction-set level, never on the data's address or the thread
   count.  Affine maps are vectorised by the compiler (omp simd).  Each level has its
   own vector width (multiwidth.h: CNNF_MULTIWIDTH).

   Defines, for float (_f) and double (_d) rows:
     nrm_stats_f/_d       the mean and the sum of squared deviations from it (two sweeps:
                          the second reads the row from cache, and stays accurate for
                          rows whose mean is far from zero),
     nrm_slot_affine_f/_d y = (x - mu) * scale + shift (one affine pair for all values),
     nrm_slot_sums_f/_d   the sums of g and of g * (x - mu),
     nrm_slot_grad_x_f/_d gx = g * a + ((x - mu) * k1 + k0),
     nrm_affine_f/_d      y = (x - mu) * istd * w + b with a weight and bias per value (layer
                          norm; in the row's type, which keeps them in cache),
     nrm_sums_f/_d        the sums of g * w and g * (x - mu) * w,
     nrm_grads_f/_d       per value gw += g * (x - mu) * istd and gb += g (unless gw is
                          NULL), gx = g * w * istd + ((x - mu) * k1 + k0) (unless gx is),
   each dispatching to its _avx512, _avx2 and _generic version. */
#ifndef CNNFRAME_NORM_H
#define CNNFRAME_NORM_H

#include <stddef.h>
#include <string.h>

#include "multiwidth.h"
#include "simd.h"

/* The code, once per element type and vector width: norm_typed.h names its functions
   with NRM_SUFFIX (f4: float rows at the 128-bit level, d1: double rows in plain C, ...)
   and undefines these macros.  NRM_D: NRM_LANES doubles. */
#if CNNF_VECTOR_EXTENSIONS
#define NRM_T float
#define NRM_D cnnf_f64x2
#define NRM_LANES 2
#define NRM_SUFFIX f4
#include "norm_typed.h"
#define NRM_T double
#define NRM_D cnnf_f64x2
#define NRM_LANES 2
#define NRM_SUFFIX d2
#include "norm_typed.h"
#else
#define NRM_T float
#define NRM_D double
#define NRM_LANES 1
#define NRM_SUFFIX f1
#include "norm_typed.h"
#define NRM_T double
#define NRM_D double
#define NRM_LANES 1
#define NRM_SUFFIX d1
#include "norm_typed.h"
#endif
#if CNNF_X86
#define NRM_T float
#define NRM_D cnnf_f64x4
#define NRM_LANES 4
#define NRM_SUFFIX f8
#include "norm_typed.h"
#define NRM_T double
#define NRM_D cnnf_f64x4
#define NRM_LANES 4
#define NRM_SUFFIX d4
#include "norm_typed.h"
#define NRM_T float
#define NRM_D cnnf_f64x8
#define NRM_LANES 8
#define NRM_SUFFIX f16
#include "norm_typed.h"
#define NRM_T double
#define NRM_D cnnf_f64x8
#define NRM_LANES 8
#define NRM_SUFFIX d8
#include "norm_typed.h"
#endif

#define NRM_KERNEL(name, fparams, dparams, args)                                            \
    CNNF_MULTIWIDTH(name##_f, name##_body, fparams, args, f16, f8, CNNF_F128)               \
    CNNF_MULTIWIDTH(name##_d, name##_body, dparams, args, d8, d4, CNNF_D128)

/* nrm_stats_f and _d (and their _avx512, _avx2, _generic versions), and so on */
NRM_KERNEL(nrm_stats,
           (const float* restrict x, ptrdiff_t n, double* restrict mean, double* restrict m2),
           (const double* restrict x, ptrdiff_t n, double* restrict mean, double* restrict m2),
           (x, n, mean, m2))
NRM_KERNEL(nrm_slot_affine,
           (const float* restrict x, ptrdiff_t n, double mu, double scale, double shift,
            float* restrict y),
           (const double* restrict x, ptrdiff_t n, double mu, double scale, double shift,
            double* restrict y),
           (x, n, mu, scale, shift, y))
NRM_KERNEL(nrm_slot_sums,
           (const float* restrict g, const float* restrict x, ptrdiff_t n, double mu,
            double* restrict sum_g, double* restrict sum_gd),
           (const double* restrict g, const double* restrict x, ptrdiff_t n, double mu,
            double* restrict sum_g, double* restrict sum_gd),
           (g, x, n, mu, sum_g, sum_gd))
NRM_KERNEL(nrm_slot_grad_x,
           (const float* restrict g, const float* restrict x, ptrdiff_t n, double mu,
            double a, double k1, double k0, float* restrict gx),
           (const double* restrict g, const double* restrict x, ptrdiff_t n, double mu,
            double a, double k1, double k0, double* restrict gx),
           (g, x, n, mu, a, k1, k0, gx))
NRM_KERNEL(nrm_affine,
           (const float* restrict x, ptrdiff_t n, double mu, double istd,
            const float* restrict w, const float* restrict b, float* restrict y),
           (const double* restrict x, ptrdiff_t n, double mu, double istd,
            const double* restrict w, const double* restrict b, double* restrict y),
           (x, n, mu, istd, w, b, y))
NRM_KERNEL(nrm_sums,
           (const float* restrict g, const float* restrict x, ptrdiff_t n, double mu,
            const float* restrict w, double* restrict sum_gw, double* restrict sum_gdw),
           (const double* restrict g, const double* restrict x, ptrdiff_t n, double mu,
            const double* restrict w, double* restrict sum_gw, double* restrict sum_gdw),
           (g, x, n, mu, w, sum_gw, sum_gdw))
NRM_KERNEL(nrm_grads,
           (const float* restrict g, const float* restrict x, ptrdiff_t n, double mu,
            double istd, const float* restrict w, double k1, double k0, double* restrict gw,
            double* restrict gb, float* restrict gx),
           (const double* restrict g, const double* restrict x, ptrdiff_t n, double mu,
            double istd, const double* restrict w, double k1, double k0, double* restrict gw,
            double* restrict gb, double* restrict gx),
           (g, x, n, mu, istd, w, k1, k0, gw, gb, gx))

#endif /* CNNFRAME_NORM_H */
