/* Row helpers of the batch-norm and ReLU kernels (cnnframe_ext/batchnorm.pyx): C with
   restrict pointers, one version per instruction-set level (simd.h: CNNF_MULTIVERSION).

   Defines, for float (_f) and double (_d):
     bnk_row_stats_f/_d, bnk_affine_f/_d, bnk_grad_sums_f/_d, bnk_grad_x_f/_d,
     bnk_relu_f/_d, bnk_relu_grad_f/_d
   (each dispatching to its _avx512, _avx2 and _generic version), and bnk_barrier(). */
#ifndef CNNFRAME_BATCHNORM_H
#define CNNFRAME_BATCHNORM_H

#include <string.h>

#include "simd.h"

#if CNNF_VECTOR_EXTENSIONS
/* Sums run in double over 8-lane accumulators, in one fixed order at every level: as
   one 8-double vector (one zmm) at the avx512 level and in the generic version (four
   xmm), and as two 4-double halves (two ymm, lanes 0-3 and 4-7) at the avx2 level,
   where GCC 12 keeps 8-double vectors in memory between operations (2x slower, as
   multiwidth.h says).  Each half adds the same terms in the same order as its lanes of
   the 8-lane vector, so the avx2 level gives the generic version's sums bit for bit
   (the avx512 level may differ in rounding: GCC's avx512f target implies FMA and fuses
   the products into the sums).  Values are converted on load. */
typedef int bnk_i32x4 __attribute__((vector_size(16)));
typedef int bnk_i32x8 __attribute__((vector_size(32)));
typedef long long bnk_i64x4 __attribute__((vector_size(32)));
typedef long long bnk_i64x8 __attribute__((vector_size(64)));

CNNF_INLINE cnnf_f64x8 bnk_load_f(const float* p) {
    cnnf_f32x8 v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, cnnf_f64x8);
}
CNNF_INLINE cnnf_f64x8 bnk_load_d(const double* p) {
    cnnf_f64x8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
/* g where y > 0 else +0.0 (ReLU's gradient, fused into batch norm's backward), as
   relu_grad writes it: the same values reach the sums bit for bit.  BNK_MASK defines
   name(g, y), that vector of VT (T lanes, IT the integer vector of its width). */
#define BNK_MASK(name, T, VT, IT)                                                           \
    CNNF_INLINE VT name(const T* g, const T* y) {                                           \
        VT gv, yv;                                                                          \
        IT gi;                                                                              \
        memcpy(&gv, g, sizeof gv);                                                          \
        memcpy(&yv, y, sizeof yv);                                                          \
        memcpy(&gi, &gv, sizeof gi);                                                        \
        gi &= (yv > (T) 0);                                                                 \
        memcpy(&gv, &gi, sizeof gv);                                                        \
        return gv;                                                                          \
    }
BNK_MASK(bnk_mask_f8, float, cnnf_f32x8, bnk_i32x8)
BNK_MASK(bnk_mask_d8, double, cnnf_f64x8, bnk_i64x8)
BNK_MASK(bnk_mask_f4, float, cnnf_f32x4, bnk_i32x4)
BNK_MASK(bnk_mask_d4, double, cnnf_f64x4, bnk_i64x4)

CNNF_INLINE cnnf_f64x8 bnk_load_masked_f(const float* g, const float* y) {
    return __builtin_convertvector(bnk_mask_f8(g, y), cnnf_f64x8);
}
#define bnk_load_masked_d bnk_mask_d8
/* The 4-lane loads of the halves.  Floats are converted lane by lane: GCC 12 makes one
   vcvtps2pd of that, but of __builtin_convertvector a round trip through the stack. */
CNNF_INLINE cnnf_f64x4 bnk_load4_f(const float* p) {
    cnnf_f64x4 v;
    for (int k = 0; k < 4; k++) v[k] = (double) p[k];
    return v;
}
CNNF_INLINE cnnf_f64x4 bnk_load4_d(const double* p) {
    cnnf_f64x4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
CNNF_INLINE cnnf_f64x4 bnk_load4_masked_f(const float* g, const float* y) {
    cnnf_f32x4 gv = bnk_mask_f4(g, y);
    cnnf_f64x4 v;
    for (int k = 0; k < 4; k++) v[k] = (double) gv[k];
    return v;
}
#define bnk_load4_masked_d bnk_mask_d4
#endif /* CNNF_VECTOR_EXTENSIONS */
#define BNK_MASKED(g, y, i) ((y)[i] > 0 ? (g)[i] : 0)
#define BNK_HSUM4(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))
#define BNK_HSUM(v) ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) + (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))

#if CNNF_VECTOR_EXTENSIONS
/* OUT = the sum over k_ in [0, L) of one row's terms: VEXPR is the vector of terms
   k_ .. k_+7, SEXPR the single term k_.  Blocks of 32 go to four accumulators
   (independent add chains), blocks of 8 to the first, the rest to a scalar tail; they
   are combined in a fixed order, so the result depends only on the row. */
#define BNK_ROW_SUM(L, VEXPR, SEXPR, OUT)                                                  \
    do {                                                                                   \
        cnnf_f64x8 a0_ = {0}, a1_ = {0}, a2_ = {0}, a3_ = {0};                             \
        ptrdiff_t i_ = 0;                                                                  \
        for (; i_ + 32 <= (L); i_ += 32) {                                                 \
            { const ptrdiff_t k_ = i_; a0_ += (VEXPR); }                                   \
            { const ptrdiff_t k_ = i_ + 8; a1_ += (VEXPR); }                               \
            { const ptrdiff_t k_ = i_ + 16; a2_ += (VEXPR); }                              \
            { const ptrdiff_t k_ = i_ + 24; a3_ += (VEXPR); }                              \
        }                                                                                  \
        for (; i_ + 8 <= (L); i_ += 8) { const ptrdiff_t k_ = i_; a0_ += (VEXPR); }        \
        a0_ = (a0_ + a1_) + (a2_ + a3_);                                                   \
        double s_ = BNK_HSUM(a0_);                                                         \
        for (; i_ < (L); i_++) { const ptrdiff_t k_ = i_; s_ += (SEXPR); }                 \
        (OUT) = s_;                                                                        \
    } while (0)

/* Two sums over one row in one sweep (two accumulators each): OUT1 of VEXPR1 / SEXPR1
   and OUT2 of VEXPR2 / SEXPR2, as BNK_ROW_SUM. */
#define BNK_ROW_SUM2(L, VEXPR1, SEXPR1, OUT1, VEXPR2, SEXPR2, OUT2)                        \
    do {                                                                                   \
        cnnf_f64x8 a0_ = {0}, a1_ = {0}, b0_ = {0}, b1_ = {0};                             \
        ptrdiff_t i_ = 0;                                                                  \
        for (; i_ + 16 <= (L); i_ += 16) {                                                 \
            { const ptrdiff_t k_ = i_; a0_ += (VEXPR1); b0_ += (VEXPR2); }                 \
            { const ptrdiff_t k_ = i_ + 8; a1_ += (VEXPR1); b1_ += (VEXPR2); }             \
        }                                                                                  \
        for (; i_ + 8 <= (L); i_ += 8) {                                                   \
            const ptrdiff_t k_ = i_; a0_ += (VEXPR1); b0_ += (VEXPR2);                     \
        }                                                                                  \
        a0_ += a1_;                                                                        \
        b0_ += b1_;                                                                        \
        double s_ = BNK_HSUM(a0_), t_ = BNK_HSUM(b0_);                                     \
        for (; i_ < (L); i_++) { const ptrdiff_t k_ = i_; s_ += (SEXPR1); t_ += (SEXPR2); } \
        (OUT1) = s_;                                                                       \
        (OUT2) = t_;                                                                       \
    } while (0)

/* BNK_ROW_SUM with each accumulator held as two 4-lane halves: VEXPR is now the vector
   of terms k_ .. k_+3; the low half takes the terms of an 8-block's lanes 0-3, the high
   half lanes 4-7. */
#define BNK_ROW_SUM_HALVES(L, VEXPR, SEXPR, OUT)                                           \
    do {                                                                                   \
        cnnf_f64x4 a0l_ = {0}, a1l_ = {0}, a2l_ = {0}, a3l_ = {0};                         \
        cnnf_f64x4 a0h_ = {0}, a1h_ = {0}, a2h_ = {0}, a3h_ = {0};                         \
        ptrdiff_t i_ = 0;                                                                  \
        for (; i_ + 32 <= (L); i_ += 32) {                                                 \
            { const ptrdiff_t k_ = i_; a0l_ += (VEXPR); }                                  \
            { const ptrdiff_t k_ = i_ + 4; a0h_ += (VEXPR); }                              \
            { const ptrdiff_t k_ = i_ + 8; a1l_ += (VEXPR); }                              \
            { const ptrdiff_t k_ = i_ + 12; a1h_ += (VEXPR); }                             \
            { const ptrdiff_t k_ = i_ + 16; a2l_ += (VEXPR); }                             \
            { const ptrdiff_t k_ = i_ + 20; a2h_ += (VEXPR); }                             \
            { const ptrdiff_t k_ = i_ + 24; a3l_ += (VEXPR); }                             \
            { const ptrdiff_t k_ = i_ + 28; a3h_ += (VEXPR); }                             \
        }                                                                                  \
        for (; i_ + 8 <= (L); i_ += 8) {                                                   \
            { const ptrdiff_t k_ = i_; a0l_ += (VEXPR); }                                  \
            { const ptrdiff_t k_ = i_ + 4; a0h_ += (VEXPR); }                              \
        }                                                                                  \
        a0l_ = (a0l_ + a1l_) + (a2l_ + a3l_);                                              \
        a0h_ = (a0h_ + a1h_) + (a2h_ + a3h_);                                              \
        double s_ = BNK_HSUM4(a0l_) + BNK_HSUM4(a0h_);                                     \
        for (; i_ < (L); i_++) { const ptrdiff_t k_ = i_; s_ += (SEXPR); }                 \
        (OUT) = s_;                                                                        \
    } while (0)

/* BNK_ROW_SUM2 in halves, as BNK_ROW_SUM_HALVES */
#define BNK_ROW_SUM2_HALVES(L, VEXPR1, SEXPR1, OUT1, VEXPR2, SEXPR2, OUT2)                 \
    do {                                                                                   \
        cnnf_f64x4 a0l_ = {0}, a1l_ = {0}, b0l_ = {0}, b1l_ = {0};                         \
        cnnf_f64x4 a0h_ = {0}, a1h_ = {0}, b0h_ = {0}, b1h_ = {0};                         \
        ptrdiff_t i_ = 0;                                                                  \
        for (; i_ + 16 <= (L); i_ += 16) {                                                 \
            { const ptrdiff_t k_ = i_; a0l_ += (VEXPR1); b0l_ += (VEXPR2); }               \
            { const ptrdiff_t k_ = i_ + 4; a0h_ += (VEXPR1); b0h_ += (VEXPR2); }           \
            { const ptrdiff_t k_ = i_ + 8; a1l_ += (VEXPR1); b1l_ += (VEXPR2); }           \
            { const ptrdiff_t k_ = i_ + 12; a1h_ += (VEXPR1); b1h_ += (VEXPR2); }          \
        }                                                                                  \
        for (; i_ + 8 <= (L); i_ += 8) {                                                   \
            { const ptrdiff_t k_ = i_; a0l_ += (VEXPR1); b0l_ += (VEXPR2); }               \
            { const ptrdiff_t k_ = i_ + 4; a0h_ += (VEXPR1); b0h_ += (VEXPR2); }           \
        }                                                                                  \
        a0l_ += a1l_;                                                                      \
        a0h_ += a1h_;                                                                      \
        b0l_ += b1l_;                                                                      \
        b0h_ += b1h_;                                                                      \
        double s_ = BNK_HSUM4(a0l_) + BNK_HSUM4(a0h_);                                     \
        double t_ = BNK_HSUM4(b0l_) + BNK_HSUM4(b0h_);                                     \
        for (; i_ < (L); i_++) { const ptrdiff_t k_ = i_; s_ += (SEXPR1); t_ += (SEXPR2); } \
        (OUT1) = s_;                                                                       \
        (OUT2) = t_;                                                                       \
    } while (0)
#else /* plain C (simd.h): the same sums one term at a time, in double */
#define BNK_ROW_SUM(L, VEXPR, SEXPR, OUT)                                                  \
    do {                                                                                   \
        double s_ = 0;                                                                     \
        for (ptrdiff_t k_ = 0; k_ < (L); k_++) s_ += (SEXPR);                              \
        (OUT) = s_;                                                                        \
    } while (0)
#define BNK_ROW_SUM2(L, VEXPR1, SEXPR1, OUT1, VEXPR2, SEXPR2, OUT2)                        \
    do {                                                                                   \
        double s_ = 0, t_ = 0;                                                             \
        for (ptrdiff_t k_ = 0; k_ < (L); k_++) { s_ += (SEXPR1); t_ += (SEXPR2); }         \
        (OUT1) = s_;                                                                       \
        (OUT2) = t_;                                                                       \
    } while (0)
#endif /* CNNF_VECTOR_EXTENSIONS */

/* The helpers' code, once per element type: batchnorm_typed.h names its functions after
   the macros defined here.  BN_ROW_SUM / BN_ROW_SUM2 are the 8-lane sums; the second
   inclusion per type (x86 only) defines just the two summing helpers again, on halves,
   for the avx2 level (BN_AFFINE undefined: batchnorm_typed.h then skips the others). */
#define BN_T float
#define BN_LOAD bnk_load_f
#define BN_LOAD_MASKED bnk_load_masked_f
#define BN_ROW_SUM BNK_ROW_SUM
#define BN_ROW_SUM2 BNK_ROW_SUM2
#define BN_ROW_STATS bnk_row_stats_f_body
#define BN_AFFINE bnk_affine_f_body
#define BN_GRAD_SUMS bnk_grad_sums_f_body
#define BN_GRAD_X bnk_grad_x_f_body
#define BN_RELU bnk_relu_f_body
#define BN_RELU_GRAD bnk_relu_grad_f_body
#include "batchnorm_typed.h"

#define BN_T double
#define BN_LOAD bnk_load_d
#define BN_LOAD_MASKED bnk_load_masked_d
#define BN_ROW_SUM BNK_ROW_SUM
#define BN_ROW_SUM2 BNK_ROW_SUM2
#define BN_ROW_STATS bnk_row_stats_d_body
#define BN_AFFINE bnk_affine_d_body
#define BN_GRAD_SUMS bnk_grad_sums_d_body
#define BN_GRAD_X bnk_grad_x_d_body
#define BN_RELU bnk_relu_d_body
#define BN_RELU_GRAD bnk_relu_grad_d_body
#include "batchnorm_typed.h"

#if CNNF_X86
#define BN_T float
#define BN_LOAD bnk_load4_f
#define BN_LOAD_MASKED bnk_load4_masked_f
#define BN_ROW_SUM BNK_ROW_SUM_HALVES
#define BN_ROW_SUM2 BNK_ROW_SUM2_HALVES
#define BN_ROW_STATS bnk_row_stats_f_halves
#define BN_GRAD_SUMS bnk_grad_sums_f_halves
#include "batchnorm_typed.h"

#define BN_T double
#define BN_LOAD bnk_load4_d
#define BN_LOAD_MASKED bnk_load4_masked_d
#define BN_ROW_SUM BNK_ROW_SUM_HALVES
#define BN_ROW_SUM2 BNK_ROW_SUM2_HALVES
#define BN_ROW_STATS bnk_row_stats_d_halves
#define BN_GRAD_SUMS bnk_grad_sums_d_halves
#include "batchnorm_typed.h"

/* BNK_SUMMING(name, params, args): as CNNF_MULTIVERSION (the same target attributes:
   no FMA at the avx2 level), but the avx2 version runs name##_halves. */
#define BNK_SUMMING(name, params, args)                                                    \
    CNNF_MULTIVERSION_OF(name, params, args, name##_body, name##_halves, name##_body)
#else
#define BNK_SUMMING CNNF_MULTIVERSION
#endif

/* bnk_row_stats_f and _d (and their _avx512, _avx2, _generic versions), and so on */
BNK_SUMMING(bnk_row_stats_f, (const float* restrict x, ptrdiff_t rows, ptrdiff_t L,
                                    double* restrict mean, double* restrict m2),
                  (x, rows, L, mean, m2))
BNK_SUMMING(bnk_row_stats_d, (const double* restrict x, ptrdiff_t rows, ptrdiff_t L,
                                    double* restrict mean, double* restrict m2),
                  (x, rows, L, mean, m2))
CNNF_MULTIVERSION(bnk_affine_f, (const float* restrict x, ptrdiff_t rows, ptrdiff_t L,
                                 ptrdiff_t C, ptrdiff_t q0, const double* mean,
                                 const double* scale, const double* shift,
                                 const float* restrict mask, int relu, float* restrict y),
                  (x, rows, L, C, q0, mean, scale, shift, mask, relu, y))
CNNF_MULTIVERSION(bnk_affine_d, (const double* restrict x, ptrdiff_t rows, ptrdiff_t L,
                                 ptrdiff_t C, ptrdiff_t q0, const double* mean,
                                 const double* scale, const double* shift,
                                 const double* restrict mask, int relu, double* restrict y),
                  (x, rows, L, C, q0, mean, scale, shift, mask, relu, y))
BNK_SUMMING(bnk_grad_sums_f, (const float* restrict g, const float* restrict x,
                                    const float* restrict mask, ptrdiff_t rows, ptrdiff_t L,
                                    ptrdiff_t C, ptrdiff_t q0, const double* restrict mean,
                                    double* restrict part_g, double* restrict part_gd),
                  (g, x, mask, rows, L, C, q0, mean, part_g, part_gd))
BNK_SUMMING(bnk_grad_sums_d, (const double* restrict g, const double* restrict x,
                                    const double* restrict mask, ptrdiff_t rows, ptrdiff_t L,
                                    ptrdiff_t C, ptrdiff_t q0, const double* restrict mean,
                                    double* restrict part_g, double* restrict part_gd),
                  (g, x, mask, rows, L, C, q0, mean, part_g, part_gd))
CNNF_MULTIVERSION(bnk_grad_x_f, (const float* restrict g, const float* restrict x,
                                 const float* restrict mask, ptrdiff_t rows, ptrdiff_t L,
                                 ptrdiff_t C, ptrdiff_t q0, const double* mean,
                                 const double* a, const double* k1, const double* k0,
                                 float* restrict gx),
                  (g, x, mask, rows, L, C, q0, mean, a, k1, k0, gx))
CNNF_MULTIVERSION(bnk_grad_x_d, (const double* restrict g, const double* restrict x,
                                 const double* restrict mask, ptrdiff_t rows, ptrdiff_t L,
                                 ptrdiff_t C, ptrdiff_t q0, const double* mean,
                                 const double* a, const double* k1, const double* k0,
                                 double* restrict gx),
                  (g, x, mask, rows, L, C, q0, mean, a, k1, k0, gx))
CNNF_MULTIVERSION(bnk_relu_f, (const float* restrict x, ptrdiff_t n, float* restrict y),
                  (x, n, y))
CNNF_MULTIVERSION(bnk_relu_d, (const double* restrict x, ptrdiff_t n, double* restrict y),
                  (x, n, y))
CNNF_MULTIVERSION(bnk_relu_grad_f, (const float* restrict g, const float* restrict y,
                                    ptrdiff_t n, float* restrict gx),
                  (g, y, n, gx))
CNNF_MULTIVERSION(bnk_relu_grad_d, (const double* restrict g, const double* restrict y,
                                    ptrdiff_t n, double* restrict gx),
                  (g, y, n, gx))

/* Inside a parallel region: wait until every thread has finished the loop before
   (Cython's prange loops inside parallel() end without a barrier). */
#define bnk_barrier() _Pragma("omp barrier")

#endif /* CNNFRAME_BATCHNORM_H */
