"""Direct (no im2col) convolution for stride-1, undilated, ungrouped convs, NCHW.

Work items are bands of R output rows of one image.  For its band a thread
builds KW shifted, zero-padded copies of the input rows the band reads,
    xs[c, kw, r, j] = xpad[c, oh0 + r, j + kw]     (r < R + KH - 1, j < OW)
so that for every tap (c, kh, kw) the inputs of the band's output pixels,
flattened as p = (oh - oh0) * OW + ow, are one contiguous run:
    y[f, oh0*OW + p] = bias[f] + sum_{c, kw, kh} w[f, c, kh, kw] * xs[c, kw, kh*OW + p]
Any width works the same way (8x8 maps fill whole vectors, rows need no edge
cases), and the copies move about 1/(F*KH) as many elements as there are
multiply-adds.  In "same" convs (OW == W) each (c, kw) block is one shifted run
of the input plane.  (Reading x through AVX-512 masked loads instead, without
copies, measured 2-24% slower: misaligned loads, a mask per tap.)

A micro-kernel keeps FB output channels x V vectors of consecutive pixels in
registers (at most 24 vectors), loads V input vectors per tap, broadcasts FB
weights and FMAs; the caller packs the weights as (F/FB, C, KW, KH, FB) so
each tap's FB weights are adjacent.  Every output pixel is summed in the same
order (bias, then c, kw, kh) whatever its band, strip or thread, so results do
not depend on the thread count.  The caller validates every argument.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset


cdef extern from *:
    """
    /* GCC vector extensions.  The _u types are unaligned, may-alias views for loads and
       stores anywhere in a row. */
    typedef float dc_float_v64 __attribute__((vector_size(64)));
    typedef float dc_float_u64 __attribute__((vector_size(64), aligned(4), may_alias));
    typedef double dc_double_v64 __attribute__((vector_size(64)));
    typedef double dc_double_u64 __attribute__((vector_size(64), aligned(8), may_alias));
    typedef float dc_float_u32 __attribute__((vector_size(32), aligned(4), may_alias));
    typedef double dc_double_u32 __attribute__((vector_size(32), aligned(8), may_alias));
    typedef float dc_float_v16 __attribute__((vector_size(16)));
    typedef float dc_float_u16 __attribute__((vector_size(16), aligned(4), may_alias));
    typedef double dc_double_v16 __attribute__((vector_size(16)));
    typedef double dc_double_u16 __attribute__((vector_size(16), aligned(8), may_alias));
    #define DC_INLINE static inline __attribute__((always_inline))

    /* The large micro-kernels need the 32 vector registers of AVX-512: they are built
       for it only (built for AVX2 or SSE they would spill, and compiling such clones
       takes minutes) and used when the CPU has it.  A small micro-kernel on 16-byte
       vectors is built for every CPU, with an FMA clone on x86-64 (fused multiply-adds
       round like the AVX-512 kernels, so every kernel gives the same bits there). */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define DC_X86 1
    #define DC_AVX512 __attribute__((target("avx512f")))
    #define DC_CLONES __attribute__((target_clones("fma", "default")))
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

    /* d[0:n] = s[0:n] (or 0 when s is NULL) in 64-, 32- and 16-byte pieces.  Rows are
       short: a libc call per row cost 10% of a whole conv, so the empty asm hides the
       loops' pattern from GCC, which would turn them back into memcpy/memset calls. */
    #define DC_OPAQUE(j) __asm__("" : "+r"(j))
    #define DC_RUN(T)                                                                      \
    DC_INLINE void dc_run_##T(T* restrict d, const T* restrict s, Py_ssize_t n) {          \
        Py_ssize_t j = 0;                                                                  \
        if (s) {                                                                           \
            for (; j + 64 / (int) sizeof(T) <= n; j += 64 / sizeof(T)) {                   \
                DC_OPAQUE(j);                                                              \
                *(dc_##T##_u64*)(d + j) = *(const dc_##T##_u64*)(s + j);                   \
            }                                                                              \
            if (j + 32 / (int) sizeof(T) <= n) {                                           \
                *(dc_##T##_u32*)(d + j) = *(const dc_##T##_u32*)(s + j);                   \
                j += 32 / sizeof(T);                                                       \
            }                                                                              \
            if (j + 16 / (int) sizeof(T) <= n) {                                           \
                *(dc_##T##_u16*)(d + j) = *(const dc_##T##_u16*)(s + j);                   \
                j += 16 / sizeof(T);                                                       \
            }                                                                              \
            for (; j < n; j++) { DC_OPAQUE(j); d[j] = s[j]; }                              \
        } else {                                                                           \
            for (; j + 64 / (int) sizeof(T) <= n; j += 64 / sizeof(T)) {                   \
                DC_OPAQUE(j);                                                              \
                *(dc_##T##_u64*)(d + j) = (dc_##T##_v64){};                                \
            }                                                                              \
            if (j + 32 / (int) sizeof(T) <= n) {                                           \
                *(dc_##T##_u32*)(d + j) = (dc_##T##_u32){};                                \
                j += 32 / sizeof(T);                                                       \
            }                                                                              \
            if (j + 16 / (int) sizeof(T) <= n) {                                           \
                *(dc_##T##_u16*)(d + j) = (dc_##T##_u16){};                                \
                j += 16 / sizeof(T);                                                       \
            }                                                                              \
            for (; j < n; j++) { DC_OPAQUE(j); d[j] = 0; }                                 \
        }                                                                                  \
    }

    /* The band's shifted copies: xs[c, kw, r, j] = xpad[c, oh0 + r, j + kw] for
       r < R + KH - 1, j < OW, at buf + DC_ROW(T, OW, KW); then V * L zeros (a last,
       partial strip reads that far).  When OW == W (a "same" conv) each (c, kw) block
       is one run of the input plane shifted by kw - pw, whose wrapped-around columns
       are then zeroed; otherwise rows go through one zero-padded row at buf. */
    #define DC_ROW(T, OW, KW) ((((OW) + (KW) - 1 + 64 / (int) sizeof(T) - 1)               \
                                / (64 / (int) sizeof(T)) + 1) * (64 / (int) sizeof(T)))
    #define DC_COPY(T)                                                                     \
    DC_INLINE const T* dc_copy_##T(                                                        \
            const T* restrict x, int C, int H, int W, int KH, int KW, int ph, int pw,      \
            int oh0, int R, int OW, int V, T* restrict buf) {                              \
        enum { L = 64 / sizeof(T) };                                                       \
        int Hb = R + KH - 1;                                                               \
        Py_ssize_t ks = (Py_ssize_t) Hb * OW, cs = KW * ks;                                \
        T* row = buf;                                                                      \
        T* xs = buf + DC_ROW(T, OW, KW);                                                   \
        /* rows r0 <= r < r1 of the band are input rows, the others padding */            \
        int r0 = ph - oh0 > 0 ? ph - oh0 : 0, r1 = H + ph - oh0 < Hb ? H + ph - oh0 : Hb;  \
        if (r0 > Hb) r0 = Hb;                                                              \
        if (r1 < r0) r1 = r0;                                                              \
        for (int c = 0; c < C; c++) {                                                      \
            const T* src = x + ((Py_ssize_t) c * H + oh0 + r0 - ph) * W;                   \
            for (int kw = 0; kw < KW; kw++) {                                              \
                T* d = xs + c * cs + kw * ks;                                              \
                dc_run_##T(d, NULL, (Py_ssize_t) r0 * OW);                                 \
                dc_run_##T(d + (Py_ssize_t) r1 * OW, NULL, (Py_ssize_t) (Hb - r1) * OW);   \
                if (OW != W) continue;                                                     \
                int off = kw - pw;                                                         \
                Py_ssize_t n = (Py_ssize_t) (r1 - r0) * W;                                 \
                Py_ssize_t lo = off < 0 ? -off : 0, hi = off > 0 ? n - off : n;            \
                if (lo > n) lo = n;                                                        \
                if (hi < lo) hi = lo;                                                      \
                d += (Py_ssize_t) r0 * OW;                                                 \
                dc_run_##T(d + lo, src + lo + off, hi - lo);                               \
                int z0 = off < 0 ? 0 : (W - off > 0 ? W - off : 0);                        \
                int z1 = off < 0 ? (-off < W ? -off : W) : W;                              \
                if (off == 0) z0 = z1;                                                     \
                for (int r = r0; r < r1; r++, d += OW)                                     \
                    for (int j = z0; j < z1; j++) { DC_OPAQUE(j); d[j] = 0; }              \
            }                                                                              \
            if (OW == W) continue;                                                         \
            for (int r = r0; r < r1; r++, src += W) {                                      \
                for (int j = 0; j < pw; j++) { DC_OPAQUE(j); row[j] = row[pw + W + j] = 0; } \
                dc_run_##T(row + pw, src, W);                                              \
                for (int kw = 0; kw < KW; kw++)                                            \
                    dc_run_##T(xs + c * cs + kw * ks + (Py_ssize_t) r * OW, row + kw, OW); \
            }                                                                              \
        }                                                                                  \
        dc_run_##T(xs + C * cs, NULL, V * L);                                              \
        return xs;                                                                         \
    }

    /* GCC 12 reports "acc[f][v] may be used uninitialized" (88 times) in the 6-, 12- and
       24-channel AVX-512 tiles, at the very loop that sets every acc[f][v] before any is
       read: a false positive of its unrolled, vectorised form.  Silenced for the tile and
       band kernels only (popped after DC_ANY_BAND). */
    #if defined(__GNUC__)
    #pragma GCC diagnostic push
    #pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    #endif

    /* One tile: FB output channels x V*64 bytes of pixels starting at xs (band copies
       + p0), on VB-byte vectors.  Writes channels < nf and pixels < np of y
       (y[f * plane + p]).  K > 0 compiles a K x K kernel with its taps unrolled;
       K == 0 takes any KH x KW. */
    #define DC_TILE(T, FB, V, K, VB)                                                       \
    DC_INLINE void dc_tile_##T##_##FB##_##V##_##K(                                         \
            const T* restrict xs, int C, int KH_, int KW_, Py_ssize_t cs, Py_ssize_t ks,   \
            int row, const T* restrict w, const T* restrict bias,                          \
            T* restrict y, Py_ssize_t plane, int nf, int np) {                             \
        enum { L = VB / sizeof(T), NV = V * 64 / VB };                                     \
        const int KH = K ? K : KH_, KW = K ? K : KW_;                                      \
        dc_##T##_v##VB acc[FB][NV];                                                        \
        _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++)                              \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                           \
                acc[f][v] = bias[f] - (dc_##T##_v##VB){};                                  \
        for (int c = 0; c < C; c++) {                                                      \
            DC_UNROLL_##K for (int kw = 0; kw < KW; kw++) {                                \
                const T* src = xs + c * cs + kw * ks;                                      \
                DC_UNROLL_##K for (int kh = 0; kh < KH; kh++) {                            \
                    dc_##T##_v##VB in[NV];                                                 \
                    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                   \
                        in[v] = *(const dc_##T##_u##VB*)(src + kh * row + v * L);          \
                    _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++) {                \
                        T wf = w[f];                                                       \
                        _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)               \
                            acc[f][v] += wf * in[v];                                       \
                    }                                                                      \
                    w += FB;                                                               \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        if (np == NV * L && nf == FB) {                                                    \
            _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++)                          \
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                       \
                    *(dc_##T##_u##VB*)(y + f * plane + v * L) = acc[f][v];                 \
        } else {                                                                           \
            /* a channel or pixel tail: through tmp, without taking acc's address */       \
            T tmp[NV * L];                                                                 \
            _Pragma("GCC unroll 32") for (int f = 0; f < FB; f++) {                        \
                if (f < nf) {                                                              \
                    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                   \
                        *(dc_##T##_u##VB*)(tmp + v * L) = acc[f][v];                       \
                    for (int p = 0; p < np; p++) { DC_OPAQUE(p); y[f * plane + p] = tmp[p]; } \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }
    #define DC_UNROLL_0
    #define DC_UNROLL_3 _Pragma("GCC unroll 3")
    #define DC_UNROLL_5 _Pragma("GCC unroll 5")

    /* One band (output rows oh0 .. oh0+R-1 of one image x (C, H, W) into y (F, OH, OW))
       with one micro-kernel: the shifted copies, then every strip x channel block.
       w: packed (nfb, C, KW, KH, FB) weights, bias: (nfb * FB,) zero-padded. */
    #define DC_BAND(ATTR, T, FB, V, K, VB)                                                 \
    DC_TILE(T, FB, V, K, VB)                                                               \
    ATTR static void dc_band_##T##_##FB##_##V##_##K(                                       \
            const T* restrict x, int C, int H, int W, const T* restrict w,                 \
            const T* restrict bias, int F, int KH, int KW, int ph, int pw,                 \
            int oh0, int R, int OH, int OW, T* restrict buf, T* restrict y) {              \
        enum { S = V * 64 / sizeof(T) };                                                   \
        const T* xs = dc_copy_##T(x, C, H, W, KH, KW, ph, pw, oh0, R, OW, V, buf);         \
        Py_ssize_t ks = (Py_ssize_t) (R + KH - 1) * OW, cs = KW * ks;                      \
        Py_ssize_t plane = (Py_ssize_t) OH * OW, wstride = (Py_ssize_t) C * KW * KH * FB;  \
        T* yb = y + (Py_ssize_t) oh0 * OW;                                                 \
        int Pb = R * OW;                                                                   \
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
        dc_band_##T##_##FB##_##V##_##K(x, C, H, W, w, bias, F, KH, KW, ph, pw, oh0, R, OH, \
                                       OW, buf, y)

    DC_RUN(float) DC_RUN(double) DC_COPY(float) DC_COPY(double)
    DC_BAND(DC_CLONES, float, 2, 1, 0, 16)
    DC_BAND(DC_CLONES, double, 2, 1, 0, 16)
    #if DC_X86
    /* (FB, V) with FB * V <= 24 accumulators, plus inputs and a weight, in 32 registers */
    #define DC_AVX512_TILES(T, K)                                                          \
    DC_BAND(DC_AVX512, T, 6, 4, K, 64) DC_BAND(DC_AVX512, T, 12, 2, K, 64)                 \
    DC_BAND(DC_AVX512, T, 24, 1, K, 64) DC_BAND(DC_AVX512, T, 8, 2, K, 64)                 \
    DC_BAND(DC_AVX512, T, 4, 4, K, 64) DC_BAND(DC_AVX512, T, 16, 1, K, 64)
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

    /* One band with the (FB, V) micro-kernel; (FB, V) passed dc_has_tile. */
    #define DC_ANY_BAND(T)                                                                 \
    static void dc_band_##T(                                                               \
            const T* x, int C, int H, int W, const T* w, const T* bias, int F, int KH,     \
            int KW, int ph, int pw, int oh0, int R, int OH, int OW, int FB, int V, T* buf, \
            T* y) {                                                                        \
        if (FB == 2 && V == 1) { DC_CALL(T, 2, 1, 0); }                                    \
        else { DC_DISPATCH_##T }                                                           \
    }
    DC_ANY_BAND(float)
    DC_ANY_BAND(double)
    #if defined(__GNUC__)
    #pragma GCC diagnostic pop
    #endif

    /* Weight gradient, float32 on AVX-512.  With the band's shifted copies xs, the
       tap (c, kh, kw) sees the band's pixels p as the run xs[c, kw, kh*OW + p], so
           grad_w[f, c, kh, kw] += sum_p grad_y[f, oh0*OW + p] * xs[c, kw, kh*OW + p]:
       a tile keeps NF channels x NK kernel rows of sums in registers (at most 4 x 5),
       loads NF grad_y and NK input vectors per 16 pixels, and reduces its lanes once
       per band.  Tails use masked loads (no reads past either array). */
    #if DC_X86
    #include <immintrin.h>
    DC_INLINE DC_AVX512 void dc_dw_tile(const int NF, const int NK, const float* restrict gy,
            Py_ssize_t gys, const float* restrict xr, int OW, Py_ssize_t P, float* restrict gw,
            Py_ssize_t gwf, int gwk) {
        __m512 acc[4][5], g[4];
        for (int k = 0; k < NF; k++)
            for (int j = 0; j < NK; j++) acc[k][j] = _mm512_setzero_ps();
        Py_ssize_t p = 0;
        for (; p + 16 <= P; p += 16) {
            for (int k = 0; k < NF; k++) g[k] = _mm512_loadu_ps(gy + k * gys + p);
            for (int j = 0; j < NK; j++) {
                __m512 xv = _mm512_loadu_ps(xr + (Py_ssize_t) j * OW + p);
                for (int k = 0; k < NF; k++) acc[k][j] = _mm512_fmadd_ps(g[k], xv, acc[k][j]);
            }
        }
        if (p < P) {
            __mmask16 m = (__mmask16) ((1u << (P - p)) - 1u);
            for (int k = 0; k < NF; k++) g[k] = _mm512_maskz_loadu_ps(m, gy + k * gys + p);
            for (int j = 0; j < NK; j++) {
                __m512 xv = _mm512_maskz_loadu_ps(m, xr + (Py_ssize_t) j * OW + p);
                for (int k = 0; k < NF; k++) acc[k][j] = _mm512_fmadd_ps(g[k], xv, acc[k][j]);
            }
        }
        for (int k = 0; k < NF; k++)
            for (int j = 0; j < NK; j++) gw[k * gwf + j * gwk] += _mm512_reduce_add_ps(acc[k][j]);
    }
    #define DC_DW(NF, NK) case NF * 8 + NK: dc_dw_tile(NF, NK, g, gys, xr, OW, P, d, gwf, KW); break;
    #define DC_DW_NF(NF) DC_DW(NF, 1) DC_DW(NF, 2) DC_DW(NF, 3) DC_DW(NF, 4) DC_DW(NF, 5)

    /* grad_w (F, C, KH, KW) and grad_b (F,) += the sums over one band of R output rows;
       gy points at grad_y[n, 0, oh0, 0], gys = OH * OW apart per channel. */
    static DC_AVX512 void dc_dw_band_float(
            const float* x, int C, int H, int W, const float* gy, Py_ssize_t gys, int F,
            int KH, int KW, int ph, int pw, int oh0, int R, int OW, float* buf, float* gw,
            float* gb) {
        const float* xs = dc_copy_float(x, C, H, W, KH, KW, ph, pw, oh0, R, OW, 1, buf);
        Py_ssize_t ks = (Py_ssize_t) (R + KH - 1) * OW, cs = KW * ks, P = (Py_ssize_t) R * OW;
        Py_ssize_t gwf = (Py_ssize_t) C * KH * KW;
        for (int c = 0; c < C; c++)
            for (int kw = 0; kw < KW; kw++)
                for (int f0 = 0; f0 < F; f0 += 4)
                    for (int kh0 = 0; kh0 < KH; kh0 += 5) {
                        int nf = F - f0 < 4 ? F - f0 : 4, nk = KH - kh0 < 5 ? KH - kh0 : 5;
                        const float* g = gy + f0 * gys;
                        const float* xr = xs + c * cs + kw * ks + (Py_ssize_t) kh0 * OW;
                        float* d = gw + f0 * gwf + (Py_ssize_t) c * KH * KW + kh0 * KW + kw;
                        switch (nf * 8 + nk) { DC_DW_NF(1) DC_DW_NF(2) DC_DW_NF(3) DC_DW_NF(4) }
                    }
        for (int f = 0; f < F; f++) {  /* the bias gradient: plain sums of the band */
            __m512 a = _mm512_setzero_ps();
            Py_ssize_t p = 0;
            for (; p + 16 <= P; p += 16) a = _mm512_add_ps(a, _mm512_loadu_ps(gy + f * gys + p));
            if (p < P)
                a = _mm512_add_ps(a, _mm512_maskz_loadu_ps((__mmask16) ((1u << (P - p)) - 1u),
                                                           gy + f * gys + p));
            gb[f] += _mm512_reduce_add_ps(a);
        }
    }
    static int dc_has_grad_weight(void) { return dc_cpu_avx512(); }
    #else
    static void dc_dw_band_float(
            const float* x, int C, int H, int W, const float* gy, Py_ssize_t gys, int F,
            int KH, int KW, int ph, int pw, int oh0, int R, int OW, float* buf, float* gw,
            float* gb) {}
    static int dc_has_grad_weight(void) { return 0; }
    #endif

    /* Scratch elements one band needs (see DC_COPY). */
    static Py_ssize_t dc_band_scratch(int itemsize, int C, int KH, int KW, int R, int OW,
                                      int V) {
        int L = 64 / itemsize;
        int row = ((OW + KW - 1 + L - 1) / L + 1) * L;
        return row + (Py_ssize_t) C * KW * (R + KH - 1) * OW + (Py_ssize_t) V * L;
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
    void dc_dw_band_float(const float* x, int C, int H, int W, const float* gy, Py_ssize_t gys,
                          int F, int KH, int KW, int ph, int pw, int oh0, int R, int OW,
                          float* buf, float* gw, float* gb) noexcept nogil
    int dc_has_grad_weight() noexcept nogil
    Py_ssize_t dc_band_scratch(int itemsize, int C, int KH, int KW, int R, int OW, int V) noexcept nogil


def has_tile(int fb, int v):
    """True if an (FB channels x V vectors) micro-kernel is compiled in."""
    return dc_has_tile(fb, v) != 0


def band_scratch(int itemsize, int C, int KH, int KW, int R, int OW, int V):
    """Scratch elements one thread needs for bands of R rows with V-vector strips."""
    return dc_band_scratch(itemsize, C, KH, KW, R, OW, V)


def pack_weight(const floating[:, :, :, ::1] weight,   # IN  (F, C, KH, KW)
                floating[:, :, :, :, ::1] packed,      # OUT (ceil(Fo/FB), Ci, KW, KH, FB)
                bint transposed):
    """Pack a conv's weights for the micro-kernels, zero-padding the last channel block.

    transposed=False packs weight itself (Fo = F out, Ci = C in).  transposed=True
    packs the kernel of the input gradient, w'[c, f, kh, kw] = weight[f, c, KH-1-kh,
    KW-1-kw] (Fo = C, Ci = F), without building it first.
    """
    cdef int NB = packed.shape[0], Ci = packed.shape[1], KW = packed.shape[2]
    cdef int KH = packed.shape[3], FB = packed.shape[4]
    cdef int Fo = weight.shape[1] if transposed else weight.shape[0]
    cdef int fb, c, kw, kh, j, f
    with nogil:
        for fb in range(NB):
            for c in range(Ci):
                for kw in range(KW):
                    for kh in range(KH):
                        for j in range(FB):
                            f = fb * FB + j
                            if f >= Fo:
                                packed[fb, c, kw, kh, j] = 0
                            elif transposed:
                                packed[fb, c, kw, kh, j] = weight[c, f, KH - 1 - kh, KW - 1 - kw]
                            else:
                                packed[fb, c, kw, kh, j] = weight[f, c, kh, kw]


def direct_conv2d(const floating[:, :, :, ::1] x,         # IN  (N, C, H, W)
                  const floating[:, :, :, :, ::1] w,      # IN  (F/FB, C, KW, KH, FB) packed, zero-padded
                  const floating[::1] bias,               # IN  (F/FB * FB,) zero-padded (zeros: no bias)
                  floating[:, :, :, ::1] y,               # OUT (N, F, OH, OW)
                  floating[:, ::1] buf,                   # scratch (threads, band_scratch(...))
                  int ph, int pw, int R, int V, int num_threads):
    """y = conv2d(x, weight, bias, stride=1, padding=(ph, pw)) in bands of R output rows."""
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef int FB = w.shape[4], KW = w.shape[2], KH = w.shape[3]
    cdef int nbands = (OH + R - 1) // R
    cdef Py_ssize_t item, items = <Py_ssize_t> N * nbands
    cdef int n, oh0
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t = 0
    cdef floating* b = NULL
    if items == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        b = &buf[t, 0]
        for item in prange(items, schedule="guided"):
            n = item // nbands
            oh0 = (item % nbands) * R
            if floating is float:
                dc_band_float(&x[n, 0, 0, 0], C, H, W, &w[0, 0, 0, 0, 0], &bias[0], F, KH, KW,
                              ph, pw, oh0, min(R, OH - oh0), OH, OW, FB, V, b, &y[n, 0, 0, 0])
            else:
                dc_band_double(&x[n, 0, 0, 0], C, H, W, &w[0, 0, 0, 0, 0], &bias[0], F, KH, KW,
                               ph, pw, oh0, min(R, OH - oh0), OH, OW, FB, V, b, &y[n, 0, 0, 0])


def has_grad_weight():
    """True if the direct weight-gradient kernel (float32, AVX-512) runs on this CPU."""
    return dc_has_grad_weight() != 0


def direct_conv2d_grad_weight(const float[:, :, :, ::1] x,       # IN  (N, C, H, W)
                              const float[:, :, :, ::1] grad_y,  # IN  (N, F, OH, OW)
                              float[:, ::1] grad_w,              # OUT (parts, F*C*KH*KW) partial sums
                              float[:, ::1] grad_b,              # OUT (parts, F) partial sums
                              float[:, ::1] buf,                 # scratch (threads, band_scratch(...))
                              int KH, int KW, int ph, int pw, int R, int num_threads):
    """Partial sums of grad_weight and grad_bias of a stride-1 conv, in bands of R rows.

    The images are cut into grad_w.shape[0] fixed partitions, each summed in image and
    band order into its own row, so the result does not depend on the thread count.
    Call only when has_grad_weight() is True.
    """
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = grad_y.shape[1], OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef int nparts = grad_w.shape[0]
    cdef Py_ssize_t P = <Py_ssize_t> OH * OW
    cdef int part, n, oh0
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t = 0
    cdef float* b = NULL
    memset(&grad_w[0, 0], 0, grad_w.shape[0] * grad_w.shape[1] * sizeof(float))
    memset(&grad_b[0, 0], 0, grad_b.shape[0] * grad_b.shape[1] * sizeof(float))
    if N == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        b = &buf[t, 0]
        for part in prange(nparts, schedule="static"):
            for n in range(part * N // nparts, (part + 1) * N // nparts):
                oh0 = 0
                while oh0 < OH:
                    dc_dw_band_float(&x[n, 0, 0, 0], C, H, W, &grad_y[n, 0, oh0, 0], P, F,
                                     KH, KW, ph, pw, oh0, min(R, OH - oh0), OW, b,
                                     &grad_w[part, 0], &grad_b[part, 0])
                    oh0 = oh0 + R
