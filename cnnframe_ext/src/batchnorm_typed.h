/* The batch-norm row helpers' code for one element type, included by batchnorm.h with
   BN_T (the type), BN_LOAD and BN_LOAD_MASKED (its vector loads), BN_ROW_SUM and
   BN_ROW_SUM2 (the sums over a row: batchnorm.h's BNK_ROW_SUM or its _HALVES) and the
   names of the functions defined here (BN_ROW_STATS, BN_AFFINE, BN_GRAD_SUMS,
   BN_GRAD_X, BN_RELU, BN_RELU_GRAD) defined; it undefines them again.  Without
   BN_AFFINE only the summing helpers, BN_ROW_STATS and BN_GRAD_SUMS, are defined.  No
   include guard: meant to be included more than once.

   Each helper works on `rows` consecutive rows of L values starting at row q0 (channel
   of row r: (q0 + r) % C); per-channel constants come as double arrays of C. */

/* row r's mean and sum of squared deviations from it (the second pass over the row
   reads it from cache) */
CNNF_INLINE void BN_ROW_STATS(const BN_T* restrict x, ptrdiff_t rows, ptrdiff_t L,
                              double* restrict mean, double* restrict m2) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const BN_T* restrict p = x + r * L;
        double s, mu;
        BN_ROW_SUM(L, BN_LOAD(p + k_), (double) p[k_], s);
        mu = s / (double) L;
        mean[r] = mu;
        BN_ROW_SUM(L, (BN_LOAD(p + k_) - mu) * (BN_LOAD(p + k_) - mu),
                    ((double) p[k_] - mu) * ((double) p[k_] - mu), m2[r]);
    }
}

#ifdef BN_AFFINE
/* y = (x - mean[c]) * scale[c] + shift[c]; mean and shift may be NULL (zeros).  relu:
   y = max(that, 0) (batch norm fused with the ReLU after it); mask: x is taken as 0
   where mask <= 0 (the fused ReLU's gradient, eval-mode backward). */
CNNF_INLINE void BN_AFFINE(const BN_T* restrict x, ptrdiff_t rows, ptrdiff_t L, ptrdiff_t C,
                           ptrdiff_t q0, const double* mean, const double* scale,
                           const double* shift, const BN_T* restrict mask, int relu,
                           BN_T* restrict y) {
    ptrdiff_t c = q0 % C;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const BN_T* restrict p = x + r * L;
        BN_T* restrict o = y + r * L;
        const BN_T m = mean ? (BN_T) mean[c] : (BN_T) 0, s = (BN_T) scale[c];
        const BN_T b = shift ? (BN_T) shift[c] : (BN_T) 0;
        if (mask) {
            const BN_T* restrict k = mask + r * L;
            _Pragma("omp simd")
            for (ptrdiff_t i = 0; i < L; i++) o[i] = (BNK_MASKED(p, k, i) - m) * s + b;
        } else if (relu) {
            _Pragma("omp simd")
            for (ptrdiff_t i = 0; i < L; i++) {
                const BN_T v = (p[i] - m) * s + b;
                o[i] = v <= (BN_T) 0 ? (BN_T) 0 : v;
            }
        } else {
            _Pragma("omp simd")
            for (ptrdiff_t i = 0; i < L; i++) o[i] = (p[i] - m) * s + b;
        }
        if (++c == C) c = 0;
    }
}
#endif /* BN_AFFINE */

/* part_g[r] = sum of g over row r; part_gd[r] = sum of g * (x - mean[c]); with a mask,
   g is taken as 0 where mask <= 0 (the fused ReLU's gradient) */
CNNF_INLINE void BN_GRAD_SUMS(const BN_T* restrict g, const BN_T* restrict x,
                              const BN_T* restrict mask, ptrdiff_t rows, ptrdiff_t L,
                              ptrdiff_t C, ptrdiff_t q0, const double* restrict mean,
                              double* restrict part_g, double* restrict part_gd) {
    ptrdiff_t c = q0 % C;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const BN_T* restrict gp = g + r * L;
        const BN_T* restrict xp = x + r * L;
        const double m = mean[c];
        if (mask) {
            const BN_T* restrict kp = mask + r * L;
            BN_ROW_SUM2(L, BN_LOAD_MASKED(gp + k_, kp + k_),
                         (double) BNK_MASKED(gp, kp, k_), part_g[r],
                         BN_LOAD_MASKED(gp + k_, kp + k_) * (BN_LOAD(xp + k_) - m),
                         (double) BNK_MASKED(gp, kp, k_) * ((double) xp[k_] - m), part_gd[r]);
        } else {
            BN_ROW_SUM2(L, BN_LOAD(gp + k_), (double) gp[k_], part_g[r],
                         BN_LOAD(gp + k_) * (BN_LOAD(xp + k_) - m),
                         (double) gp[k_] * ((double) xp[k_] - m), part_gd[r]);
        }
        if (++c == C) c = 0;
    }
}

#ifdef BN_AFFINE
/* gx = g * a[c] + ((x - mean[c]) * k1[c] + k0[c]); g masked as in BN_GRAD_SUMS */
CNNF_INLINE void BN_GRAD_X(const BN_T* restrict g, const BN_T* restrict x,
                           const BN_T* restrict mask, ptrdiff_t rows, ptrdiff_t L,
                           ptrdiff_t C, ptrdiff_t q0, const double* mean, const double* a,
                           const double* k1, const double* k0, BN_T* restrict gx) {
    ptrdiff_t c = q0 % C;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const BN_T* restrict gp = g + r * L;
        const BN_T* restrict xp = x + r * L;
        BN_T* restrict o = gx + r * L;
        const BN_T m = (BN_T) mean[c], av = (BN_T) a[c], k1v = (BN_T) k1[c], k0v = (BN_T) k0[c];
        if (mask) {
            const BN_T* restrict kp = mask + r * L;
            _Pragma("omp simd")
            for (ptrdiff_t i = 0; i < L; i++)
                o[i] = BNK_MASKED(gp, kp, i) * av + ((xp[i] - m) * k1v + k0v);
        } else {
            _Pragma("omp simd")
            for (ptrdiff_t i = 0; i < L; i++) o[i] = gp[i] * av + ((xp[i] - m) * k1v + k0v);
        }
        if (++c == C) c = 0;
    }
}

/* y = max(x, 0) as numpy.maximum: NaN stays NaN, -0.0 becomes 0 */
CNNF_INLINE void BN_RELU(const BN_T* restrict x, ptrdiff_t n, BN_T* restrict y) {
    _Pragma("omp simd")
    for (ptrdiff_t i = 0; i < n; i++) y[i] = x[i] <= (BN_T) 0 ? (BN_T) 0 : x[i];
}

/* gx = g where y > 0 else 0 */
CNNF_INLINE void BN_RELU_GRAD(const BN_T* restrict g, const BN_T* restrict y, ptrdiff_t n,
                              BN_T* restrict gx) {
    _Pragma("omp simd")
    for (ptrdiff_t i = 0; i < n; i++) gx[i] = y[i] > (BN_T) 0 ? g[i] : (BN_T) 0;
}
#endif /* BN_AFFINE */

#undef BN_T
#undef BN_LOAD
#undef BN_LOAD_MASKED
#undef BN_ROW_SUM
#undef BN_ROW_SUM2
#undef BN_ROW_STATS
#undef BN_AFFINE
#undef BN_GRAD_SUMS
#undef BN_GRAD_X
#undef BN_RELU
#undef BN_RELU_GRAD
