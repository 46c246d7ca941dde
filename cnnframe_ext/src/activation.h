/* Element-wise activation kernels (cnnframe_ext/activation.pyx): GELU (erf and tanh
   forms), SiLU, Hardswish and ELU, forward and backward, over spans of contiguous values,
   with their own vectorised exp, expm1, tanh and erf.

   libm's functions take one value per call and cost 10-40 ns each; these work on a
   vector of lanes at a time with multiply-adds and bit operations only:
     exp(x)     2^n * e^r with n = round(x / ln 2), r = x - n ln 2 (|r| <= ln2 / 2, ln 2 in
                two parts as in Cephes and fdlibm), e^r = 1 + expm1(r) by its Taylor
                polynomial (degree 8 in float, 13 in double: the first term left out is
                below 0.05 ulp); 2^n built from its bits in two halves, so results in the
                subnormal range round once and overflow gives inf;
     expm1(x)   for x <= 0 only (ELU and tanh need no more): 2^n expm1(r) + (2^n - 1),
                which keeps the relative accuracy near 0;
     tanh(x)    (1 - e) / (1 + e) with e = e^(-2|x|), or -t / (t + 2) with t = e - 1 for
                |x| <= 0.625, where the first cancels; the sign of x copied in;
     erf(x)     float: one degree-7 polynomial per interval of |x| (clamped to 4, where
                erf rounds to 1): interval k = round(|x| / 0.5625) of 8, a lane's
                coefficients picked from 8-entry tables by its k (one permute each:
                vpermps on AVX2 and AVX-512), so every lane runs the same short chain
                of multiply-adds, without exp or a select between two formulas.
                Interval k >= 1: c0 + t P(t), t = |x| - center (exact), the center a
                float near k * 0.5625 whose erf is within 0.01 ulp of the float c0;
                interval 0: |x| + |x| Q(|x|), which keeps the relative accuracy near 0.
                Least-squares fits refined toward minimax by Lawson's iteration, each
                coefficient rounded to float and the rest refitted; double: libm's erf,
                one value at a time (float64 is checked against PyTorch to 1e-10, not
                timed).
   Measured against float64 and long double (tests/functional/test_activation_math.py):
   within 2.5 ulp (erf within 1 ulp), subnormal inputs and results included; inf and NaN
   give what libm gives.  Selects are bit masks, so a NaN input gives NaN in every lane computed from
   it.  The activations' formulas and their order of evaluation are PyTorch's CPU
   kernels' (aten/src/ATen/native/cpu/Activation.cpp), in the input's precision.

   Each instruction-set level has its own vector width: 16 floats or 8 doubles (one zmm)
   for avx512, 8 or 4 (one ymm, with FMA) for avx2, 4 or 2 (one xmm) for generic; GCC
   compiles the comparisons of vectors wider than the target's registers one lane at a
   time.  A plain-C build (simd.h: CNNF_VECTOR_EXTENSIONS 0) runs the same code on
   scalars.  A span's last partial vector is computed in a zero-padded copy.  Every lane
   is computed on its own, so an element's result depends on its value only, never on
   its position or the thread count (it may differ between levels, in the last bit).

   Defines, for float (_f) and double (_d):
     act_forward_f/_d   y = f(x) for an activation kind (ACT_GELU, ...),
     act_backward_f/_d  grad_x = grad_y * f'(x),
     act_math_f/_d      one of the elementary functions (ACT_EXP, ...), for the tests,
   each dispatching to its _avx512, _avx2 and _generic version (multiwidth.h:
   CNNF_MULTIWIDTH, a body per vector width). */
#ifndef CNNFRAME_ACTIVATION_H
#define CNNFRAME_ACTIVATION_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "multiwidth.h"
#include "simd.h"

/* The activations (the `kind` of act_forward and act_backward). */
enum { ACT_GELU = 0, ACT_GELU_TANH = 1, ACT_SILU = 2, ACT_HARDSWISH = 3, ACT_ELU = 4 };
/* The elementary functions (the `which` of act_math). */
enum { ACT_EXP = 0, ACT_EXPM1 = 1, ACT_TANH = 2, ACT_ERF = 3 };

#if CNNF_VECTOR_EXTENSIONS
/* The lanes' bits, for masks and bit operations. */
typedef uint32_t act_u32x4 __attribute__((vector_size(16)));
typedef uint32_t act_u32x8 __attribute__((vector_size(32)));
typedef uint32_t act_u32x16 __attribute__((vector_size(64)));
typedef uint64_t act_u64x2 __attribute__((vector_size(16)));
typedef uint64_t act_u64x4 __attribute__((vector_size(32)));
typedef uint64_t act_u64x8 __attribute__((vector_size(64)));
/* A comparison of vectors is already 0 or all ones per lane. */
#define ACT_MASK(c) ((ACT_U) (c))
#else
/* A scalar comparison is 0 or 1: 0 - 1 is all ones. */
#define ACT_MASK(c) ((ACT_U) 0 - (ACT_U) (c))
#endif

/* Y[0:N] = EXPR of v = X[i .. i + lanes) (ACT_MAP1), or of g = G[...] and v = X[...]
   (ACT_MAP2), two vectors at a time (two independent dependency chains: the functions'
   polynomials are long chains of multiply-adds), then one, then the last partial vector
   in a zero-padded copy. */
#define ACT_MAP1(X, Y, N, EXPR)                                                             \
    do {                                                                                    \
        ptrdiff_t i_ = 0;                                                                   \
        ACT_V v, r_, r2_;                                                                   \
        for (; i_ + 2 * ACT_LANES <= (N); i_ += 2 * ACT_LANES) {                            \
            memcpy(&v, (X) + i_, sizeof v);                                                 \
            r_ = (EXPR);                                                                    \
            memcpy(&v, (X) + i_ + ACT_LANES, sizeof v);                                     \
            r2_ = (EXPR);                                                                   \
            memcpy((Y) + i_, &r_, sizeof r_);                                               \
            memcpy((Y) + i_ + ACT_LANES, &r2_, sizeof r2_);                                 \
        }                                                                                   \
        for (; i_ + ACT_LANES <= (N); i_ += ACT_LANES) {                                    \
            memcpy(&v, (X) + i_, sizeof v);                                                 \
            r_ = (EXPR);                                                                    \
            memcpy((Y) + i_, &r_, sizeof r_);                                               \
        }                                                                                   \
        if (i_ < (N)) {                                                                     \
            v = ACT_FN(act_splat)(0);                                                       \
            memcpy(&v, (X) + i_, (size_t) ((N) - i_) * sizeof(ACT_T));                      \
            r_ = (EXPR);                                                                    \
            memcpy((Y) + i_, &r_, (size_t) ((N) - i_) * sizeof(ACT_T));                     \
        }                                                                                   \
    } while (0)
#define ACT_MAP2(G, X, Y, N, EXPR)                                                          \
    do {                                                                                    \
        ptrdiff_t i_ = 0;                                                                   \
        ACT_V g, v, r_, r2_;                                                                \
        for (; i_ + 2 * ACT_LANES <= (N); i_ += 2 * ACT_LANES) {                            \
            memcpy(&g, (G) + i_, sizeof g);                                                 \
            memcpy(&v, (X) + i_, sizeof v);                                                 \
            r_ = (EXPR);                                                                    \
            memcpy(&g, (G) + i_ + ACT_LANES, sizeof g);                                     \
            memcpy(&v, (X) + i_ + ACT_LANES, sizeof v);                                     \
            r2_ = (EXPR);                                                                   \
            memcpy((Y) + i_, &r_, sizeof r_);                                               \
            memcpy((Y) + i_ + ACT_LANES, &r2_, sizeof r2_);                                 \
        }                                                                                   \
        for (; i_ + ACT_LANES <= (N); i_ += ACT_LANES) {                                    \
            memcpy(&g, (G) + i_, sizeof g);                                                 \
            memcpy(&v, (X) + i_, sizeof v);                                                 \
            r_ = (EXPR);                                                                    \
            memcpy((Y) + i_, &r_, sizeof r_);                                               \
        }                                                                                   \
        if (i_ < (N)) {                                                                     \
            g = v = ACT_FN(act_splat)(0);                                                   \
            memcpy(&g, (G) + i_, (size_t) ((N) - i_) * sizeof(ACT_T));                      \
            memcpy(&v, (X) + i_, (size_t) ((N) - i_) * sizeof(ACT_T));                      \
            r_ = (EXPR);                                                                    \
            memcpy((Y) + i_, &r_, (size_t) ((N) - i_) * sizeof(ACT_T));                     \
        }                                                                                   \
    } while (0)

/* float erf's tables (see the top of this file), indexed by the interval k = round(|x| /
   ACT_ERF_STEP), k = 0..7: the centers, 1 for interval 0 (else 0), the values at the
   centers (c0, 0 for interval 0), and the
   coefficients of t^0 .. t^6 of P(t) = (erf(center + t) - c0) / t for k >= 1, of Q(a) =
   (erf(a) - a) / a for k = 0. */
#define ACT_ERF_STEP 0.5625f
#define ACT_ERF_DEGREE 7
static const float act_erf_center[8] = {
    0.0f, 0.5625104904174805f, 1.1246538162231445f, 1.6878292560577393f,
    2.249894142150879f, 2.8121471405029297f, 3.3757152557373047f, 3.9382152557373047f};
static const float act_erf_is0[8] = {1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
static const float act_erf_c0[8] = {
    0.0f, 0.5736830830574036f, 0.8882780075073242f, 0.9830112457275391f,
    0.9985365271568298f, 0.999930202960968f, 0.9999982118606567f, 1.0f};
static const float act_erf_poly[ACT_ERF_DEGREE][8] = {
    {0.12837916612625122f, 0.8223116993904114f, 0.3185219168663025f, 0.06535081565380096f,
     0.007145722862333059f, 0.00041493482422083616f, 1.2690317817032337e-05f,
     2.034637873293832e-06f},
    {2.1606777522720222e-07f, -0.4625580608844757f, -0.3582274913787842f,
     -0.11030101776123047f, -0.016077006235718727f, -0.001166868256404996f,
     -4.660942067857832e-05f, 2.718804717005696e-05f},
    {-0.3761342167854309f, -0.10064569860696793f, 0.1624137908220291f,
     0.10232942551374435f, 0.02173250913619995f, 0.002049256581813097f,
     9.211711585521698e-05f, 0.0001473413285566494f},
    {0.00010078935883939266f, 0.18242718279361725f, 0.028124377131462097f,
     -0.049590546637773514f, -0.019097022712230682f, -0.0024916159454733133f,
     -2.2909784092917107e-05f, 0.00023456216149497777f},
    {0.11229322105646133f, -0.01074369065463543f, -0.06135593354701996f,
     0.0027700276114046574f, 0.01066453754901886f, 0.0021895202808082104f,
     0.00016692685312591493f, 0.0f},
    {0.0010776373092085123f, -0.045270033180713654f, 0.014568113721907139f,
     0.01167379505932331f, -0.002741187810897827f, -0.0014055456267669797f,
     -0.0010806592181324959f, 0.0f},
    {-0.026802679523825645f, 0.00891361478716135f, 0.009566178545355797f,
     -0.00608027633279562f, -0.0007449669064953923f, 0.0005844970582984388f,
     5.880941898794845e-05f, 0.0f},
};

/* name_f8, name_d4, ...: after the type and width being defined (ACT_SUFFIX). */
#define ACT_FN(name) CNNF_CAT(name, ACT_SUFFIX)

/* The code, once per element type and width: activation_typed.h names its functions
   with ACT_SUFFIX (f4: 4 floats, d1: one double, ...) and undefines these macros. */
#if CNNF_VECTOR_EXTENSIONS
#define ACT_DOUBLE 0
#define ACT_V cnnf_f32x4
#define ACT_U act_u32x4
#define ACT_LANES 4
#define ACT_SUFFIX f4
#include "activation_typed.h"
#define ACT_DOUBLE 1
#define ACT_V cnnf_f64x2
#define ACT_U act_u64x2
#define ACT_LANES 2
#define ACT_SUFFIX d2
#include "activation_typed.h"
#endif
#if CNNF_X86
#define ACT_DOUBLE 0
#define ACT_V cnnf_f32x8
#define ACT_U act_u32x8
#define ACT_LANES 8
#define ACT_SUFFIX f8
#include "activation_typed.h"
#define ACT_DOUBLE 1
#define ACT_V cnnf_f64x4
#define ACT_U act_u64x4
#define ACT_LANES 4
#define ACT_SUFFIX d4
#include "activation_typed.h"
#define ACT_DOUBLE 0
#define ACT_V cnnf_f32x16
#define ACT_U act_u32x16
#define ACT_LANES 16
#define ACT_SUFFIX f16
#include "activation_typed.h"
#define ACT_DOUBLE 1
#define ACT_V cnnf_f64x8
#define ACT_U act_u64x8
#define ACT_LANES 8
#define ACT_SUFFIX d8
#include "activation_typed.h"
#endif
#if !CNNF_VECTOR_EXTENSIONS
#define ACT_DOUBLE 0
#define ACT_V float
#define ACT_U uint32_t
#define ACT_LANES 1
#define ACT_SUFFIX f1
#include "activation_typed.h"
#define ACT_DOUBLE 1
#define ACT_V double
#define ACT_U uint64_t
#define ACT_LANES 1
#define ACT_SUFFIX d1
#include "activation_typed.h"
#endif


/* act_forward_f and _d (and their _avx512, _avx2, _generic versions) */
CNNF_MULTIWIDTH(act_forward_f, act_forward_body,
                 (int kind, const float* restrict x, float* restrict y, ptrdiff_t n,
                  float alpha),
                 (kind, x, y, n, alpha), f16, f8, CNNF_F128)
CNNF_MULTIWIDTH(act_forward_d, act_forward_body,
                 (int kind, const double* restrict x, double* restrict y, ptrdiff_t n,
                  double alpha),
                 (kind, x, y, n, alpha), d8, d4, CNNF_D128)
/* act_backward_f and _d */
CNNF_MULTIWIDTH(act_backward_f, act_backward_body,
                 (int kind, const float* restrict g, const float* restrict x,
                  float* restrict gx, ptrdiff_t n, float alpha),
                 (kind, g, x, gx, n, alpha), f16, f8, CNNF_F128)
CNNF_MULTIWIDTH(act_backward_d, act_backward_body,
                 (int kind, const double* restrict g, const double* restrict x,
                  double* restrict gx, ptrdiff_t n, double alpha),
                 (kind, g, x, gx, n, alpha), d8, d4, CNNF_D128)
/* act_math_f and _d */
CNNF_MULTIWIDTH(act_math_f, act_math_body,
                 (int which, const float* restrict x, float* restrict y, ptrdiff_t n),
                 (which, x, y, n), f16, f8, CNNF_F128)
CNNF_MULTIWIDTH(act_math_d, act_math_body,
                 (int which, const double* restrict x, double* restrict y, ptrdiff_t n),
                 (which, x, y, n), d8, d4, CNNF_D128)

#endif /* CNNFRAME_ACTIVATION_H */
