/* The normalisation row helpers' code for one element type and vector width, included
   by norm.h once per pair with NRM_T (the row's type), NRM_D (NRM_LANES doubles) and
   NRM_SUFFIX defined; it undefines them again.  No
   include guard: meant to be included more than once. */

#define NRM_FN(name) CNNF_CAT(name, NRM_SUFFIX)
/* OUT1 and OUT2 = the sums over k_ in [0, n) of V1 and V2, the vectors of terms k_ ..
   k_ + lanes - 1, or of S1 and S2, the single terms k_: blocks of 4 vectors go to four
   accumulators each, then single vectors to the first, then single terms, in that order. */
#define NRM_SUM2(n, V1, S1, OUT1, V2, S2, OUT2)                                             \
    do {                                                                                    \
        NRM_D a0_ = {0}, a1_ = {0}, a2_ = {0}, a3_ = {0};                                   \
        NRM_D b0_ = {0}, b1_ = {0}, b2_ = {0}, b3_ = {0};                                   \
        ptrdiff_t i_ = 0;                                                                   \
        for (; i_ + 4 * NRM_LANES <= (n); i_ += 4 * NRM_LANES) {                            \
            { const ptrdiff_t k_ = i_; a0_ += (V1); b0_ += (V2); }                          \
            { const ptrdiff_t k_ = i_ + NRM_LANES; a1_ += (V1); b1_ += (V2); }              \
            { const ptrdiff_t k_ = i_ + 2 * NRM_LANES; a2_ += (V1); b2_ += (V2); }          \
            { const ptrdiff_t k_ = i_ + 3 * NRM_LANES; a3_ += (V1); b3_ += (V2); }          \
        }                                                                                   \
        for (; i_ + NRM_LANES <= (n); i_ += NRM_LANES) {                                    \
            const ptrdiff_t k_ = i_;                                                        \
            a0_ += (V1);                                                                    \
            b0_ += (V2);                                                                    \
        }                                                                                   \
        double s_ = NRM_FN(nrm_hsum)((a0_ + a1_) + (a2_ + a3_));                            \
        double t_ = NRM_FN(nrm_hsum)((b0_ + b1_) + (b2_ + b3_));                            \
        for (; i_ < (n); i_++) {                                                            \
            const ptrdiff_t k_ = i_;                                                        \
            s_ += (S1);                                                                     \
            t_ += (S2);                                                                     \
        }                                                                                   \
        (OUT1) = s_;                                                                        \
        (OUT2) = t_;                                                                        \
    } while (0)
/* OUT = the sum of V / S, as NRM_SUM2 */
#define NRM_SUM1(n, V, S, OUT)                                                              \
    do {                                                                                    \
        NRM_D a0_ = {0}, a1_ = {0}, a2_ = {0}, a3_ = {0};                                   \
        ptrdiff_t i_ = 0;                                                                   \
        for (; i_ + 4 * NRM_LANES <= (n); i_ += 4 * NRM_LANES) {                            \
            { const ptrdiff_t k_ = i_; a0_ += (V); }                                        \
            { const ptrdiff_t k_ = i_ + NRM_LANES; a1_ += (V); }                            \
            { const ptrdiff_t k_ = i_ + 2 * NRM_LANES; a2_ += (V); }                        \
            { const ptrdiff_t k_ = i_ + 3 * NRM_LANES; a3_ += (V); }                        \
        }                                                                                   \
        for (; i_ + NRM_LANES <= (n); i_ += NRM_LANES) {                                    \
            const ptrdiff_t k_ = i_;                                                        \
            a0_ += (V);                                                                     \
        }                                                                                   \
        double s_ = NRM_FN(nrm_hsum)((a0_ + a1_) + (a2_ + a3_));                            \
        for (; i_ < (n); i_++) {                                                            \
            const ptrdiff_t k_ = i_;                                                        \
            s_ += (S);                                                                      \
        }                                                                                   \
        (OUT) = s_;                                                                         \
    } while (0)

/* NRM_LANES values at p, as doubles.  Lane by lane: GCC 12 makes one conversion
   instruction of this (vcvtps2pd), but of __builtin_convertvector two halves and a
   round trip through the stack. */
CNNF_INLINE NRM_D NRM_FN(nrm_load)(const NRM_T* p) {
#if CNNF_VECTOR_EXTENSIONS
    NRM_D v;
    for (int k = 0; k < NRM_LANES; k++) v[k] = (double) p[k];
    return v;
#else
    return (NRM_D) *p;
#endif
}
/* the sum of v's lanes, in lane order */
CNNF_INLINE double NRM_FN(nrm_hsum)(NRM_D v) {
#if CNNF_VECTOR_EXTENSIONS
    double s = v[0];
    for (int k = 1; k < NRM_LANES; k++) s += v[k];
    return s;
#else
    return v;
#endif
}

CNNF_INLINE void NRM_FN(nrm_stats_body)(const NRM_T* restrict x, ptrdiff_t n,
                                        double* restrict mean, double* restrict m2) {
    double s, mu;
    NRM_SUM1(n, NRM_FN(nrm_load)(x + k_), (double) x[k_], s);
    mu = s / (double) n;
    NRM_SUM1(n, (NRM_FN(nrm_load)(x + k_) - mu) * (NRM_FN(nrm_load)(x + k_) - mu),
             ((double) x[k_] - mu) * ((double) x[k_] - mu), *m2);
    *mean = mu;
}

CNNF_INLINE void NRM_FN(nrm_slot_affine_body)(const NRM_T* restrict x, ptrdiff_t n, double mu,
                                              double scale, double shift, NRM_T* restrict y) {
    const NRM_T m = (NRM_T) mu, s = (NRM_T) scale, b = (NRM_T) shift;
    _Pragma("omp simd")
    for (ptrdiff_t i = 0; i < n; i++) y[i] = (x[i] - m) * s + b;
}

CNNF_INLINE void NRM_FN(nrm_slot_sums_body)(const NRM_T* restrict g, const NRM_T* restrict x,
                                            ptrdiff_t n, double mu, double* restrict sum_g,
                                            double* restrict sum_gd) {
    NRM_SUM2(n, NRM_FN(nrm_load)(g + k_), (double) g[k_], *sum_g,
             NRM_FN(nrm_load)(g + k_) * (NRM_FN(nrm_load)(x + k_) - mu),
             (double) g[k_] * ((double) x[k_] - mu), *sum_gd);
}

CNNF_INLINE void NRM_FN(nrm_slot_grad_x_body)(const NRM_T* restrict g, const NRM_T* restrict x,
                                              ptrdiff_t n, double mu, double a, double k1,
                                              double k0, NRM_T* restrict gx) {
    const NRM_T m = (NRM_T) mu, av = (NRM_T) a, k1v = (NRM_T) k1, k0v = (NRM_T) k0;
    _Pragma("omp simd")
    for (ptrdiff_t i = 0; i < n; i++) gx[i] = g[i] * av + ((x[i] - m) * k1v + k0v);
}

CNNF_INLINE void NRM_FN(nrm_affine_body)(const NRM_T* restrict x, ptrdiff_t n, double mu,
                                         double istd, const NRM_T* restrict w,
                                         const NRM_T* restrict b, NRM_T* restrict y) {
    const NRM_T m = (NRM_T) mu, s = (NRM_T) istd;
    _Pragma("omp simd")
    for (ptrdiff_t i = 0; i < n; i++) y[i] = (x[i] - m) * s * w[i] + b[i];
}

CNNF_INLINE void NRM_FN(nrm_sums_body)(const NRM_T* restrict g, const NRM_T* restrict x,
                                       ptrdiff_t n, double mu, const NRM_T* restrict w,
                                       double* restrict sum_gw, double* restrict sum_gdw) {
    NRM_SUM2(n, NRM_FN(nrm_load)(g + k_) * NRM_FN(nrm_load)(w + k_),
             (double) g[k_] * (double) w[k_], *sum_gw,
             NRM_FN(nrm_load)(g + k_) * (NRM_FN(nrm_load)(x + k_) - mu) * NRM_FN(nrm_load)(w + k_),
             (double) g[k_] * ((double) x[k_] - mu) * (double) w[k_], *sum_gdw);
}

CNNF_INLINE void NRM_FN(nrm_grads_body)(const NRM_T* restrict g, const NRM_T* restrict x,
                                        ptrdiff_t n, double mu, double istd,
                                        const NRM_T* restrict w, double k1, double k0,
                                        double* restrict gw, double* restrict gb,
                                        NRM_T* restrict gx) {
    const NRM_T m = (NRM_T) mu, s = (NRM_T) istd, k1v = (NRM_T) k1, k0v = (NRM_T) k0;
    if (gw) {
        _Pragma("omp simd")
        for (ptrdiff_t i = 0; i < n; i++) {
            gw[i] += (double) g[i] * ((double) x[i] - mu) * istd;
            gb[i] += (double) g[i];
        }
    }
    if (gx) {
        _Pragma("omp simd")
        for (ptrdiff_t i = 0; i < n; i++)
            gx[i] = g[i] * w[i] * s + ((x[i] - m) * k1v + k0v);
    }
}

#undef NRM_FN
#undef NRM_SUM2
#undef NRM_SUM1
#undef NRM_T
#undef NRM_D
#undef NRM_LANES
#undef NRM_SUFFIX
