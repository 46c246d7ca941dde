/* The code of activation.h for one element type and vector width, included by it once
   per pair with ACT_DOUBLE (0: float, 1: double), ACT_V (the lanes' vector type, or the
   type itself in plain C), ACT_U (the lanes' bits), ACT_LANES and ACT_SUFFIX (the names'
   suffix) defined; it undefines them again.  No include guard: meant to be included
   more than once. */

#if ACT_DOUBLE
#define ACT_T double
#define ACT_UINT uint64_t
#define ACT_MANT_BITS 52
#define ACT_EXP_BIAS 1023
#define ACT_SIGN_BIT 0x8000000000000000u
#define ACT_MAGIC 6755399441055744.0        /* 1.5 * 2^52: x + MAGIC rounds x to an integer */
#define ACT_MAGIC_BITS 0x4338000000000000u
#define ACT_LOG2E 1.4426950408889634
#define ACT_LN2_HI 6.93147180369123816490e-01  /* ln 2 = LN2_HI + LN2_LO (fdlibm's) */
#define ACT_LN2_LO 1.90821492927058770002e-10
#define ACT_EXP_LO -746.0                   /* e^x rounds to 0 below, to inf above HI */
#define ACT_EXP_HI 710.0
#define ACT_EXPM1_LO -60.0                  /* e^x - 1 rounds to -1 below */
#else
#define ACT_T float
#define ACT_UINT uint32_t
#define ACT_MANT_BITS 23
#define ACT_EXP_BIAS 127
#define ACT_SIGN_BIT 0x80000000u
#define ACT_MAGIC 12582912.0f               /* 1.5 * 2^23 */
#define ACT_MAGIC_BITS 0x4B400000u
#define ACT_LOG2E 1.44269504f
#define ACT_LN2_HI 0.693359375f             /* Cephes': n * LN2_HI is exact */
#define ACT_LN2_LO -2.12194440e-4f
#define ACT_EXP_LO -104.0f
#define ACT_EXP_HI 89.0f
#define ACT_EXPM1_LO -30.0f
#endif

CNNF_INLINE ACT_V ACT_FN(act_splat)(ACT_T c) {
    ACT_V v = {0};
    return v + c;
}
CNNF_INLINE ACT_U ACT_FN(act_bits)(ACT_V v) {
    ACT_U u;
    memcpy(&u, &v, sizeof u);
    return u;
}
CNNF_INLINE ACT_V ACT_FN(act_from_bits)(ACT_U u) {
    ACT_V v;
    memcpy(&v, &u, sizeof v);
    return v;
}
/* mask ? a : b per lane (mask: 0 or all ones), without a branch. */
CNNF_INLINE ACT_V ACT_FN(act_select)(ACT_U mask, ACT_V a, ACT_V b) {
    return ACT_FN(act_from_bits)((ACT_FN(act_bits)(a) & mask) | (ACT_FN(act_bits)(b) & ~mask));
}
CNNF_INLINE ACT_V ACT_FN(act_abs)(ACT_V x) {
    return ACT_FN(act_from_bits)(ACT_FN(act_bits)(x) & ~(ACT_UINT) ACT_SIGN_BIT);
}
/* |x| with the sign of s. */
CNNF_INLINE ACT_V ACT_FN(act_copysign)(ACT_V x, ACT_V s) {
    return ACT_FN(act_from_bits)((ACT_FN(act_bits)(x) & ~(ACT_UINT) ACT_SIGN_BIT)
                                 | (ACT_FN(act_bits)(s) & (ACT_UINT) ACT_SIGN_BIT));
}
/* x where x >= lo (or NaN), else lo. */
CNNF_INLINE ACT_V ACT_FN(act_at_least)(ACT_V x, ACT_T lo) {
    return ACT_FN(act_select)(ACT_MASK(x < lo), ACT_FN(act_splat)(lo), x);
}
/* x where x <= hi (or NaN), else hi. */
CNNF_INLINE ACT_V ACT_FN(act_at_most)(ACT_V x, ACT_T hi) {
    return ACT_FN(act_select)(ACT_MASK(x > hi), ACT_FN(act_splat)(hi), x);
}
/* 2^n for integers n (two's complement in the lanes' bits) of normal powers of two. */
CNNF_INLINE ACT_V ACT_FN(act_pow2)(ACT_U n) {
    return ACT_FN(act_from_bits)((n + (ACT_UINT) ACT_EXP_BIAS) << ACT_MANT_BITS);
}

/* expm1(r) for |r| <= ln2 / 2: its Taylor polynomial (Horner), to degree 8 in float and
   13 in double. */
CNNF_INLINE ACT_V ACT_FN(act_expm1_poly)(ACT_V r) {
#if ACT_DOUBLE
    ACT_V p = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);  /* 1 / 12! and 1 / 13! */
    double factorial = 39916800.0;                            /* 11! */
    for (int k = 11; k >= 2; k--) {  /* unrolled by the compiler: constants 1 / k! */
        p = 1.0 / factorial + r * p;
        factorial /= k;
    }
#else
    ACT_V p = 1.0f / 5040 + r * (1.0f / 40320);
    p = 1.0f / 720 + r * p;
    p = 1.0f / 120 + r * p;
    p = 1.0f / 24 + r * p;
    p = 1.0f / 6 + r * p;
    p = 0.5f + r * p;
#endif
    return r + r * r * p;
}

/* Range reduction: x = n ln2 + r with n = round(x / ln2) (n's bits in *n), |r| <= ln2/2.
   Adding MAGIC rounds to an integer and leaves it in the low bits: no float-to-int
   conversion, which a NaN lane would make undefined in plain C. */
CNNF_INLINE ACT_V ACT_FN(act_reduce)(ACT_V x, ACT_U* n) {
    ACT_V v = x * ACT_LOG2E + ACT_MAGIC;
    ACT_V k = v - ACT_MAGIC;
    *n = ACT_FN(act_bits)(v) - (ACT_UINT) ACT_MAGIC_BITS;
    return (x - k * ACT_LN2_HI) - k * ACT_LN2_LO;
}

/* e^x. */
CNNF_INLINE ACT_V ACT_FN(act_exp)(ACT_V x) {
    ACT_U n, n1;
    x = ACT_FN(act_at_most)(ACT_FN(act_at_least)(x, ACT_EXP_LO), ACT_EXP_HI);
    ACT_V r = ACT_FN(act_reduce)(x, &n);
    ACT_V p = 1 + ACT_FN(act_expm1_poly)(r);
    /* 2^n as 2^n1 * 2^(n - n1), n1 = floor(n / 2) (an arithmetic shift on the bits): both
       normal over the whole range, and the last product rounds once. */
    n1 = (n >> 1) | (n & (ACT_UINT) ACT_SIGN_BIT);
    return p * ACT_FN(act_pow2)(n1) * ACT_FN(act_pow2)(n - n1);
}

/* e^x for x in [-80, 80] (or NaN): act_exp without its clamps and split, where both
   are known to be unneeded. */
CNNF_INLINE ACT_V ACT_FN(act_exp_inside)(ACT_V x) {
    ACT_U n;
    ACT_V r = ACT_FN(act_reduce)(x, &n);
    return (1 + ACT_FN(act_expm1_poly)(r)) * ACT_FN(act_pow2)(n);
}

/* e^x - 1 = s q + (s - 1) for x <= 0 (a positive x counts as 0): returns q, s in *s. */
CNNF_INLINE ACT_V ACT_FN(act_expm1_parts)(ACT_V x, ACT_V* s) {
    ACT_U n;
    x = ACT_FN(act_select)(ACT_MASK(x > 0), ACT_FN(act_splat)(0), x);
    x = ACT_FN(act_at_least)(x, ACT_EXPM1_LO);
    ACT_V r = ACT_FN(act_reduce)(x, &n);
    *s = ACT_FN(act_pow2)(n);
    return ACT_FN(act_expm1_poly)(r);
}

/* e^x - 1 for x <= 0 (a positive x gives 0). */
CNNF_INLINE ACT_V ACT_FN(act_expm1_neg)(ACT_V x) {
    ACT_V s, q = ACT_FN(act_expm1_parts)(x, &s);
    return s * q + (s - 1);
}

/* tanh(x) = (1 - e) / (1 + e) with e = e^(-2|x|) (the sign of x copied in); for small |x|
   as -t / (t + 2) with t = e - 1, which does not cancel.  Both from one range reduction. */
CNNF_INLINE ACT_V ACT_FN(act_tanh)(ACT_V x) {
    ACT_V a = ACT_FN(act_abs)(x), s, q = ACT_FN(act_expm1_parts)(-2 * a, &s);
    ACT_V t = s * q + (s - 1), e = s * (1 + q);
    ACT_V small = -t / (t + 2), large = (1 - e) / (1 + e);
    return ACT_FN(act_copysign)(ACT_FN(act_select)(ACT_MASK(a > (ACT_T) 0.625), large, small),
                                x);
}

#if !ACT_DOUBLE
/* 2^f for |f| <= 1/2: a degree-6 fit (relative error 1e-8). */
CNNF_INLINE ACT_V ACT_FN(act_exp2_poly)(ACT_V f) {
    return 1 + f * (6.931471879e-01f + f * (2.402264979e-01f + f * (5.550357434e-02f + f * (
        9.618237508e-03f + f * (1.339073546e-03f + f * 1.540350825e-04f)))));
}

/* 2^w for w <= 0 (or NaN), subnormal results included (as act_exp). */
CNNF_INLINE ACT_V ACT_FN(act_exp2_nonpos)(ACT_V w) {
    w = ACT_FN(act_at_least)(w, -151.0f);
    ACT_V v = w + ACT_MAGIC, k = v - ACT_MAGIC;
    ACT_U n = ACT_FN(act_bits)(v) - (ACT_UINT) ACT_MAGIC_BITS;
    ACT_U n1 = (n >> 1) | (n & (ACT_UINT) ACT_SIGN_BIT);
    return ACT_FN(act_exp2_poly)(w - k) * ACT_FN(act_pow2)(n1) * ACT_FN(act_pow2)(n - n1);
}

/* table[k & 7] in each lane, k the lane's index.  GCC: a permute of the table held in
   vectors (__builtin_shuffle takes indices modulo its entries: vpermps for 8 and 16
   lanes); clang, which lacks __builtin_shuffle, and plain C: lane by lane. */
CNNF_INLINE ACT_V ACT_FN(act_lookup8)(const float table[8], ACT_U k) {
#if CNNF_VECTOR_EXTENSIONS && !defined(__clang__) && ACT_LANES >= 8
    ACT_V t;
    for (int i = 0; i < ACT_LANES; i++) t[i] = table[i & 7];
    return __builtin_shuffle(t, k);
#elif CNNF_VECTOR_EXTENSIONS && !defined(__clang__)
    ACT_V lo, hi;
    memcpy(&lo, table, sizeof lo);
    memcpy(&hi, table + 4, sizeof hi);
    return __builtin_shuffle(lo, hi, k);
#elif CNNF_VECTOR_EXTENSIONS
    ACT_V r;
    for (int i = 0; i < ACT_LANES; i++) r[i] = table[k[i] & 7];
    return r;
#else
    return table[k & 7];
#endif
}
#endif

/* erf(x) (see the top of activation.h). */
CNNF_INLINE ACT_V ACT_FN(act_erf)(ACT_V x) {
#if ACT_DOUBLE && CNNF_VECTOR_EXTENSIONS
    for (int k = 0; k < ACT_LANES; k++) x[k] = erf(x[k]);
    return x;
#elif ACT_DOUBLE
    return erf(x);
#else
    /* |x| up to 4 (a NaN stays NaN: its interval does not matter) */
    ACT_V a = ACT_FN(act_at_most)(ACT_FN(act_abs)(x), 4.0f);
    /* k = round(a / step) in the low bits of v (as act_reduce); 0..7 */
    ACT_V v = a * (1 / ACT_ERF_STEP) + ACT_MAGIC;
    ACT_U k = ACT_FN(act_bits)(v) - (ACT_UINT) ACT_MAGIC_BITS;
    ACT_V t = a - ACT_FN(act_lookup8)(act_erf_center, k);
    ACT_V p = ACT_FN(act_lookup8)(act_erf_poly[ACT_ERF_DEGREE - 1], k);
    for (int j = ACT_ERF_DEGREE - 2; j >= 0; j--)   /* unrolled by the compiler */
        p = ACT_FN(act_lookup8)(act_erf_poly[j], k) + t * p;
    /* interval 0: a + a Q(a) (then t = a); else c0 + t P(t) (base: exactly a or c0) */
    ACT_V base = a * ACT_FN(act_lookup8)(act_erf_is0, k) + ACT_FN(act_lookup8)(act_erf_c0, k);
    /* at most 1: the last interval's polynomial overshoots by an ulp near |x| = 4 */
    ACT_V r = ACT_FN(act_at_most)(base + t * p, 1.0f);
    /* r >= 0 (or NaN): or in the sign of x */
    return ACT_FN(act_from_bits)(ACT_FN(act_bits)(r)
                                 | (ACT_FN(act_bits)(x) & (ACT_UINT) ACT_SIGN_BIT));
#endif
}

/* ---- the activations: PyTorch's formulas, in its order of evaluation ---- */
#define ACT_SQRT1_2 ((ACT_T) 0.70710678118654752440)       /* 1 / sqrt(2) */
#define ACT_INV_SQRT_2PI ((ACT_T) 0.39894228040143267794)  /* 1 / sqrt(2 pi) */
#define ACT_SQRT_2_PI ((ACT_T) 0.79788456080286535588)     /* sqrt(2 / pi) */
#define ACT_KAPPA ((ACT_T) 0.044715)

CNNF_INLINE ACT_V ACT_FN(act_gelu)(ACT_V x) {
    return x * (ACT_T) 0.5 * (1 + ACT_FN(act_erf)(x * ACT_SQRT1_2));
}
CNNF_INLINE ACT_V ACT_FN(act_gelu_grad)(ACT_V g, ACT_V x) {
    ACT_V cdf = (ACT_T) 0.5 * (1 + ACT_FN(act_erf)(x * ACT_SQRT1_2));
#if ACT_DOUBLE
    ACT_V pdf = ACT_INV_SQRT_2PI * ACT_FN(act_exp)((ACT_T) -0.5 * x * x);
#else
    /* e^(-x^2 / 2) = 2^(-x^2 log2(e) / 2): the product's rounding adds an error about as
       large as that of -0.5 x x (PyTorch's argument) does, and saves the ln 2 split */
    ACT_V pdf = ACT_INV_SQRT_2PI * ACT_FN(act_exp2_nonpos)(x * x * -0.72134752f);
#endif
    return g * (cdf + x * pdf);
}

CNNF_INLINE ACT_V ACT_FN(act_gelu_tanh)(ACT_V x) {
    ACT_V inner = ACT_SQRT_2_PI * (x + ACT_KAPPA * (x * x * x));
    return (ACT_T) 0.5 * x * (1 + ACT_FN(act_tanh)(inner));
}
CNNF_INLINE ACT_V ACT_FN(act_gelu_tanh_grad)(ACT_V g, ACT_V x) {
    ACT_V x_sq = x * x;
    ACT_V t = ACT_FN(act_tanh)(ACT_SQRT_2_PI * (x + ACT_KAPPA * (x_sq * x)));
    ACT_V left_derivative = (ACT_T) 0.5 * (1 + t);
    ACT_V right_derivative = (ACT_T) 0.5 * x * (1 - t * t) * ACT_SQRT_2_PI
                             * (1 + 3 * ACT_KAPPA * x_sq);
    return g * (left_derivative + right_derivative);
}

CNNF_INLINE ACT_V ACT_FN(act_silu)(ACT_V x) {
    return x / (1 + ACT_FN(act_exp)(-x));
}
CNNF_INLINE ACT_V ACT_FN(act_silu_grad)(ACT_V g, ACT_V x) {
    ACT_V s = 1 / (1 + ACT_FN(act_exp)(-x));
    return g * (s * (1 + x * (1 - s)));
}

/* x * min(max(x + 3, 0), 6) / 6; a NaN stays NaN. */
CNNF_INLINE ACT_V ACT_FN(act_hardswish)(ACT_V x) {
    ACT_V t = ACT_FN(act_at_most)(ACT_FN(act_at_least)(x + 3, 0), 6);
    return x * t / 6;
}
/* 0 below -3, x / 3 + 1/2 on [-3, 3], 1 above; NaN for a NaN x (as PyTorch's vectorised
   kernel). */
CNNF_INLINE ACT_V ACT_FN(act_hardswish_grad)(ACT_V g, ACT_V x) {
    ACT_V mid = ACT_FN(act_select)(ACT_MASK(x > 3), g, g * (x / 3 + (ACT_T) 0.5));
    return ACT_FN(act_select)(ACT_MASK(x < -3), ACT_FN(act_splat)(0), mid);
}

CNNF_INLINE ACT_V ACT_FN(act_elu)(ACT_V x, ACT_T alpha) {
    return ACT_FN(act_select)(ACT_MASK(x > 0), x, alpha * ACT_FN(act_expm1_neg)(x));
}
/* At 0 the left derivative, alpha, as PyTorch. */
CNNF_INLINE ACT_V ACT_FN(act_elu_grad)(ACT_V g, ACT_V x, ACT_T alpha) {
    return ACT_FN(act_select)(ACT_MASK(x > 0), g, g * (alpha * ACT_FN(act_exp)(x)));
}

/* act_forward_f/_d: y[0:n] = f(x[0:n]) for activation `kind` (alpha: ELU's). */
CNNF_INLINE void ACT_FN(act_forward_body)(int kind, const ACT_T* restrict x,
                                          ACT_T* restrict y, ptrdiff_t n, ACT_T alpha) {
    switch (kind) {
        case ACT_GELU: ACT_MAP1(x, y, n, ACT_FN(act_gelu)(v)); break;
        case ACT_GELU_TANH: ACT_MAP1(x, y, n, ACT_FN(act_gelu_tanh)(v)); break;
        case ACT_SILU: ACT_MAP1(x, y, n, ACT_FN(act_silu)(v)); break;
        case ACT_HARDSWISH: ACT_MAP1(x, y, n, ACT_FN(act_hardswish)(v)); break;
        default: ACT_MAP1(x, y, n, ACT_FN(act_elu)(v, alpha));
    }
}

/* act_backward_f/_d: gx[0:n] = grad_y[0:n] * f'(x[0:n]). */
CNNF_INLINE void ACT_FN(act_backward_body)(int kind, const ACT_T* restrict grad_y,
                                           const ACT_T* restrict x, ACT_T* restrict gx,
                                           ptrdiff_t n, ACT_T alpha) {
    switch (kind) {
        case ACT_GELU: ACT_MAP2(grad_y, x, gx, n, ACT_FN(act_gelu_grad)(g, v)); break;
        case ACT_GELU_TANH: ACT_MAP2(grad_y, x, gx, n, ACT_FN(act_gelu_tanh_grad)(g, v)); break;
        case ACT_SILU: ACT_MAP2(grad_y, x, gx, n, ACT_FN(act_silu_grad)(g, v)); break;
        case ACT_HARDSWISH: ACT_MAP2(grad_y, x, gx, n, ACT_FN(act_hardswish_grad)(g, v)); break;
        default: ACT_MAP2(grad_y, x, gx, n, ACT_FN(act_elu_grad)(g, v, alpha));
    }
}

/* act_math_f/_d: y[0:n] = exp, expm1 (x <= 0), tanh or erf of x[0:n] (`which`). */
CNNF_INLINE void ACT_FN(act_math_body)(int which, const ACT_T* restrict x, ACT_T* restrict y,
                                       ptrdiff_t n) {
    switch (which) {
        case ACT_EXP: ACT_MAP1(x, y, n, ACT_FN(act_exp)(v)); break;
        case ACT_EXPM1: ACT_MAP1(x, y, n, ACT_FN(act_expm1_neg)(v)); break;
        case ACT_TANH: ACT_MAP1(x, y, n, ACT_FN(act_tanh)(v)); break;
        default: ACT_MAP1(x, y, n, ACT_FN(act_erf)(v));
    }
}

#undef ACT_SQRT1_2
#undef ACT_INV_SQRT_2PI
#undef ACT_SQRT_2_PI
#undef ACT_KAPPA
#undef ACT_T
#undef ACT_UINT
#undef ACT_MANT_BITS
#undef ACT_EXP_BIAS
#undef ACT_SIGN_BIT
#undef ACT_MAGIC
#undef ACT_MAGIC_BITS
#undef ACT_LOG2E
#undef ACT_LN2_HI
#undef ACT_LN2_LO
#undef ACT_EXP_LO
#undef ACT_EXP_HI
#undef ACT_EXPM1_LO
#undef ACT_DOUBLE
#undef ACT_V
#undef ACT_U
#undef ACT_LANES
#undef ACT_SUFFIX
