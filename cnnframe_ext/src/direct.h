/* Direct (no im2col) convolution kernels for stride-1, undilated, ungrouped convs, NCHW
   (cnnframe_ext/direct.pyx explains the method): the band copies, the micro-kernels of
   the forward pass (which, with a flipped, transposed kernel, is also the input
   gradient) and of the weight gradient, for each instruction-set level.

   Micro-kernels (FB output channels x V*64 bytes of pixels, V in 64-byte units as the
   Python side counts them) per level:
     avx512   6x4 12x2 24x1 8x2 4x4 16x1 on 64-byte vectors (FB * NV <= 24 accumulators,
              plus inputs and a weight, in 32 registers), and 2x1;
     avx2     6x1 4x1 on 32-byte vectors (FB * NV <= 12 accumulators in 16 registers),
              and 2x1 (3x2 and 2x3 measured slower: they need more input registers);
     generic  2x1 on 16-byte vectors (any CPU: SSE2, NEON, ...; on x86-64 3x1 spilled
              and measured no faster).
   2x1 at the avx512 and avx2 levels is the 16-byte kernel compiled with FMA.  Fused
   multiply-adds round alike whatever the vector width, so on one level every kernel
   gives the same bits; the generic level has no FMA on x86-64 and its own bits.

   Entry points (for cnnframe_ext/direct.pyx):
     dc_band_float, dc_band_double   one band with a given micro-kernel
     dc_has_tile                     whether the active level has a micro-kernel
     dc_dw_band_float                the weight gradient of one band (float32)
     dc_has_grad_weight              whether the weight gradient exists
     dc_band_scratch                 scratch elements one band needs
     dc_dw_band_scratch              ... one weight-gradient band needs
   and the kernels they dispatch to, one per (type, level, tile, kernel size), named
   dc_band_<type>_<level>_<FB>x<V>[_k<K>] (K: the unrolled 3x3 or 5x5 kernel; none: any
   kernel size) and dc_dw_band_float_<level>. */
#ifndef CNNFRAME_DIRECT_H
#define CNNFRAME_DIRECT_H

#include <stdint.h>

#include "simd.h"

#if CNNF_X86
#include <immintrin.h>
#endif

#if CNNF_VECTOR_EXTENSIONS

/* Hides a loop index from GCC, which would turn short copy loops back into memcpy or
   memset calls (a libc call per row cost 10% of a whole conv). */
#define DC_OPAQUE(j) __asm__("" : "+r"(j))

/* A 4-byte word of any element type: the copies' tails move floats and doubles alike. */
typedef unsigned int dc_word __attribute__((may_alias, aligned(4)));

/* d[0:n] = s[0:n] (or zeros when s is NULL), n bytes (a multiple of 4), in 64-, 32-, 16-
   and 4-byte pieces: bit-exact copies of any element type. */
CNNF_INLINE void dc_run(char* restrict d, const char* restrict s, ptrdiff_t n) {
    ptrdiff_t j = 0;
    if (s) {
        for (; j + 64 <= n; j += 64) {
            DC_OPAQUE(j);
            *(cnnf_f32x16u*) (d + j) = *(const cnnf_f32x16u*) (s + j);
        }
        if (j + 32 <= n) {
            *(cnnf_f32x8u*) (d + j) = *(const cnnf_f32x8u*) (s + j);
            j += 32;
        }
        if (j + 16 <= n) {
            *(cnnf_f32x4u*) (d + j) = *(const cnnf_f32x4u*) (s + j);
            j += 16;
        }
        for (; j < n; j += 4) {
            DC_OPAQUE(j);
            *(dc_word*) (d + j) = *(const dc_word*) (s + j);
        }
    } else {
        for (; j + 64 <= n; j += 64) {
            DC_OPAQUE(j);
            *(cnnf_f32x16u*) (d + j) = (cnnf_f32x16){};
        }
        if (j + 32 <= n) {
            *(cnnf_f32x8u*) (d + j) = (cnnf_f32x8){};
            j += 32;
        }
        if (j + 16 <= n) {
            *(cnnf_f32x4u*) (d + j) = (cnnf_f32x4){};
            j += 16;
        }
        for (; j < n; j += 4) {
            DC_OPAQUE(j);
            *(dc_word*) (d + j) = 0;
        }
    }
}

/* buf rounded up to 64 bytes: the copies start on a cache line, so that their vector loads
   split none where the runs are multiples of 32 bytes (numpy's buffers start anywhere
   16 bytes apart; AVX2, 5x5 32->32 on 32x32, one thread, the copies 16 bytes off a line:
   forward 53-55 -> 73-79 GFLOP/s, weight gradient 57 -> 61-62).  The scratch sizes
   below hold the 64 - 1 bytes this may skip. */
static inline char* dc_aligned(void* buf) {
    return (char*) (((uintptr_t) buf + 63) & ~(uintptr_t) 63);
}

/* Elements of the zero-padded row at the start of a band's scratch: at least OW + KW - 1,
   rounded up to 64 bytes, plus 64 bytes. */
static inline ptrdiff_t dc_row_elements(int itemsize, int OW, int KW) {
    int L = 64 / itemsize;
    return ((ptrdiff_t) (OW + KW - 1 + L - 1) / L + 1) * L;
}

/* The band's shifted copies, elements of `isz` bytes:
       xs[c, kw, r, j] = xpad[c, oh0 + r, j + kw]   for r < R + KH - 1, j < OW,
   at dc_aligned(buf) + dc_row_elements(...); then V * 64 bytes of zeros (a last, partial
   strip reads that far).  When OW == W (a "same" conv) each (c, kw) block is one run of the input
   plane shifted by kw - pw, whose wrapped-around columns are then zeroed; otherwise rows
   go through one zero-padded row at buf.  Returns xs. */
CNNF_INLINE const void* dc_copy(const void* restrict x_, int isz, int C, int H, int W, int KH,
                                int KW, int ph, int pw, int oh0, int R, int OW, int V,
                                void* restrict buf) {
    const char* x = (const char*) x_;
    int Hb = R + KH - 1;
    ptrdiff_t ks = (ptrdiff_t) Hb * OW, cs = KW * ks;   /* in elements */
    char* row = dc_aligned(buf);
    char* xs = row + dc_row_elements(isz, OW, KW) * isz;
    /* rows r0 <= r < r1 of the band are input rows, the others padding */
    int r0 = ph - oh0 > 0 ? ph - oh0 : 0, r1 = H + ph - oh0 < Hb ? H + ph - oh0 : Hb;
    if (r0 > Hb) r0 = Hb;
    if (r1 < r0) r1 = r0;
    for (int c = 0; c < C; c++) {
        const char* src = x + ((ptrdiff_t) c * H + oh0 + r0 - ph) * W * isz;
        for (int kw = 0; kw < KW; kw++) {
            char* d = xs + (c * cs + kw * ks) * isz;
            dc_run(d, NULL, (ptrdiff_t) r0 * OW * isz);
            dc_run(d + (ptrdiff_t) r1 * OW * isz, NULL, (ptrdiff_t) (Hb - r1) * OW * isz);
            if (OW != W) continue;
            int off = kw - pw;
            ptrdiff_t n = (ptrdiff_t) (r1 - r0) * W;
            ptrdiff_t lo = off < 0 ? -off : 0, hi = off > 0 ? n - off : n;
            if (lo > n) lo = n;
            if (hi < lo) hi = lo;
            d += (ptrdiff_t) r0 * OW * isz;
            dc_run(d + lo * isz, src + (lo + off) * isz, (hi - lo) * isz);
            int z0 = off < 0 ? 0 : (W - off > 0 ? W - off : 0);
            int z1 = off < 0 ? (-off < W ? -off : W) : W;
            if (off == 0) z0 = z1;
            for (int r = r0; r < r1; r++, d += (ptrdiff_t) OW * isz)
                dc_run(d + (ptrdiff_t) z0 * isz, NULL, (ptrdiff_t) (z1 - z0) * isz);
        }
        if (OW == W) continue;
        for (int r = r0; r < r1; r++, src += (ptrdiff_t) W * isz) {
            dc_run(row, NULL, (ptrdiff_t) pw * isz);
            dc_run(row + (ptrdiff_t) (pw + W) * isz, NULL, (ptrdiff_t) pw * isz);
            dc_run(row + (ptrdiff_t) pw * isz, src, (ptrdiff_t) W * isz);
            for (int kw = 0; kw < KW; kw++)
                dc_run(xs + (c * cs + kw * ks + (ptrdiff_t) r * OW) * isz, row + kw * isz,
                       (ptrdiff_t) OW * isz);
        }
    }
    dc_run(xs + C * cs * isz, NULL, (ptrdiff_t) V * 64);
    return xs;
}

/* The band's tap copies for a strided or dilated conv, elements of `isz` bytes:
       xs[c, kw * KH + kh, r, j] = xpad[c, (oh0 + r) * sh + kh * dh, j * sw + kw * dw]
   for r < R, j < OW, at dc_aligned(buf); then V * 64 bytes of zeros.  One run per tap, so
   the stride-1 micro-kernels take a strided conv as one of kernel 1 x (KH * KW) whose
   taps (c, t) read xs[c, t, p] for the band's pixels p: a band-sized im2col that stays
   in L2.  The tap order t = kw * KH + kh is that of the packed weights (C, KW, KH), so
   the same packing serves both.  Returns xs. */
CNNF_INLINE const void* dc_copy_taps(const void* restrict x_, int isz, int C, int H, int W,
                                     int KH, int KW, int ph, int pw, int sh, int sw, int dh,
                                     int dw, int oh0, int R, int OW, int V,
                                     void* restrict buf) {
    const char* x = (const char*) x_;
    char* xs = dc_aligned(buf);
    ptrdiff_t ks = (ptrdiff_t) R * OW;   /* elements per tap */
    for (int c = 0; c < C; c++) {
        for (int kw = 0; kw < KW; kw++) {
            /* output columns [j0, j1) read input columns inside the plane */
            int off = kw * dw - pw;
            int j0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
            int j1 = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
            if (j1 > OW) j1 = OW;
            if (j0 > j1) j0 = j1;
            for (int kh = 0; kh < KH; kh++) {
                char* d = xs + (((ptrdiff_t) c * KW + kw) * KH + kh) * ks * isz;
                for (int r = 0; r < R; r++, d += (ptrdiff_t) OW * isz) {
                    int ih = (oh0 + r) * sh + kh * dh - ph;
                    if (ih < 0 || ih >= H) {
                        dc_run(d, NULL, (ptrdiff_t) OW * isz);
                        continue;
                    }
                    const char* src = x + (((ptrdiff_t) c * H + ih) * W + off) * isz;
                    dc_run(d, NULL, (ptrdiff_t) j0 * isz);
                    dc_run(d + (ptrdiff_t) j1 * isz, NULL, (ptrdiff_t) (OW - j1) * isz);
                    if (sw == 1) {
                        dc_run(d + (ptrdiff_t) j0 * isz, src + (ptrdiff_t) j0 * isz,
                               (ptrdiff_t) (j1 - j0) * isz);
                    } else if (isz == 4) {
                        for (ptrdiff_t j = j0; j < j1; j++)
                            ((dc_word*) d)[j] = ((const dc_word*) src)[j * sw];
                    } else {
                        for (ptrdiff_t j = j0; j < j1; j++) {
                            ((dc_word*) d)[2 * j] = ((const dc_word*) src)[2 * j * sw];
                            ((dc_word*) d)[2 * j + 1] = ((const dc_word*) src)[2 * j * sw + 1];
                        }
                    }
                }
            }
        }
    }
    dc_run(xs + (ptrdiff_t) C * KW * KH * ks * isz, NULL, (ptrdiff_t) V * 64);
    return xs;
}

/* Scratch elements one band of a strided or dilated conv needs (see dc_copy_taps). */
static inline ptrdiff_t dc_band_scratch_taps(int itemsize, int C, int KH, int KW, int R,
                                             int OW, int V) {
    return (ptrdiff_t) C * KH * KW * R * OW + (ptrdiff_t) (V + 1) * 64 / itemsize;
}

/* Scratch elements one band needs (see dc_copy). */
static inline ptrdiff_t dc_band_scratch(int itemsize, int C, int KH, int KW, int R, int OW,
                                        int V) {
    return dc_row_elements(itemsize, OW, KW) + (ptrdiff_t) C * KW * (R + KH - 1) * OW
           + (ptrdiff_t) (V + 1) * 64 / itemsize;
}

/* Elements of a weight-gradient band's copy of grad_y (F channels of R * OW pixels),
   rounded up to 64 bytes. */
static inline ptrdiff_t dc_dw_gy_elements(int itemsize, int F, int R, int OW) {
    int L = 64 / itemsize;
    return ((ptrdiff_t) F * R * OW + L - 1) / L * L;
}

/* Scratch elements one weight-gradient band needs: grad_y's copy, then the band copies
   (taps: of a strided or dilated conv). */
static inline ptrdiff_t dc_dw_band_scratch(int itemsize, int C, int F, int KH, int KW, int R,
                                           int OW, int taps) {
    return dc_dw_gy_elements(itemsize, F, R, OW)
           + (taps ? dc_band_scratch_taps(itemsize, C, KH, KW, R, OW, 1)
                   : dc_band_scratch(itemsize, C, KH, KW, R, OW, 1));
}

/* The weight-gradient band kernels' parameters (all levels alike), and their copies, in
   a scratch of dc_dw_band_scratch elements: grad_y's band rows, on a 64-byte line
   (the caller's grad_y starts anywhere: its vector loads split lines; AVX2, 5x5 32->32
   on 32x32, one thread, grad_y 16 bytes off a line: 49-51 -> 59-60 GFLOP/s), which then
   stand for gy (channels gys = R * OW apart); and xs, with the tap (c, kh, kw) of the
   band's pixels at xs + c * cs + kw * kws + kh * rows (stride-1 band copies: rows OW
   apart; strided or dilated: one run per tap). */
#define DC_DW_BAND_PARAMS                                                                   \
    const float* x, int C, int H, int W, const float* gy, ptrdiff_t gys, int F, int KH,      \
    int KW, int ph, int pw, int sh, int sw, int dh, int dw, int oh0, int R, int OW,          \
    float* buf, float* gw, float* gb
#define DC_DW_BAND_ARGS x, C, H, W, gy, gys, F, KH, KW, ph, pw, sh, sw, dh, dw, oh0, R, OW, buf, gw, gb
#define DC_DW_BAND_COPIES(T)                                                                \
    T* gyc_ = (T*) dc_aligned(buf);                                                          \
    for (int f_ = 0; f_ < F; f_++)                                                           \
        dc_run((char*) (gyc_ + (ptrdiff_t) f_ * R * OW), (const char*) (gy + f_ * gys),     \
               (ptrdiff_t) R * OW * sizeof(T));                                              \
    gy = gyc_;                                                                               \
    gys = (ptrdiff_t) R * OW;                                                                \
    buf = gyc_ + dc_dw_gy_elements(sizeof(T), F, R, OW);                                     \
    const int taps_ = sh != 1 || sw != 1 || dh != 1 || dw != 1;                             \
    const T* xs = (const T*) (taps_ ? dc_copy_taps(x, sizeof(T), C, H, W, KH, KW, ph, pw, sh, \
                                                   sw, dh, dw, oh0, R, OW, 1, buf)          \
                                    : dc_copy(x, sizeof(T), C, H, W, KH, KW, ph, pw, oh0, R, \
                                              OW, 1, buf));                                  \
    const int rows = taps_ ? R * OW : OW;                                                    \
    const ptrdiff_t kws = taps_ ? (ptrdiff_t) KH * R * OW : (ptrdiff_t) (R + KH - 1) * OW;   \
    const ptrdiff_t cs = KW * kws

/* The weight gradient's tiles hold up to 4 channels x 3 kernel rows of sums. */
enum { DC_DW_MAX_NF = 4, DC_DW_MAX_NK = 3 };

/* The micro-kernels' code: direct_typed.h once per (type, vector width), naming its
   functions after the macros defined here. */
#define DC_T float
#define DC_VEC cnnf_f32x16
#define DC_UVEC cnnf_f32x16u
#define DC_VB 64
#define DC_MAX_ACC 24
#define DC_MAX_NV 4
#define DC_TAP dc_tap_float_v64
#define DC_TILE dc_tile_float_v64
#define DC_BAND dc_band_float_v64
#include "direct_typed.h"

#define DC_T double
#define DC_VEC cnnf_f64x8
#define DC_UVEC cnnf_f64x8u
#define DC_VB 64
#define DC_MAX_ACC 24
#define DC_MAX_NV 4
#define DC_TAP dc_tap_double_v64
#define DC_TILE dc_tile_double_v64
#define DC_BAND dc_band_double_v64
#include "direct_typed.h"

#define DC_T float
#define DC_VEC cnnf_f32x8
#define DC_UVEC cnnf_f32x8u
#define DC_VB 32
#define DC_MAX_ACC 12
#define DC_MAX_NV 2
#define DC_TAP dc_tap_float_v32
#define DC_TILE dc_tile_float_v32
#define DC_BAND dc_band_float_v32
#define DC_HSUM dc_hsum_float_v32
#define DC_DW_TILE dc_dw_tile_float_v32
#define DC_DW_BAND dc_dw_band_float_v32
#include "direct_typed.h"

#define DC_T double
#define DC_VEC cnnf_f64x4
#define DC_UVEC cnnf_f64x4u
#define DC_VB 32
#define DC_MAX_ACC 12
#define DC_MAX_NV 2
#define DC_TAP dc_tap_double_v32
#define DC_TILE dc_tile_double_v32
#define DC_BAND dc_band_double_v32
#include "direct_typed.h"

#define DC_T float
#define DC_VEC cnnf_f32x4
#define DC_UVEC cnnf_f32x4u
#define DC_VB 16
#define DC_MAX_ACC 12
#define DC_MAX_NV 4
#define DC_TAP dc_tap_float_v16
#define DC_TILE dc_tile_float_v16
#define DC_BAND dc_band_float_v16
#define DC_HSUM dc_hsum_float_v16
#define DC_DW_TILE dc_dw_tile_float_v16
#define DC_DW_BAND dc_dw_band_float_v16
#include "direct_typed.h"

#define DC_T double
#define DC_VEC cnnf_f64x2
#define DC_UVEC cnnf_f64x2u
#define DC_VB 16
#define DC_MAX_ACC 12
#define DC_MAX_NV 4
#define DC_TAP dc_tap_double_v16
#define DC_TILE dc_tile_double_v16
#define DC_BAND dc_band_double_v16
#include "direct_typed.h"

/* The band kernels' parameters and arguments, alike for every micro-kernel. */
#define DC_BAND_PARAMS(T)                                                                   \
    const T* restrict x, int C, int H, int W, const T* restrict w, const T* restrict bias,   \
    int F, int KH, int KW, int ph, int pw, int sh, int sw, int dh, int dw, int oh0, int R,    \
    int OH, int OW, T* restrict buf, T* restrict y
#define DC_BAND_ARGS x, C, H, W, w, bias, F, KH, KW, ph, pw, sh, sw, dh, dw, oh0, R, OH, OW, buf, y

/* ---- generic: 16-byte vectors, the baseline target ---- */
static void dc_band_float_generic_2x1(DC_BAND_PARAMS(float)) { dc_band_float_v16(2, 1, 0, DC_BAND_ARGS); }
static void dc_band_double_generic_2x1(DC_BAND_PARAMS(double)) { dc_band_double_v16(2, 1, 0, DC_BAND_ARGS); }
static void dc_dw_band_float_generic(DC_DW_BAND_PARAMS) { dc_dw_band_float_v16(DC_DW_BAND_ARGS); }

#if CNNF_X86
/* GCC 12 reports "acc may be used uninitialized" in the AVX-512 and AVX2 tiles, at the
   very loop that sets every acc[i] the tile uses before any is read: a false positive of
   its unrolled, vectorised form.  Silenced for the band kernels only (GCC proper: clang
   also defines __GNUC__ but has no such warning and would warn about the pragma). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/* ---- 2x1 with FMA (the avx2 and avx512 levels) ---- */
CNNF_AVX2_FMA static void dc_band_float_fma_2x1(DC_BAND_PARAMS(float)) { dc_band_float_v16(2, 1, 0, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_band_double_fma_2x1(DC_BAND_PARAMS(double)) { dc_band_double_v16(2, 1, 0, DC_BAND_ARGS); }

/* ---- avx2: 32-byte vectors, AVX2 + FMA ---- */
CNNF_AVX2_FMA static void dc_band_float_avx2_6x1(DC_BAND_PARAMS(float)) { dc_band_float_v32(6, 1, 0, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_band_float_avx2_6x1_k3(DC_BAND_PARAMS(float)) { dc_band_float_v32(6, 1, 3, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_band_float_avx2_6x1_k5(DC_BAND_PARAMS(float)) { dc_band_float_v32(6, 1, 5, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_band_float_avx2_4x1(DC_BAND_PARAMS(float)) { dc_band_float_v32(4, 1, 0, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_band_float_avx2_4x1_k3(DC_BAND_PARAMS(float)) { dc_band_float_v32(4, 1, 3, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_band_float_avx2_4x1_k5(DC_BAND_PARAMS(float)) { dc_band_float_v32(4, 1, 5, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_band_double_avx2_6x1(DC_BAND_PARAMS(double)) { dc_band_double_v32(6, 1, 0, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_band_double_avx2_4x1(DC_BAND_PARAMS(double)) { dc_band_double_v32(4, 1, 0, DC_BAND_ARGS); }
CNNF_AVX2_FMA static void dc_dw_band_float_avx2(DC_DW_BAND_PARAMS) { dc_dw_band_float_v32(DC_DW_BAND_ARGS); }

/* ---- avx512: 64-byte vectors; float64 only needs to be right: no unrolled sizes ---- */
CNNF_AVX512 static void dc_band_float_avx512_6x4(DC_BAND_PARAMS(float)) { dc_band_float_v64(6, 4, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_6x4_k3(DC_BAND_PARAMS(float)) { dc_band_float_v64(6, 4, 3, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_6x4_k5(DC_BAND_PARAMS(float)) { dc_band_float_v64(6, 4, 5, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_12x2(DC_BAND_PARAMS(float)) { dc_band_float_v64(12, 2, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_12x2_k3(DC_BAND_PARAMS(float)) { dc_band_float_v64(12, 2, 3, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_12x2_k5(DC_BAND_PARAMS(float)) { dc_band_float_v64(12, 2, 5, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_24x1(DC_BAND_PARAMS(float)) { dc_band_float_v64(24, 1, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_24x1_k3(DC_BAND_PARAMS(float)) { dc_band_float_v64(24, 1, 3, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_24x1_k5(DC_BAND_PARAMS(float)) { dc_band_float_v64(24, 1, 5, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_8x2(DC_BAND_PARAMS(float)) { dc_band_float_v64(8, 2, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_8x2_k3(DC_BAND_PARAMS(float)) { dc_band_float_v64(8, 2, 3, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_8x2_k5(DC_BAND_PARAMS(float)) { dc_band_float_v64(8, 2, 5, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_4x4(DC_BAND_PARAMS(float)) { dc_band_float_v64(4, 4, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_4x4_k3(DC_BAND_PARAMS(float)) { dc_band_float_v64(4, 4, 3, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_4x4_k5(DC_BAND_PARAMS(float)) { dc_band_float_v64(4, 4, 5, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_16x1(DC_BAND_PARAMS(float)) { dc_band_float_v64(16, 1, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_16x1_k3(DC_BAND_PARAMS(float)) { dc_band_float_v64(16, 1, 3, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_float_avx512_16x1_k5(DC_BAND_PARAMS(float)) { dc_band_float_v64(16, 1, 5, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_double_avx512_6x4(DC_BAND_PARAMS(double)) { dc_band_double_v64(6, 4, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_double_avx512_12x2(DC_BAND_PARAMS(double)) { dc_band_double_v64(12, 2, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_double_avx512_24x1(DC_BAND_PARAMS(double)) { dc_band_double_v64(24, 1, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_double_avx512_8x2(DC_BAND_PARAMS(double)) { dc_band_double_v64(8, 2, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_double_avx512_4x4(DC_BAND_PARAMS(double)) { dc_band_double_v64(4, 4, 0, DC_BAND_ARGS); }
CNNF_AVX512 static void dc_band_double_avx512_16x1(DC_BAND_PARAMS(double)) { dc_band_double_v64(16, 1, 0, DC_BAND_ARGS); }

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* Weight gradient, float32 on AVX-512 (intrinsics).  With the band's shifted copies xs,
   the tap (c, kh, kw) sees the band's pixels p as the run xs[c, kw, kh*OW + p], so
       grad_w[f, c, kh, kw] += sum_p grad_y[f, oh0*OW + p] * xs[c, kw, kh*OW + p]:
   a tile keeps NF channels x NK kernel rows of sums in registers (at most 4 x 5), loads
   NF grad_y and NK input vectors per 16 pixels, and reduces its lanes once per band.
   Tails use masked loads (no reads past either array). */
CNNF_INLINE CNNF_AVX512 void dc_dw_tile_avx512(const int NF, const int NK,
        const float* restrict gy, ptrdiff_t gys, const float* restrict xr, int OW, ptrdiff_t P,
        float* restrict gw, ptrdiff_t gwf, int gwk) {
    __m512 acc[4][5], g[4];
    for (int k = 0; k < NF; k++)
        for (int j = 0; j < NK; j++) acc[k][j] = _mm512_setzero_ps();
    ptrdiff_t p = 0;
    for (; p + 16 <= P; p += 16) {
        for (int k = 0; k < NF; k++) g[k] = _mm512_loadu_ps(gy + k * gys + p);
        for (int j = 0; j < NK; j++) {
            __m512 xv = _mm512_loadu_ps(xr + (ptrdiff_t) j * OW + p);
            for (int k = 0; k < NF; k++) acc[k][j] = _mm512_fmadd_ps(g[k], xv, acc[k][j]);
        }
    }
    if (p < P) {
        __mmask16 m = (__mmask16) ((1u << (P - p)) - 1u);
        for (int k = 0; k < NF; k++) g[k] = _mm512_maskz_loadu_ps(m, gy + k * gys + p);
        for (int j = 0; j < NK; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, xr + (ptrdiff_t) j * OW + p);
            for (int k = 0; k < NF; k++) acc[k][j] = _mm512_fmadd_ps(g[k], xv, acc[k][j]);
        }
    }
    for (int k = 0; k < NF; k++)
        for (int j = 0; j < NK; j++) gw[k * gwf + j * gwk] += _mm512_reduce_add_ps(acc[k][j]);
}

/* grad_w (F, C, KH, KW) and grad_b (F,) += the sums over one band of R output rows; gy
   points at grad_y[n, 0, oh0, 0], gys = OH * OW apart per channel. */
CNNF_AVX512 static void dc_dw_band_float_avx512(DC_DW_BAND_PARAMS) {
    DC_DW_BAND_COPIES(float);
    ptrdiff_t P = (ptrdiff_t) R * OW;
    ptrdiff_t gwf = (ptrdiff_t) C * KH * KW;
    for (int c = 0; c < C; c++)
        for (int kw = 0; kw < KW; kw++)
            for (int f0 = 0; f0 < F; f0 += 4)
                for (int kh0 = 0; kh0 < KH; kh0 += 5) {
                    int nf = F - f0 < 4 ? F - f0 : 4, nk = KH - kh0 < 5 ? KH - kh0 : 5;
                    const float* g = gy + f0 * gys;
                    const float* xr = xs + c * cs + kw * kws + (ptrdiff_t) kh0 * rows;
                    float* d = gw + f0 * gwf + (ptrdiff_t) c * KH * KW + kh0 * KW + kw;
                    /* one case per tile size, so that each is compiled with its own sizes */
                    switch (nf * 8 + nk) {
                        case 1 * 8 + 1: dc_dw_tile_avx512(1, 1, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 1 * 8 + 2: dc_dw_tile_avx512(1, 2, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 1 * 8 + 3: dc_dw_tile_avx512(1, 3, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 1 * 8 + 4: dc_dw_tile_avx512(1, 4, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 1 * 8 + 5: dc_dw_tile_avx512(1, 5, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 2 * 8 + 1: dc_dw_tile_avx512(2, 1, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 2 * 8 + 2: dc_dw_tile_avx512(2, 2, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 2 * 8 + 3: dc_dw_tile_avx512(2, 3, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 2 * 8 + 4: dc_dw_tile_avx512(2, 4, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 2 * 8 + 5: dc_dw_tile_avx512(2, 5, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 3 * 8 + 1: dc_dw_tile_avx512(3, 1, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 3 * 8 + 2: dc_dw_tile_avx512(3, 2, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 3 * 8 + 3: dc_dw_tile_avx512(3, 3, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 3 * 8 + 4: dc_dw_tile_avx512(3, 4, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 3 * 8 + 5: dc_dw_tile_avx512(3, 5, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 4 * 8 + 1: dc_dw_tile_avx512(4, 1, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 4 * 8 + 2: dc_dw_tile_avx512(4, 2, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 4 * 8 + 3: dc_dw_tile_avx512(4, 3, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 4 * 8 + 4: dc_dw_tile_avx512(4, 4, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 4 * 8 + 5: dc_dw_tile_avx512(4, 5, g, gys, xr, rows, P, d, gwf, KW); break;
                    }
                }
    for (int f = 0; f < F; f++) {  /* the bias gradient: plain sums of the band */
        __m512 a = _mm512_setzero_ps();
        ptrdiff_t p = 0;
        for (; p + 16 <= P; p += 16) a = _mm512_add_ps(a, _mm512_loadu_ps(gy + f * gys + p));
        if (p < P)
            a = _mm512_add_ps(a, _mm512_maskz_loadu_ps((__mmask16) ((1u << (P - p)) - 1u),
                                                       gy + f * gys + p));
        gb[f] += _mm512_reduce_add_ps(a);
    }
}
#endif /* CNNF_X86 */

/* A key for (FB, V, K): FB < 32, V < 8, K < 8. */
#define DC_KEY(FB, V, K) (((FB) * 8 + (V)) * 8 + (K))

/* 1 if the active level has the (FB, V) micro-kernel (see the top of this file). */
static inline int dc_has_tile(int FB, int V) {
    switch (cnnf_isa()) {
        case CNNF_ISA_AVX512:
            switch (DC_KEY(FB, V, 0)) {
                case DC_KEY(6, 4, 0): case DC_KEY(12, 2, 0): case DC_KEY(24, 1, 0):
                case DC_KEY(8, 2, 0): case DC_KEY(4, 4, 0): case DC_KEY(16, 1, 0):
                case DC_KEY(2, 1, 0): return 1;
            }
            return 0;
        case CNNF_ISA_AVX2:
            switch (DC_KEY(FB, V, 0)) {
                case DC_KEY(6, 1, 0): case DC_KEY(4, 1, 0): case DC_KEY(2, 1, 0): return 1;
            }
            return 0;
        default:
            switch (DC_KEY(FB, V, 0)) {
                case DC_KEY(2, 1, 0): return 1;
            }
            return 0;
    }
}

/* The unrolled kernel size for KH x KW (float32 only): 3, 5, or 0 for any other. */
static inline int dc_unrolled(int KH, int KW) {
    return KH == 3 && KW == 3 ? 3 : KH == 5 && KW == 5 ? 5 : 0;
}

/* One band with the (FB, V) micro-kernel of the active level; (FB, V) passed
   dc_has_tile (else nothing is written). */
static void dc_band_float(const float* x, int C, int H, int W, const float* w,
                          const float* bias, int F, int KH, int KW, int ph, int pw, int sh,
                          int sw, int dh, int dw, int oh0, int R, int OH, int OW, int FB, int V,
                          float* buf, float* y) {
    const int key = DC_KEY(FB, V, dc_unrolled(KH, KW));
    (void) key; /* read only by the x86-64 levels */
    switch (cnnf_isa()) {
#if CNNF_X86
        case CNNF_ISA_AVX512:
            switch (key) {
                case DC_KEY(6, 4, 0): dc_band_float_avx512_6x4(DC_BAND_ARGS); return;
                case DC_KEY(6, 4, 3): dc_band_float_avx512_6x4_k3(DC_BAND_ARGS); return;
                case DC_KEY(6, 4, 5): dc_band_float_avx512_6x4_k5(DC_BAND_ARGS); return;
                case DC_KEY(12, 2, 0): dc_band_float_avx512_12x2(DC_BAND_ARGS); return;
                case DC_KEY(12, 2, 3): dc_band_float_avx512_12x2_k3(DC_BAND_ARGS); return;
                case DC_KEY(12, 2, 5): dc_band_float_avx512_12x2_k5(DC_BAND_ARGS); return;
                case DC_KEY(24, 1, 0): dc_band_float_avx512_24x1(DC_BAND_ARGS); return;
                case DC_KEY(24, 1, 3): dc_band_float_avx512_24x1_k3(DC_BAND_ARGS); return;
                case DC_KEY(24, 1, 5): dc_band_float_avx512_24x1_k5(DC_BAND_ARGS); return;
                case DC_KEY(8, 2, 0): dc_band_float_avx512_8x2(DC_BAND_ARGS); return;
                case DC_KEY(8, 2, 3): dc_band_float_avx512_8x2_k3(DC_BAND_ARGS); return;
                case DC_KEY(8, 2, 5): dc_band_float_avx512_8x2_k5(DC_BAND_ARGS); return;
                case DC_KEY(4, 4, 0): dc_band_float_avx512_4x4(DC_BAND_ARGS); return;
                case DC_KEY(4, 4, 3): dc_band_float_avx512_4x4_k3(DC_BAND_ARGS); return;
                case DC_KEY(4, 4, 5): dc_band_float_avx512_4x4_k5(DC_BAND_ARGS); return;
                case DC_KEY(16, 1, 0): dc_band_float_avx512_16x1(DC_BAND_ARGS); return;
                case DC_KEY(16, 1, 3): dc_band_float_avx512_16x1_k3(DC_BAND_ARGS); return;
                case DC_KEY(16, 1, 5): dc_band_float_avx512_16x1_k5(DC_BAND_ARGS); return;
            }
            if (FB == 2 && V == 1) dc_band_float_fma_2x1(DC_BAND_ARGS);
            return;
        case CNNF_ISA_AVX2:
            switch (key) {
                case DC_KEY(6, 1, 0): dc_band_float_avx2_6x1(DC_BAND_ARGS); return;
                case DC_KEY(6, 1, 3): dc_band_float_avx2_6x1_k3(DC_BAND_ARGS); return;
                case DC_KEY(6, 1, 5): dc_band_float_avx2_6x1_k5(DC_BAND_ARGS); return;
                case DC_KEY(4, 1, 0): dc_band_float_avx2_4x1(DC_BAND_ARGS); return;
                case DC_KEY(4, 1, 3): dc_band_float_avx2_4x1_k3(DC_BAND_ARGS); return;
                case DC_KEY(4, 1, 5): dc_band_float_avx2_4x1_k5(DC_BAND_ARGS); return;
            }
            if (FB == 2 && V == 1) dc_band_float_fma_2x1(DC_BAND_ARGS);
            return;
#endif
        default:
            if (FB == 2 && V == 1) dc_band_float_generic_2x1(DC_BAND_ARGS);
            return;
    }
}

static void dc_band_double(const double* x, int C, int H, int W, const double* w,
                           const double* bias, int F, int KH, int KW, int ph, int pw, int sh,
                           int sw, int dh, int dw, int oh0, int R, int OH, int OW, int FB, int V,
                           double* buf, double* y) {
    const int key = DC_KEY(FB, V, 0);
    switch (cnnf_isa()) {
#if CNNF_X86
        case CNNF_ISA_AVX512:
            switch (key) {
                case DC_KEY(6, 4, 0): dc_band_double_avx512_6x4(DC_BAND_ARGS); return;
                case DC_KEY(12, 2, 0): dc_band_double_avx512_12x2(DC_BAND_ARGS); return;
                case DC_KEY(24, 1, 0): dc_band_double_avx512_24x1(DC_BAND_ARGS); return;
                case DC_KEY(8, 2, 0): dc_band_double_avx512_8x2(DC_BAND_ARGS); return;
                case DC_KEY(4, 4, 0): dc_band_double_avx512_4x4(DC_BAND_ARGS); return;
                case DC_KEY(16, 1, 0): dc_band_double_avx512_16x1(DC_BAND_ARGS); return;
                case DC_KEY(2, 1, 0): dc_band_double_fma_2x1(DC_BAND_ARGS); return;
            }
            return;
        case CNNF_ISA_AVX2:
            switch (key) {
                case DC_KEY(6, 1, 0): dc_band_double_avx2_6x1(DC_BAND_ARGS); return;
                case DC_KEY(4, 1, 0): dc_band_double_avx2_4x1(DC_BAND_ARGS); return;
                case DC_KEY(2, 1, 0): dc_band_double_fma_2x1(DC_BAND_ARGS); return;
            }
            return;
#endif
        default:
            if (key == DC_KEY(2, 1, 0)) dc_band_double_generic_2x1(DC_BAND_ARGS);
            return;
    }
}

/* The weight gradient of one band (float32) on the active level; see
   dc_dw_band_float_avx512 for the method (the other levels use DC_DW_MAX_NF x
   DC_DW_MAX_NK tiles and add their last pixels one at a time). */
static void dc_dw_band_float(DC_DW_BAND_PARAMS) {
    switch (cnnf_isa()) {
#if CNNF_X86
        case CNNF_ISA_AVX512: dc_dw_band_float_avx512(DC_DW_BAND_ARGS); return;
        case CNNF_ISA_AVX2: dc_dw_band_float_avx2(DC_DW_BAND_ARGS); return;
#endif
        default: dc_dw_band_float_generic(DC_DW_BAND_ARGS);
    }
}

/* 1 if the weight gradient exists: on every level wherever the kernels build. */
static inline int dc_has_grad_weight(void) { return 1; }

#else /* plain C (simd.h): no direct convolution, conv2d takes im2col or Winograd */

static inline int dc_has_tile(int FB, int V) { return 0; }
static inline int dc_has_grad_weight(void) { return 0; }
static inline ptrdiff_t dc_band_scratch(int itemsize, int C, int KH, int KW, int R, int OW,
                                        int V) {
    return 0;
}
static inline ptrdiff_t dc_band_scratch_taps(int itemsize, int C, int KH, int KW, int R,
                                             int OW, int V) {
    return 0;
}
/* Never called: nothing passes dc_has_tile or dc_has_grad_weight. */
static void dc_band_float(const float* x, int C, int H, int W, const float* w,
                          const float* bias, int F, int KH, int KW, int ph, int pw, int sh,
                          int sw, int dh, int dw, int oh0, int R, int OH, int OW, int FB, int V,
                          float* buf, float* y) {}
static void dc_band_double(const double* x, int C, int H, int W, const double* w,
                           const double* bias, int F, int KH, int KW, int ph, int pw, int sh,
                           int sw, int dh, int dw, int oh0, int R, int OH, int OW, int FB, int V,
                           double* buf, double* y) {}
static inline ptrdiff_t dc_dw_band_scratch(int itemsize, int C, int F, int KH, int KW, int R,
                                           int OW, int taps) {
    return 0;
}
static void dc_dw_band_float(const float* x, int C, int H, int W, const float* gy,
                             ptrdiff_t gys, int F, int KH, int KW, int ph, int pw, int sh,
                             int sw, int dh, int dw, int oh0, int R, int OW, float* buf,
                             float* gw, float* gb) {}

#endif /* CNNF_VECTOR_EXTENSIONS */

#endif /* CNNFRAME_DIRECT_H */
