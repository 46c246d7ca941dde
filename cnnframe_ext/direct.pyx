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
    /* GCC vector extensions: 64-byte vectors (zmm in the AVX-512 clone; split into
       ymm/xmm pairs by the compiler in the others).  The _u types are unaligned,
       may-alias views for loads and stores anywhere in a row. */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define DC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define DC_CLONES
    #endif
    #define DC_INLINE static inline __attribute__((always_inline))
    typedef float dc_float_v __attribute__((vector_size(64)));
    typedef float dc_float_u __attribute__((vector_size(64), aligned(4), may_alias));
    typedef double dc_double_v __attribute__((vector_size(64)));
    typedef double dc_double_u __attribute__((vector_size(64), aligned(8), may_alias));

    /* One tile: FB output channels x V*L pixels starting at xs (band buffer + p0).
       Writes channels < nf and pixels < np of y (y[f * plane + p]). */
    #define DC_TILE(T, FB, V)                                                              \
    DC_INLINE void dc_tile_##T##_##FB##_##V(                                               \
            const T* restrict xs, int C, int KH, int KW, Py_ssize_t cs, Py_ssize_t ks,     \
            int row, const T* restrict w, const T* restrict bias,                          \
            T* restrict y, Py_ssize_t plane, int nf, int np) {                             \
        enum { L = 64 / sizeof(T) };                                                       \
        dc_##T##_v acc[FB][V];                                                             \
        _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++)                              \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                            \
                acc[f][v] = (dc_##T##_v){} + bias[f];                                      \
        for (int c = 0; c < C; c++) {                                                      \
            for (int kw = 0; kw < KW; kw++) {                                              \
                const T* src = xs + c * cs + kw * ks;                                      \
                for (int kh = 0; kh < KH; kh++, src += row, w += FB) {                     \
                    dc_##T##_v in[V];                                                      \
                    _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                    \
                        in[v] = *(const dc_##T##_u*)(src + v * L);                         \
                    _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++) {                \
                        T wf = w[f];                                                       \
                        _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                \
                            acc[f][v] += wf * in[v];                                       \
                    }                                                                      \
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

    /* (FB, V) pairs: FB * V <= 24 accumulators plus inputs and a weight fit in the
       32 vector registers of AVX-512. */
    #define DC_TILES(T)                                                                    \
    DC_TILE(T, 4, 6) DC_TILE(T, 6, 4) DC_TILE(T, 8, 3) DC_TILE(T, 12, 2) DC_TILE(T, 24, 1) \
    DC_TILE(T, 8, 2) DC_TILE(T, 4, 4) DC_TILE(T, 16, 1)

    #define DC_CASE(T, FB, V)                                                              \
        case FB * 8 + V: dc_tile_##T##_##FB##_##V(xs + p0, C, KH, KW, cs, ks, OW,          \
                                 wf, bias + f0, yb + f0 * plane + p0, plane, nf, np); break;

    /* One band: output rows oh0 .. oh0+R-1 of one image x (C, H, W) into y (F, OH, OW).
       w: packed (nfb, C, KW, KH, FB) weights, bias: (nfb * FB,) (zero-padded);
       buf: C * KW * (R + KH - 1) * OW + V * L elements. */
    #define DC_BAND(T)                                                                     \
    DC_CLONES void dc_band_##T(                                                            \
            const T* restrict x, int C, int H, int W, const T* restrict w,                 \
            const T* restrict bias, int F, int KH, int KW, int ph, int pw,                 \
            int oh0, int R, int OH, int OW, int FB, int V, T* restrict buf,                \
            T* restrict y) {                                                               \
        enum { L = 64 / sizeof(T) };                                                       \
        int Hb = R + KH - 1, S = V * L, Pb = R * OW, nfb = (F + FB - 1) / FB;              \
        Py_ssize_t ks = (Py_ssize_t) Hb * OW, cs = KW * ks, plane = (Py_ssize_t) OH * OW;  \
        Py_ssize_t wstride = (Py_ssize_t) C * KW * KH * FB;                                \
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
        /* a last, partial strip reads up to S elements past the copies */                 \
        memset(buf + C * cs, 0, S * sizeof(T));                                            \
        const T* xs = buf;                                                                 \
        T* yb = y + (Py_ssize_t) oh0 * OW;                                                 \
        for (int p0 = 0; p0 < Pb; p0 += S) {                                               \
            int np = Pb - p0 < S ? Pb - p0 : S;                                            \
            for (int fb = 0; fb < nfb; fb++) {                                             \
                int f0 = fb * FB, nf = F - f0 < FB ? F - f0 : FB;                          \
                const T* wf = w + fb * wstride;                                            \
                switch (FB * 8 + V) {                                                      \
                    DC_CASE(T, 4, 6) DC_CASE(T, 6, 4) DC_CASE(T, 8, 3) DC_CASE(T, 12, 2)   \
                    DC_CASE(T, 24, 1) DC_CASE(T, 8, 2) DC_CASE(T, 4, 4) DC_CASE(T, 16, 1)  \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

    DC_TILES(float)
    DC_TILES(double)
    DC_BAND(float)
    DC_BAND(double)

    /* 1 if (FB, V) is one of the compiled micro-kernels. */
    static int dc_has_tile(int FB, int V) {
        switch (FB * 8 + V) {
            case 4 * 8 + 6: case 6 * 8 + 4: case 8 * 8 + 3: case 12 * 8 + 2:
            case 24 * 8 + 1: case 8 * 8 + 2: case 4 * 8 + 4: case 16 * 8 + 1: return 1;
        }
        return 0;
    }
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
