"""Batch normalisation and ReLU kernels: forward and backward over (N, C, L) views.

An (N, C, L) array is N*C rows of L values, row q = n*C + c holding channel
c = q % C.  Every pass walks the rows in memory order, cut into fixed blocks of
whole rows that the OpenMP threads share (writing a channel at a time, rows C*L
apart, measured 2x slower than streaming).  A pass that reduces writes one
result per row; after a barrier each thread combines the rows of every channel
itself, over n = 0, 1, ... in that order, so results do not depend on the
thread count, and goes on without a second synchronisation.

Sums are accumulated in double (8-lane vectors in a fixed order, independent of
the data's address).  Statistics are numerically sound for channels whose mean
is far from 0: each row's mean, then its squared deviations from that mean
(a second sweep over the row, from cache), merged across rows with Chan et
al.'s pairwise update; 131072 float32 values per channel lose nothing.

The row helpers are C with restrict pointers, built for AVX-512, AVX2 and
baseline x86-64 and picked at load time (as in winograd.pyx); inside the
parallel loops arrays are reached through plain pointers.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport sqrt


cdef extern from *:
    """
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define BNK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define BNK_CLONES
    #endif
    #include <string.h>
    #if defined(__GNUC__) && !defined(__clang__)
    /* the 8-lane helpers are always inlined: no vector ever crosses a call */
    #pragma GCC diagnostic ignored "-Wpsabi"
    #endif

    /* Sums run in double over 8-lane vectors (GCC/clang vector extensions: one zmm, two
       ymm or four xmm registers depending on the clone).  Values are converted on load. */
    typedef float bnk_v8f __attribute__((vector_size(32)));
    typedef double bnk_v8d __attribute__((vector_size(64)));
    static inline __attribute__((always_inline)) bnk_v8d bnk_load_f(const float* p) {
        bnk_v8f v; memcpy(&v, p, sizeof v); return __builtin_convertvector(v, bnk_v8d);
    }
    static inline __attribute__((always_inline)) bnk_v8d bnk_load_d(const double* p) {
        bnk_v8d v; memcpy(&v, p, sizeof v); return v;
    }
    /* g where y > 0 else +0.0 (ReLU's gradient, fused into batch norm's backward), as
       relu_grad writes it: the same values reach the sums bit for bit. */
    typedef int bnk_v8i __attribute__((vector_size(32)));
    typedef long long bnk_v8l __attribute__((vector_size(64)));
    static inline __attribute__((always_inline)) bnk_v8d bnk_load_masked_f(const float* g,
                                                                            const float* y) {
        bnk_v8f gv, yv; bnk_v8i gi;
        memcpy(&gv, g, sizeof gv); memcpy(&yv, y, sizeof yv);
        memcpy(&gi, &gv, sizeof gi);
        gi &= (yv > 0.0f);
        memcpy(&gv, &gi, sizeof gv);
        return __builtin_convertvector(gv, bnk_v8d);
    }
    static inline __attribute__((always_inline)) bnk_v8d bnk_load_masked_d(const double* g,
                                                                            const double* y) {
        bnk_v8d gv, yv; bnk_v8l gi;
        memcpy(&gv, g, sizeof gv); memcpy(&yv, y, sizeof yv);
        memcpy(&gi, &gv, sizeof gi);
        gi &= (yv > 0.0);
        memcpy(&gv, &gi, sizeof gv);
        return gv;
    }
    #define BNK_MASKED(g, y, i) ((y)[i] > 0 ? (g)[i] : 0)
    #define BNK_HSUM(v) ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) + (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))

    /* OUT = the sum over k_ in [0, L) of one row's terms: VEXPR is the vector of terms
       k_ .. k_+7, SEXPR the single term k_.  Blocks of 32 go to four accumulators
       (independent add chains), blocks of 8 to the first, the rest to a scalar tail;
       they are combined in a fixed order, so the result depends only on the row. */
    #define BNK_ROW_SUM(L, VEXPR, SEXPR, OUT)                                                 \
        do {                                                                                  \
            bnk_v8d a0_ = {0}, a1_ = {0}, a2_ = {0}, a3_ = {0};                               \
            Py_ssize_t i_ = 0;                                                                \
            for (; i_ + 32 <= (L); i_ += 32) {                                                \
                { const Py_ssize_t k_ = i_; a0_ += (VEXPR); }                                 \
                { const Py_ssize_t k_ = i_ + 8; a1_ += (VEXPR); }                             \
                { const Py_ssize_t k_ = i_ + 16; a2_ += (VEXPR); }                            \
                { const Py_ssize_t k_ = i_ + 24; a3_ += (VEXPR); }                            \
            }                                                                                 \
            for (; i_ + 8 <= (L); i_ += 8) { const Py_ssize_t k_ = i_; a0_ += (VEXPR); }      \
            a0_ = (a0_ + a1_) + (a2_ + a3_);                                                  \
            double s_ = BNK_HSUM(a0_);                                                        \
            for (; i_ < (L); i_++) { const Py_ssize_t k_ = i_; s_ += (SEXPR); }               \
            (OUT) = s_;                                                                       \
        } while (0)

    /* Two sums over one row in one sweep (two accumulators each): OUT1 of VEXPR1 /
       SEXPR1 and OUT2 of VEXPR2 / SEXPR2, as BNK_ROW_SUM. */
    #define BNK_ROW_SUM2(L, VEXPR1, SEXPR1, OUT1, VEXPR2, SEXPR2, OUT2)                       \
        do {                                                                                  \
            bnk_v8d a0_ = {0}, a1_ = {0}, b0_ = {0}, b1_ = {0};                               \
            Py_ssize_t i_ = 0;                                                                \
            for (; i_ + 16 <= (L); i_ += 16) {                                                \
                { const Py_ssize_t k_ = i_; a0_ += (VEXPR1); b0_ += (VEXPR2); }               \
                { const Py_ssize_t k_ = i_ + 8; a1_ += (VEXPR1); b1_ += (VEXPR2); }           \
            }                                                                                 \
            for (; i_ + 8 <= (L); i_ += 8) {                                                  \
                const Py_ssize_t k_ = i_; a0_ += (VEXPR1); b0_ += (VEXPR2);                   \
            }                                                                                 \
            a0_ += a1_;                                                                       \
            b0_ += b1_;                                                                       \
            double s_ = BNK_HSUM(a0_), t_ = BNK_HSUM(b0_);                                    \
            for (; i_ < (L); i_++) { const Py_ssize_t k_ = i_; s_ += (SEXPR1); t_ += (SEXPR2); } \
            (OUT1) = s_;                                                                      \
            (OUT2) = t_;                                                                      \
        } while (0)

    /* Helpers over `rows` consecutive rows of L values starting at row q0 (channel of
       row r: (q0 + r) % C); per-channel constants come as double arrays of C. */
    #define BNK_KERNELS(T, SUF)                                                               \
    /* row r's mean and sum of squared deviations from it (the second pass over the     */ \
    /* row reads it from cache)                                                         */ \
    BNK_CLONES                                                                                \
    static void bnk_row_stats_##SUF(const T* restrict x, Py_ssize_t rows, Py_ssize_t L,       \
                                    double* restrict mean, double* restrict m2) {             \
        for (Py_ssize_t r = 0; r < rows; r++) {                                               \
            const T* restrict p = x + r * L;                                                  \
            double s, mu;                                                                     \
            BNK_ROW_SUM(L, bnk_load_##SUF(p + k_), (double) p[k_], s);                        \
            mu = s / (double) L;                                                              \
            mean[r] = mu;                                                                     \
            BNK_ROW_SUM(L, (bnk_load_##SUF(p + k_) - mu) * (bnk_load_##SUF(p + k_) - mu),     \
                        ((double) p[k_] - mu) * ((double) p[k_] - mu), m2[r]);                \
        }                                                                                     \
    }                                                                                         \
    /* y = (x - mean[c]) * scale[c] + shift[c]; mean and shift may be NULL (zeros).       */ \
    /* relu: y = max(that, 0) (batch norm fused with the ReLU after it); mask: x is taken  */ \
    /* as 0 where mask <= 0 (the fused ReLU's gradient, eval-mode backward).               */ \
    BNK_CLONES                                                                                \
    static void bnk_affine_##SUF(const T* restrict x, Py_ssize_t rows, Py_ssize_t L,          \
                                 Py_ssize_t C, Py_ssize_t q0, const double* mean,             \
                                 const double* scale, const double* shift,                    \
                                 const T* restrict mask, int relu, T* restrict y) {           \
        Py_ssize_t c = q0 % C;                                                                \
        for (Py_ssize_t r = 0; r < rows; r++) {                                               \
            const T* restrict p = x + r * L;                                                  \
            T* restrict o = y + r * L;                                                        \
            const T m = mean ? (T) mean[c] : (T) 0, s = (T) scale[c];                         \
            const T b = shift ? (T) shift[c] : (T) 0;                                         \
            if (mask) {                                                                       \
                const T* restrict k = mask + r * L;                                           \
                _Pragma("omp simd")                                                           \
                for (Py_ssize_t i = 0; i < L; i++) o[i] = (BNK_MASKED(p, k, i) - m) * s + b;   \
            } else if (relu) {                                                                \
                _Pragma("omp simd")                                                           \
                for (Py_ssize_t i = 0; i < L; i++) {                                          \
                    const T v = (p[i] - m) * s + b;                                           \
                    o[i] = v <= (T) 0 ? (T) 0 : v;                                            \
                }                                                                             \
            } else {                                                                          \
                _Pragma("omp simd")                                                           \
                for (Py_ssize_t i = 0; i < L; i++) o[i] = (p[i] - m) * s + b;                 \
            }                                                                                 \
            if (++c == C) c = 0;                                                              \
        }                                                                                     \
    }                                                                                         \
    /* part_g[r] = sum of g over row r; part_gd[r] = sum of g * (x - mean[c]); with a     */ \
    /* mask, g is taken as 0 where mask <= 0 (the fused ReLU's gradient)                   */ \
    BNK_CLONES                                                                                \
    static void bnk_grad_sums_##SUF(const T* restrict g, const T* restrict x,                 \
                                    const T* restrict mask, Py_ssize_t rows, Py_ssize_t L,    \
                                    Py_ssize_t C, Py_ssize_t q0, const double* restrict mean, \
                                    double* restrict part_g, double* restrict part_gd) {      \
        Py_ssize_t c = q0 % C;                                                                \
        for (Py_ssize_t r = 0; r < rows; r++) {                                               \
            const T* restrict gp = g + r * L;                                                 \
            const T* restrict xp = x + r * L;                                                 \
            const double m = mean[c];                                                         \
            if (mask) {                                                                       \
                const T* restrict kp = mask + r * L;                                          \
                BNK_ROW_SUM2(L, bnk_load_masked_##SUF(gp + k_, kp + k_),                      \
                             (double) BNK_MASKED(gp, kp, k_), part_g[r],                      \
                             bnk_load_masked_##SUF(gp + k_, kp + k_) * (bnk_load_##SUF(xp + k_) - m), \
                             (double) BNK_MASKED(gp, kp, k_) * ((double) xp[k_] - m), part_gd[r]); \
            } else {                                                                          \
                BNK_ROW_SUM2(L, bnk_load_##SUF(gp + k_), (double) gp[k_], part_g[r],           \
                             bnk_load_##SUF(gp + k_) * (bnk_load_##SUF(xp + k_) - m),         \
                             (double) gp[k_] * ((double) xp[k_] - m), part_gd[r]);            \
            }                                                                                 \
            if (++c == C) c = 0;                                                              \
        }                                                                                     \
    }                                                                                         \
    /* gx = g * a[c] + ((x - mean[c]) * k1[c] + k0[c]); g masked as in bnk_grad_sums */      \
    BNK_CLONES                                                                                \
    static void bnk_grad_x_##SUF(const T* restrict g, const T* restrict x,                    \
                                 const T* restrict mask, Py_ssize_t rows, Py_ssize_t L,       \
                                 Py_ssize_t C, Py_ssize_t q0, const double* mean,             \
                                 const double* a, const double* k1, const double* k0,         \
                                 T* restrict gx) {                                            \
        Py_ssize_t c = q0 % C;                                                                \
        for (Py_ssize_t r = 0; r < rows; r++) {                                               \
            const T* restrict gp = g + r * L;                                                 \
            const T* restrict xp = x + r * L;                                                 \
            T* restrict o = gx + r * L;                                                       \
            const T m = (T) mean[c], av = (T) a[c], k1v = (T) k1[c], k0v = (T) k0[c];         \
            if (mask) {                                                                       \
                const T* restrict kp = mask + r * L;                                          \
                _Pragma("omp simd")                                                           \
                for (Py_ssize_t i = 0; i < L; i++)                                            \
                    o[i] = BNK_MASKED(gp, kp, i) * av + ((xp[i] - m) * k1v + k0v);            \
            } else {                                                                          \
                _Pragma("omp simd")                                                           \
                for (Py_ssize_t i = 0; i < L; i++) o[i] = gp[i] * av + ((xp[i] - m) * k1v + k0v); \
            }                                                                                 \
            if (++c == C) c = 0;                                                              \
        }                                                                                     \
    }                                                                                         \
    /* y = max(x, 0) as numpy.maximum: NaN stays NaN, -0.0 becomes 0 */                      \
    BNK_CLONES                                                                                \
    static void bnk_relu_##SUF(const T* restrict x, Py_ssize_t n, T* restrict y) {            \
        _Pragma("omp simd")                                                                   \
        for (Py_ssize_t i = 0; i < n; i++) y[i] = x[i] <= (T) 0 ? (T) 0 : x[i];               \
    }                                                                                         \
    /* gx = g where y > 0 else 0 */                                                           \
    BNK_CLONES                                                                                \
    static void bnk_relu_grad_##SUF(const T* restrict g, const T* restrict y, Py_ssize_t n,   \
                                    T* restrict gx) {                                         \
        _Pragma("omp simd")                                                                   \
        for (Py_ssize_t i = 0; i < n; i++) gx[i] = y[i] > (T) 0 ? g[i] : (T) 0;               \
    }
    BNK_KERNELS(float, f)
    BNK_KERNELS(double, d)
    /* Inside a parallel region: wait until every thread has finished the loop before
       (Cython's prange loops inside parallel() end without a barrier). */
    #define bnk_barrier() _Pragma("omp barrier")
    """
    void bnk_row_stats_f(const float*, Py_ssize_t, Py_ssize_t, double*, double*) noexcept nogil
    void bnk_row_stats_d(const double*, Py_ssize_t, Py_ssize_t, double*, double*) noexcept nogil
    void bnk_affine_f(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                      const double*, const double*, const float*, int, float*) noexcept nogil
    void bnk_affine_d(const double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                      const double*, const double*, const double*, const double*, int,
                      double*) noexcept nogil
    void bnk_grad_sums_f(const float*, const float*, const float*, Py_ssize_t, Py_ssize_t,
                         Py_ssize_t, Py_ssize_t, const double*, double*, double*) noexcept nogil
    void bnk_grad_sums_d(const double*, const double*, const double*, Py_ssize_t, Py_ssize_t,
                         Py_ssize_t, Py_ssize_t, const double*, double*, double*) noexcept nogil
    void bnk_grad_x_f(const float*, const float*, const float*, Py_ssize_t, Py_ssize_t,
                      Py_ssize_t, Py_ssize_t, const double*, const double*, const double*,
                      const double*, float*) noexcept nogil
    void bnk_grad_x_d(const double*, const double*, const double*, Py_ssize_t, Py_ssize_t,
                      Py_ssize_t, Py_ssize_t, const double*, const double*, const double*,
                      const double*, double*) noexcept nogil
    void bnk_relu_f(const float*, Py_ssize_t, float*) noexcept nogil
    void bnk_relu_d(const double*, Py_ssize_t, double*) noexcept nogil
    void bnk_relu_grad_f(const float*, const float*, Py_ssize_t, float*) noexcept nogil
    void bnk_relu_grad_d(const double*, const double*, Py_ssize_t, double*) noexcept nogil
    void bnk_barrier() noexcept nogil


cdef enum:
    # Threads share the work in blocks of about this many values (whole rows for batch norm).
    BLOCK_VALUES = 1 << 14


cdef inline Py_ssize_t rows_per_block(Py_ssize_t L) noexcept nogil:
    return max(1, BLOCK_VALUES // max(L, 1))


def batch_norm_train_forward(const floating[:, :, ::1] x,   # IN  (N, C, L), N*L >= 1
                             const double[::1] weight,      # IN  (C,)
                             const double[::1] bias,        # IN  (C,)
                             double eps,
                             floating[:, :, ::1] y,         # OUT (N, C, L), not overlapping x
                             double[::1] mean,              # OUT (C,) batch mean
                             double[::1] var,               # OUT (C,) biased batch variance
                             double[::1] invstd,            # OUT (C,) 1 / sqrt(var + eps)
                             double[:, ::1] part,           # scratch (2, N*C)
                             double[:, ::1] stats,          # scratch (num_threads, 3*C)
                             bint relu, int num_threads):
    """Batch statistics per channel and y = (x - mean) * weight * invstd + bias
    (y = max(that, 0) with relu: batch norm fused with the ReLU after it).

    One pass computes each row's mean and squared deviations (the row is re-read
    from cache); after a barrier every thread merges the rows of all channels
    itself (Chan et al.'s pairwise update, rows in order n = 0, 1, ...) into its
    own copy of the constants, then a second pass writes y.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], rows = N * C, c, n
    cdef Py_ssize_t R = rows_per_block(L), blocks = (rows + R - 1) // R, b, q0
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0]
    cdef double* row_mean = &part[0, 0]
    cdef double* row_m2 = &part[1, 0]
    cdef const double* wp = &weight[0]
    cdef const double* bp = &bias[0]
    cdef double* mean_out = &mean[0]
    cdef double* var_out = &var[0]
    cdef double* invstd_out = &invstd[0]
    cdef double* own = NULL
    cdef double d = 0, f = 0
    cdef int tid = 0
    c = n = 0  # (private copies of the parallel block start initialised)
    with nogil, parallel(num_threads=num_threads):
        for b in prange(blocks, schedule="static"):
            q0 = b * R
            if floating is float:
                bnk_row_stats_f(xp + q0 * L, min(R, rows - q0), L, row_mean + q0, row_m2 + q0)
            else:
                bnk_row_stats_d(xp + q0 * L, min(R, rows - q0), L, row_mean + q0, row_m2 + q0)
        bnk_barrier()
        tid = threadid()
        own = &stats[tid, 0]  # this thread's mean | M2, then invstd | scale
        for c in range(C):
            own[c] = row_mean[c]
            own[C + c] = row_m2[c]
        for n in range(1, N):
            # merge row n (L values) into rows 0..n-1 (n*L values): the new mean moves by
            # d / (n + 1), M2 gains the row's own plus d^2 * n*L / (n + 1)
            f = 1.0 / (n + 1)
            for c in range(C):
                d = row_mean[n * C + c] - own[c]
                own[c] = own[c] + d * f
                own[C + c] = own[C + c] + row_m2[n * C + c] + d * d * (L * n * f)
        for c in range(C):
            own[C + c] = own[C + c] / (<double> N * L)          # biased variance
            if tid == 0:
                mean_out[c] = own[c]
                var_out[c] = own[C + c]
            own[C + c] = 1.0 / sqrt(own[C + c] + eps)            # invstd
            if tid == 0:
                invstd_out[c] = own[C + c]
            own[2 * C + c] = wp[c] * own[C + c]                  # scale
        for b in prange(blocks, schedule="static"):
            q0 = b * R
            if floating is float:
                bnk_affine_f(xp + q0 * L, min(R, rows - q0), L, C, q0, own, own + 2 * C,
                             bp, NULL, relu, yp + q0 * L)
            else:
                bnk_affine_d(xp + q0 * L, min(R, rows - q0), L, C, q0, own, own + 2 * C,
                             bp, NULL, relu, yp + q0 * L)


def batch_norm_affine(const floating[:, :, ::1] x,   # IN  (N, C, L)
                      const double[::1] mean,        # IN  (C,)
                      const double[::1] scale,       # IN  (C,)
                      const double[::1] shift,       # IN  (C,)
                      floating[:, :, ::1] y,         # OUT (N, C, L), not overlapping x
                      bint relu, int num_threads):
    """y = (x - mean) * scale + shift per channel (eval-mode batch norm); max(y, 0) with relu."""
    cdef Py_ssize_t L = x.shape[2], C = x.shape[1], rows = x.shape[0] * C
    cdef Py_ssize_t R = rows_per_block(L), blocks = (rows + R - 1) // R, b, q0
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0]
    cdef const double* mp = &mean[0]
    cdef const double* sp = &scale[0]
    cdef const double* hp = &shift[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        q0 = b * R
        if floating is float:
            bnk_affine_f(xp + q0 * L, min(R, rows - q0), L, C, q0, mp, sp, hp, NULL, relu,
                         yp + q0 * L)
        else:
            bnk_affine_d(xp + q0 * L, min(R, rows - q0), L, C, q0, mp, sp, hp, NULL, relu,
                         yp + q0 * L)


def batch_norm_backward(const floating[:, :, ::1] grad_y,  # IN  (N, C, L)
                        const floating[:, :, ::1] x,       # IN  (N, C, L) forward input
                        const floating[:, :, ::1] relu_y,  # IN  (N, C, L) fused ReLU's output, or empty
                        const double[::1] weight,          # IN  (C,)
                        const double[::1] mean,            # IN  (C,) batch or running mean
                        const double[::1] invstd,          # IN  (C,) 1 / sqrt(var + eps)
                        double[::1] grad_weight,           # OUT (C,)
                        double[::1] grad_bias,             # OUT (C,)
                        floating[:, :, ::1] grad_x,        # OUT (N, C, L) if input_grad, else unused
                        double[:, ::1] part,               # scratch (2, N*C)
                        double[:, ::1] coef,               # scratch (num_threads, 5*C)
                        bint training, bint input_grad, int num_threads):
    """Parameter gradients (a pass over grad_y and x) and grad_x (a second pass).

    With xhat = (x - mean) * invstd and a = weight * invstd: grad_bias = sum(g),
    grad_weight = sum(g * xhat); in training (mean and invstd depend on x)
    grad_x = a * (g - grad_bias / m - xhat * grad_weight / m), m = N*L, computed as
    g * a + (x - mean) * k1 + k0; in eval (constants) grad_x = g * a.  Between the
    passes every thread adds up the per-row sums of all channels (in order n = 0,
    1, ...) into its own copy of the constants.  With a non-empty relu_y (batch norm fused
    with the ReLU after it), grad_y is the gradient of relu_y and g is grad_y where
    relu_y > 0, else 0.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], rows = N * C, c, n
    cdef Py_ssize_t R = rows_per_block(L), blocks = (rows + R - 1) // R, b, q0
    cdef double m = <double> N * L
    cdef const floating* gp = &grad_y[0, 0, 0]
    cdef const floating* xp = &x[0, 0, 0]
    cdef const floating* kp = &relu_y[0, 0, 0] if relu_y.shape[0] > 0 else NULL
    cdef floating* gxp = &grad_x[0, 0, 0] if input_grad else NULL
    cdef const double* mp = &mean[0]
    cdef double* row_g = &part[0, 0]
    cdef double* row_gd = &part[1, 0]
    cdef const double* wp = &weight[0]
    cdef const double* ip = &invstd[0]
    cdef double* gw_out = &grad_weight[0]
    cdef double* gb_out = &grad_bias[0]
    cdef double* own = NULL
    cdef int tid = 0
    c = n = 0  # (private copies of the parallel block start initialised)
    with nogil, parallel(num_threads=num_threads):
        for b in prange(blocks, schedule="static"):
            q0 = b * R
            if floating is float:
                bnk_grad_sums_f(gp + q0 * L, xp + q0 * L, kp + q0 * L if kp else NULL,
                                min(R, rows - q0), L, C, q0, mp, row_g + q0, row_gd + q0)
            else:
                bnk_grad_sums_d(gp + q0 * L, xp + q0 * L, kp + q0 * L if kp else NULL,
                                min(R, rows - q0), L, C, q0, mp, row_g + q0, row_gd + q0)
        bnk_barrier()
        tid = threadid()
        own = &coef[tid, 0]  # this thread's grad_bias | sum g*(x - mean) | a | k1 | k0
        for c in range(2 * C):
            own[c] = 0
        for n in range(N):
            for c in range(C):
                own[c] = own[c] + row_g[n * C + c]
                own[C + c] = own[C + c] + row_gd[n * C + c]
        for c in range(C):
            own[C + c] = own[C + c] * ip[c]                          # grad_weight
            own[2 * C + c] = wp[c] * ip[c]                           # a
            own[3 * C + c] = -own[2 * C + c] * ip[c] * own[C + c] / m  # k1
            own[4 * C + c] = -own[2 * C + c] * own[c] / m            # k0
            if tid == 0:
                gb_out[c] = own[c]
                gw_out[c] = own[C + c]
        if input_grad:
            for b in prange(blocks, schedule="static"):
                q0 = b * R
                if training:
                    if floating is float:
                        bnk_grad_x_f(gp + q0 * L, xp + q0 * L, kp + q0 * L if kp else NULL,
                                     min(R, rows - q0), L, C, q0, mp, own + 2 * C, own + 3 * C,
                                     own + 4 * C, gxp + q0 * L)
                    else:
                        bnk_grad_x_d(gp + q0 * L, xp + q0 * L, kp + q0 * L if kp else NULL,
                                     min(R, rows - q0), L, C, q0, mp, own + 2 * C, own + 3 * C,
                                     own + 4 * C, gxp + q0 * L)
                else:  # constants: grad_x = (g - 0) * a + 0, x is not read again
                    if floating is float:
                        bnk_affine_f(gp + q0 * L, min(R, rows - q0), L, C, q0, NULL, own + 2 * C,
                                     NULL, kp + q0 * L if kp else NULL, 0, gxp + q0 * L)
                    else:
                        bnk_affine_d(gp + q0 * L, min(R, rows - q0), L, C, q0, NULL, own + 2 * C,
                                     NULL, kp + q0 * L if kp else NULL, 0, gxp + q0 * L)


def relu_forward(const floating[::1] x,   # IN  (n,)
                 floating[::1] y,         # OUT (n,), not overlapping x
                 int num_threads):
    cdef Py_ssize_t n = x.shape[0], blocks = (n + BLOCK_VALUES - 1) // BLOCK_VALUES, b, lo
    cdef const floating* xp = &x[0]
    cdef floating* yp = &y[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        lo = b * BLOCK_VALUES
        if floating is float:
            bnk_relu_f(xp + lo, min(BLOCK_VALUES, n - lo), yp + lo)
        else:
            bnk_relu_d(xp + lo, min(BLOCK_VALUES, n - lo), yp + lo)


def relu_backward(const floating[::1] grad_y,  # IN  (n,)
                  const floating[::1] y,       # IN  (n,) the forward output
                  floating[::1] grad_x,        # OUT (n,), not overlapping the inputs
                  int num_threads):
    cdef Py_ssize_t n = y.shape[0], blocks = (n + BLOCK_VALUES - 1) // BLOCK_VALUES, b, lo
    cdef const floating* gp = &grad_y[0]
    cdef const floating* yp = &y[0]
    cdef floating* xp = &grad_x[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        lo = b * BLOCK_VALUES
        if floating is float:
            bnk_relu_grad_f(gp + lo, yp + lo, min(BLOCK_VALUES, n - lo), xp + lo)
        else:
            bnk_relu_grad_d(gp + lo, yp + lo, min(BLOCK_VALUES, n - lo), xp + lo)
