"""Direct (no im2col) convolution for stride-1, undilated, ungrouped convs, NCHW.

Work items are bands of R output rows of one image.  For its band a thread
builds KW shifted, zero-padded copies of the input rows the band reads,
    xs[c, kw, r, j] = xpad[c, oh0 + r, j + kw]     (r < R + KH - 1, j < OW)
so that for every tap (c, kh, kw) the inputs of the band's output pixels,
flattened as p = (oh - oh0) * OW + ow, are one contiguous run:
    y[f, oh0*OW + p] = bias[f] + sum_{c, kw, kh} w[f, c, kh, kw] * xs[c, kw, kh*OW + p]
Any width works the same way (8x8 maps fill whole vectors, rows need no edge
cases) and the copies cost KW/(F*KH*KW) of the multiply-adds.

A micro-kernel keeps FB output channels x V vectors of consecutive pixels in
registers (at most 24 vectors), loads V input vectors per tap, broadcasts FB
weights and FMAs; the caller packs the weights as (F/FB, C, KW, KH, FB) so
each tap's FB weights are adjacent.  Every output pixel is summed in the same
order (bias, then c, kw, kh) whatever its band, strip or thread, so results do
not depend on the thread count.  The caller validates every argument.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid


cdef extern from *:
    """
    #include <string.h>
    /* GCC vector extensions, 64-byte vectors: zmm registers in the AVX-512 kernels.
       The _u types are unaligned, may-alias views for loads and stores anywhere. */
    typedef float dc_float_v __attribute__((vector_size(64)));
    typedef float dc_float_u __attribute__((vector_size(64), aligned(4), may_alias));
    typedef double dc_double_v __attribute__((vector_size(64)));
    typedef double dc_double_u __attribute__((vector_size(64), aligned(8), may_alias));
    #define DC_INLINE static inline __attribute__((always_inline))

    /* The large micro-kernels need the 32 vector registers of AVX-512: they are built
       for it only (built for AVX2 or SSE they would spill, and compiling such clones
       takes minutes), and picked at run time when the CPU has it.  A small (2, 1)
       micro-kernel is built for every x86-64 (AVX2 and plain clones) and elsewhere. */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define DC_X86 1
    #define DC_AVX512 __attribute__((target("avx512f")))
    #define DC_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define DC_X86 0
    #define DC_CLONES
    #endif

    static int dc_cpu_avx512(void) {
    #if DC_X86
        return __builtin_cpu_supports("avx512f");
    #else
        return 0;
    #endif
    }

    /* One tile: FB output channels x V*L pixels starting at xs (band buffer + p0).
       Writes channels < nf and pixels < np of y (y[f * plane + p]).  K > 0 compiles
       a K x K kernel with its taps unrolled; K == 0 takes any KH x KW. */
    #define DC_TILE(T, FB, V, K)                                                           \
    DC_INLINE void dc_tile_##T##_##FB##_##V##_##K(                                         \
            const T* restrict xs, int C, int KH_, int KW_, Py_ssize_t cs, Py_ssize_t ks,   \
            int row, const T* restrict w, const T* restrict bias,                          \
            T* restrict y, Py_ssize_t plane, int nf, int np) {                             \
        enum { L = 64 / sizeof(T) };                                                       \
        const int KH = K ? K : KH_, KW = K ? K : KW_;                                      \
        dc_##T##_v acc[FB][V];                                                             \
        _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++)                              \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                            \
                acc[f][v] = (dc_##T##_v){} + bias[f];                                      \
        for (int c = 0; c < C; c++) {                                                      \
            DC_UNROLL_##K for (int kw = 0; kw < KW; kw++) {                                \
                const T* src = xs + c * cs + kw * ks;                                      \
                DC_UNROLL_##K for (int kh = 0; kh < KH; kh++) {                            \
                    dc_##T##_v in[V];                                                      \
                    _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                    \
                        in[v] = *(const dc_##T##_u*)(src + kh * row + v * L);              \
                    _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++) {                \
                        T wf = w[f];                                                       \
                        _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                \
                            acc[f][v] += wf * in[v];                                       \
                    }                                                                      \
                    w += FB;                                                               \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        if (np == V * L) {                                                                 \
            _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++) {                        \
                if (f < nf) {                                                              \
                    _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                    \
                        *(dc_##T##_u*)(y + f * plane + v * L) = acc[f][v];                 \
                }                                                                          \
            }                                                                              \
        } else {                                                                           \
            T tmp[V * L];                                                                  \
            for (int f = 0; f < nf; f++) {                                                 \
                memcpy(tmp, acc[f], sizeof(tmp));                                          \
                memcpy(y + f * plane, tmp, np * sizeof(T));                                \
            }                                                                              \
        }                                                                                  \
    }
    #define DC_UNROLL_0
    #define DC_UNROLL_3 _Pragma("GCC unroll 3")
    #define DC_UNROLL_5 _Pragma("GCC unroll 5")

    /* All strips x channel blocks of one band with one micro-kernel. */
    #define DC_STRIPS(ATTR, T, FB, V, K)                                                   \
    DC_TILE(T, FB, V, K)                                                                   \
    ATTR static void dc_strips_##T##_##FB##_##V##_##K(                                     \
            const T* restrict xs, int C, int KH, int KW, Py_ssize_t cs, Py_ssize_t ks,     \
            int OW, const T* restrict w, const T* restrict bias, int F,                    \
            T* restrict yb, Py_ssize_t plane, int Pb) {                                    \
        enum { L = 64 / sizeof(T), S = V * L };                                            \
        Py_ssize_t wstride = (Py_ssize_t) C * KW * KH * FB;                                \
        for (int p0 = 0; p0 < Pb; p0 += S) {                                               \
            int np = Pb - p0 < S ? Pb - p0 : S;                                            \
            for (int f0 = 0; f0 < F; f0 += FB) {                                           \
                int nf = F - f0 < FB ? F - f0 : FB;                                        \
                dc_tile_##T##_##FB##_##V##_##K(xs + p0, C, KH, KW, cs, ks, OW,             \
                    w + (f0 / FB) * wstride, bias + f0, yb + f0 * plane + p0, plane, nf, np); \
            }                                                                              \
        }                                                                                  \
    }
    #define DC_CALL(T, FB, V, K)                                                           \
        dc_strips_##T##_##FB##_##V##_##K(xs, C, KH, KW, cs, ks, OW, w, bias, F, yb, plane, Pb)

    DC_STRIPS(DC_CLONES, float, 2, 1, 0)
    DC_STRIPS(DC_CLONES, double, 2, 1, 0)
    #if DC_X86
    /* (FB, V) with FB * V <= 24 accumulators, plus inputs and a weight, in 32 registers */
    #define DC_AVX512_TILES(T, K)                                                          \
    DC_STRIPS(DC_AVX512, T, 6, 4, K) DC_STRIPS(DC_AVX512, T, 12, 2, K)                     \
    DC_STRIPS(DC_AVX512, T, 24, 1, K) DC_STRIPS(DC_AVX512, T, 8, 2, K)                     \
    DC_STRIPS(DC_AVX512, T, 4, 4, K) DC_STRIPS(DC_AVX512, T, 16, 1, K)
    #define DC_CASE(T, FB, V, K) case FB * 8 + V: DC_CALL(T, FB, V, K); break;
    #define DC_SWITCH(T, K)                                                                \
        switch (FB * 8 + V) {                                                              \
            DC_CASE(T, 6, 4, K) DC_CASE(T, 12, 2, K) DC_CASE(T, 24, 1, K)                  \
            DC_CASE(T, 8, 2, K) DC_CASE(T, 4, 4, K) DC_CASE(T, 16, 1, K)                   \
        }
    DC_AVX512_TILES(float, 0) DC_AVX512_TILES(float, 3) DC_AVX512_TILES(float, 5)
    DC_AVX512_TILES(double, 0)
    /* float64 only needs to be right: no unrolled kernel sizes */
    #define DC_DISPATCH_float                                                              \
        if (KH == 3 && KW == 3) { DC_SWITCH(float, 3) }                                    \
        else if (KH == 5 && KW == 5) { DC_SWITCH(float, 5) }                               \
        else { DC_SWITCH(float, 0) }
    #define DC_DISPATCH_double DC_SWITCH(double, 0)
    #else
    #define DC_DISPATCH_float
    #define DC_DISPATCH_double
    #endif

    /* 1 if the (FB, V) micro-kernel runs on this CPU. */
    static int dc_has_tile(int FB, int V) {
        if (FB == 2 && V == 1) return 1;
        if (!dc_cpu_avx512()) return 0;
        switch (FB * 8 + V) {
            case 6 * 8 + 4: case 12 * 8 + 2: case 24 * 8 + 1: case 8 * 8 + 2: case 4 * 8 + 4:
            case 16 * 8 + 1: return 1;
        }
        return 0;
    }

    /* One band: output rows oh0 .. oh0+R-1 of one image x (C, H, W) into y (F, OH, OW).
       w: packed (nfb, C, KW, KH, FB) weights, bias: (nfb * FB,) (zero-padded);
       buf: C * KW * (R + KH - 1) * OW + V * L elements; (FB, V) passed dc_has_tile. */
    #define DC_BAND(T)                                                                     \
    static void dc_band_##T(                                                               \
            const T* restrict x, int C, int H, int W, const T* restrict w,                 \
            const T* restrict bias, int F, int KH, int KW, int ph, int pw,                 \
            int oh0, int R, int OH, int OW, int FB, int V, T* restrict buf,                \
            T* restrict y) {                                                               \
        enum { L = 64 / sizeof(T) };                                                       \
        int Hb = R + KH - 1, Pb = R * OW;                                                  \
        Py_ssize_t ks = (Py_ssize_t) Hb * OW, cs = KW * ks, plane = (Py_ssize_t) OH * OW;  \
        for (int c = 0; c < C; c++) {                                                      \
            for (int kw = 0; kw < KW; kw++) {                                              \
                /* columns j with 0 <= j + kw - pw < W come from x, the rest are 0 */      \
                int lo = pw - kw > 0 ? pw - kw : 0;                                        \
                int hi = W + pw - kw < OW ? W + pw - kw : OW;                              \
                if (lo > OW) lo = OW;                                                      \
                if (hi < lo) hi = lo;                                                      \
                for (int r = 0; r < Hb; r++) {                                             \
                    T* dst = buf + c * cs + kw * ks + (Py_ssize_t) r * OW;                 \
                    int ih = oh0 + r - ph;                                                 \
                    if (ih < 0 || ih >= H) {                                               \
                        memset(dst, 0, OW * sizeof(T));                                    \
                        continue;                                                          \
                    }                                                                      \
                    memset(dst, 0, lo * sizeof(T));                                        \
                    memcpy(dst + lo, x + ((Py_ssize_t) c * H + ih) * W + lo + kw - pw,     \
                           (hi - lo) * sizeof(T));                                         \
                    memset(dst + hi, 0, (OW - hi) * sizeof(T));                            \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        /* a last, partial strip reads up to V * L elements past the copies */             \
        memset(buf + C * cs, 0, V * L * sizeof(T));                                        \
        const T* xs = buf;                                                                 \
        T* yb = y + (Py_ssize_t) oh0 * OW;                                                 \
        if (FB == 2 && V == 1) { DC_CALL(T, 2, 1, 0); }                                    \
        else { DC_DISPATCH_##T }                                                           \
    }
    DC_BAND(float)
    DC_BAND(double)
    """
    void dc_band_float(const float* x, int C, int H, int W, const float* w, const float* bias,
                       int F, int KH, int KW, int ph, int pw, int oh0, int R, int OH, int OW,
                       int FB, int V, float* buf, float* y) noexcept nogil
    void dc_band_double(const double* x, int C, int H, int W, const double* w,
                        const double* bias, int F, int KH, int KW, int ph, int pw, int oh0,
                        int R, int OH, int OW, int FB, int V, double* buf,
                        double* y) noexcept nogil
    int dc_has_tile(int FB, int V) noexcept nogil


def has_tile(int fb, int v):
    """True if an (FB channels x V vectors) micro-kernel is compiled in."""
    return dc_has_tile(fb, v) != 0


def direct_conv2d(const floating[:, :, :, ::1] x,         # IN  (N, C, H, W)
                  const floating[:, :, :, :, ::1] w,      # IN  (F/FB, C, KW, KH, FB) packed, zero-padded
                  const floating[::1] bias,               # IN  (F/FB * FB,) zero-padded (zeros: no bias)
                  floating[:, :, :, ::1] y,               # OUT (N, F, OH, OW)
                  floating[:, ::1] buf,                   # scratch (threads, C*KW*(R+KH-1)*OW + V*L)
                  int ph, int pw, int R, int V, int num_threads):
    """y = conv2d(x, weight, bias, stride=1, padding=(ph, pw)) in bands of R output rows."""
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef int FB = w.shape[4], KW = w.shape[2], KH = w.shape[3]
    cdef int nbands = (OH + R - 1) // R
    cdef Py_ssize_t item, items = <Py_ssize_t> N * nbands
    cdef int n, oh0, t
    cdef floating* b
    if items == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        b = &buf[t, 0]
        for item in prange(items, schedule="static"):
            n = item // nbands
            oh0 = (item % nbands) * R
            if floating is float:
                dc_band_float(&x[n, 0, 0, 0], C, H, W, &w[0, 0, 0, 0, 0], &bias[0], F, KH, KW,
                              ph, pw, oh0, min(R, OH - oh0), OH, OW, FB, V, b, &y[n, 0, 0, 0])
            else:
                dc_band_double(&x[n, 0, 0, 0], C, H, W, &w[0, 0, 0, 0, 0], &bias[0], F, KH, KW,
                               ph, pw, oh0, min(R, OH - oh0), OH, OW, FB, V, b, &y[n, 0, 0, 0])
