/* A C-level test of the direct convolution kernels (cnnframe_ext/src/direct.h), without
   Python, so that they can be cross-compiled and run on other CPUs (tests/c/run_arm.sh
   builds it for aarch64 and runs it under qemu-user, and natively as a sanity check).

   It calls the kernels the way cnnframe_ext/direct.pyx does:
     forward         weights packed as (ceil(F/FB), C, KW, KH, FB), bias zero-padded to
                     ceil(F/FB) * FB, dc_band_<type> over bands of R output rows per image;
     input gradient  the same band kernel on grad_y with the flipped, in/out-transposed
                     kernel packed the same way, zero bias, padding (KH-1-ph, KW-1-pw);
     weight gradient dc_dw_band_float over the same bands (float32 only: the only type
                     the kernel has), summed into one partition.
   and compares each with a plain-loop reference in double.  Every instruction-set level
   the CPU runs (generic only off x86-64) and every micro-kernel that level has is tried.

   Output: one line per case, then "N passed, M failed"; exit status 1 on any failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "direct.h"

/* ------------------------------------------------------------------ shapes and data */

typedef struct {
    int N, C, H, W, F, KH, KW, ph, pw, R; /* R: output rows per band (0: the whole map) */
} conv_case;

static const conv_case CASES[] = {
    /* N  C  H   W   F  KH KW ph pw R */
    {2, 3, 7, 9, 5, 3, 3, 1, 1, 0},   /* 3x3 "same", odd sizes, F not a multiple of FB */
    {1, 4, 8, 8, 6, 3, 3, 0, 0, 0},   /* 3x3 valid */
    {2, 3, 11, 10, 7, 3, 3, 1, 1, 4}, /* several bands of 4 rows, last one partial */
    {1, 2, 9, 7, 3, 5, 5, 1, 1, 0},   /* 5x5, padding 1 (OW != W) */
    {2, 3, 8, 9, 4, 5, 5, 0, 0, 2},   /* 5x5 valid, bands of 2 rows */
    {1, 2, 6, 6, 4, 5, 5, 2, 2, 0},   /* 5x5 "same" */
    {1, 3, 5, 6, 4, 1, 1, 0, 0, 0},   /* 1x1 */
    {1, 2, 7, 8, 3, 3, 5, 1, 0, 3},   /* 3x5 (not unrolled), mixed padding */
    {1, 1, 3, 3, 1, 3, 3, 0, 0, 0},   /* 1x1 output */
    {1, 5, 20, 21, 9, 3, 3, 1, 1, 0}, /* wider than one vector row */
};
enum { NCASES = sizeof(CASES) / sizeof(CASES[0]) };

/* The micro-kernels any level may have (direct.h: dc_has_tile says which it does). */
static const int TILES[][2] = {{6, 4}, {12, 2}, {24, 1}, {8, 2}, {4, 4}, {16, 1},
                               {6, 1}, {4, 1}, {2, 1}};
enum { NTILES = sizeof(TILES) / sizeof(TILES[0]) };

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* Uniform in [-1, 1) from a fixed-seed xorshift64*: the same data on every CPU. */
static double uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double) ((rng_state * 2685821657736338717ull) >> 11) / 4503599627370496.0 - 1.0;
}

static void* xalloc(size_t bytes) {
    /* 64-byte aligned like numpy's large arrays; never a zero-size request */
    void* p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

static double* random_array(size_t n) {
    double* a = xalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) a[i] = uniform();
    return a;
}

/* ------------------------------------------------------------------ reference (double) */

#define IDX4(a, b, c, d, B, C, D) ((((size_t) (a) * (B) + (b)) * (C) + (c)) * (D) + (d))

/* y = bias + conv(x, w), stride 1, zero padding (ph, pw). */
static void ref_forward(const conv_case* s, const double* x, const double* w,
                        const double* bias, double* y) {
    int OH = s->H + 2 * s->ph - s->KH + 1, OW = s->W + 2 * s->pw - s->KW + 1;
    for (int n = 0; n < s->N; n++)
        for (int f = 0; f < s->F; f++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = bias[f];
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh + kh - s->ph, iw = ow + kw - s->pw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                acc += w[IDX4(f, c, kh, kw, s->C, s->KH, s->KW)]
                                       * x[IDX4(n, c, ih, iw, s->C, s->H, s->W)];
                            }
                    y[IDX4(n, f, oh, ow, s->F, OH, OW)] = acc;
                }
}

/* gx = d(sum gy * y)/dx, gw = d/dw, gb = d/dbias. */
static void ref_backward(const conv_case* s, const double* x, const double* w,
                         const double* gy, double* gx, double* gw, double* gb) {
    int OH = s->H + 2 * s->ph - s->KH + 1, OW = s->W + 2 * s->pw - s->KW + 1;
    memset(gx, 0, (size_t) s->N * s->C * s->H * s->W * sizeof(double));
    memset(gw, 0, (size_t) s->F * s->C * s->KH * s->KW * sizeof(double));
    memset(gb, 0, (size_t) s->F * sizeof(double));
    for (int n = 0; n < s->N; n++)
        for (int f = 0; f < s->F; f++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double g = gy[IDX4(n, f, oh, ow, s->F, OH, OW)];
                    gb[f] += g;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh + kh - s->ph, iw = ow + kw - s->pw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                size_t xi = IDX4(n, c, ih, iw, s->C, s->H, s->W);
                                size_t wi = IDX4(f, c, kh, kw, s->C, s->KH, s->KW);
                                gx[xi] += g * w[wi];
                                gw[wi] += g * x[xi];
                            }
                }
}

/* ------------------------------------------------------------------ the kernels' drivers */

/* For T in float, double: pack_<T> packs weight (F, C, KH, KW) as direct.pyx's pack_weight
   does; conv_<T> runs the band kernel over every band of every image like direct.pyx's
   direct_conv2d (one thread): y (N, Fo, OH, OW) from x (N, Ci, H, W). */
#define DEFINE_DRIVER(T, BAND)                                                              \
    static T* pack_##T(const double* weight, int F, int C, int KH, int KW, int FB,          \
                       int transposed, int* Fo_out) {                                        \
        int Fo = transposed ? C : F, Ci = transposed ? F : C, NB = (Fo + FB - 1) / FB;       \
        T* packed = xalloc((size_t) NB * Ci * KW * KH * FB * sizeof(T));                     \
        size_t i = 0;                                                                        \
        for (int fb = 0; fb < NB; fb++)                                                      \
            for (int c = 0; c < Ci; c++)                                                     \
                for (int kw = 0; kw < KW; kw++)                                              \
                    for (int kh = 0; kh < KH; kh++)                                          \
                        for (int j = 0; j < FB; j++, i++) {                                  \
                            int f = fb * FB + j;                                             \
                            packed[i] = f >= Fo ? 0                                          \
                                        : transposed                                         \
                                            ? (T) weight[IDX4(c, f, KH - 1 - kh, KW - 1 - kw, \
                                                              C, KH, KW)]                    \
                                            : (T) weight[IDX4(f, c, kh, kw, C, KH, KW)];     \
                        }                                                                    \
        *Fo_out = Fo;                                                                        \
        return packed;                                                                       \
    }                                                                                        \
                                                                                             \
    static void conv_##T(const T* x, int N, int Ci, int H, int W, const T* packed,           \
                         const T* bias, int Fo, int KH, int KW, int ph, int pw, int R,       \
                         int FB, int V, T* y) {                                              \
        int OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - KW + 1;                              \
        if (R <= 0 || R > OH) R = OH;                                                        \
        T* buf = xalloc(dc_band_scratch(sizeof(T), Ci, KH, KW, R, OW, V) * sizeof(T));       \
        for (int n = 0; n < N; n++)                                                          \
            for (int oh0 = 0; oh0 < OH; oh0 += R)                                            \
                BAND(x + (size_t) n * Ci * H * W, Ci, H, W, packed, bias, Fo, KH, KW, ph,    \
                     pw, 1, 1, 1, 1, oh0, R < OH - oh0 ? R : OH - oh0, OH, OW, FB, V, buf,   \
                     y + (size_t) n * Fo * OH * OW);                                         \
        free(buf);                                                                           \
    }

DEFINE_DRIVER(float, dc_band_float)
DEFINE_DRIVER(double, dc_band_double)

/* grad_w (F, C, KH, KW), grad_b (F,) like direct.pyx's direct_conv2d_grad_weight with one
   partition: every image, band by band, in order. */
static void grad_weight_float(const float* x, const float* gy, int N, int C, int H, int W,
                              int F, int KH, int KW, int ph, int pw, int R, float* gw,
                              float* gb) {
    int OH = H + 2 * ph - KH + 1, OW = W + 2 * pw - KW + 1;
    ptrdiff_t P = (ptrdiff_t) OH * OW;
    if (R <= 0 || R > OH) R = OH;
    float* buf = xalloc(dc_dw_band_scratch(sizeof(float), C, F, KH, KW, R, OW, 0) * sizeof(float));
    memset(gw, 0, (size_t) F * C * KH * KW * sizeof(float));
    memset(gb, 0, (size_t) F * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int oh0 = 0; oh0 < OH; oh0 += R)
            dc_dw_band_float(x + (size_t) n * C * H * W, C, H, W,
                             gy + (size_t) n * F * P + (size_t) oh0 * OW, P, F, KH, KW, ph, pw,
                             1, 1, 1, 1, oh0, R < OH - oh0 ? R : OH - oh0, OW, buf, gw, gb);
    free(buf);
}

/* ------------------------------------------------------------------ comparison */

/* Guard elements after every output array: the kernels must not write past the end. */
enum { GUARD = 64 };
#define GUARD_VALUE 12345.0

static int passed = 0, failed = 0;

/* Elements of `got` that differ from `ref` by more than tol * max(1, max |ref|) (NaN, an
   element never written, counts as a difference), plus guard elements overwritten. */
#define DEFINE_COMPARE(T)                                                                   \
    static int compare_##T(const T* got, const double* ref, size_t n, double tol,           \
                           double* max_err) {                                                \
        double scale = 1.0, err = 0.0;                                                       \
        int bad = 0;                                                                         \
        for (size_t i = 0; i < n; i++)                                                       \
            if (fabs(ref[i]) > scale) scale = fabs(ref[i]);                                  \
        for (size_t i = 0; i < n; i++) {                                                     \
            double e = fabs((double) got[i] - ref[i]);                                       \
            if (!(e <= tol * scale)) bad++;                                                  \
            if (!(e <= err)) err = e;                                                        \
        }                                                                                    \
        for (size_t i = n; i < n + GUARD; i++)                                               \
            if (got[i] != (T) GUARD_VALUE) bad++;                                            \
        *max_err = err / scale;                                                              \
        return bad;                                                                          \
    }                                                                                        \
                                                                                             \
    /* n elements of NaN (so an element the kernel skips fails), then the guard */           \
    static T* output_##T(size_t n) {                                                         \
        T* a = xalloc((n + GUARD) * sizeof(T));                                              \
        for (size_t i = 0; i < n; i++) a[i] = (T) NAN;                                       \
        for (size_t i = n; i < n + GUARD; i++) a[i] = (T) GUARD_VALUE;                       \
        return a;                                                                            \
    }                                                                                        \
                                                                                             \
    static T* convert_##T(const double* a, size_t n) {                                       \
        T* b = xalloc(n * sizeof(T));                                                        \
        for (size_t i = 0; i < n; i++) b[i] = (T) a[i];                                      \
        return b;                                                                            \
    }

DEFINE_COMPARE(float)
DEFINE_COMPARE(double)

static const char* level_name(int level) {
    return level == CNNF_ISA_AVX512 ? "avx512" : level == CNNF_ISA_AVX2 ? "avx2" : "generic";
}

static void report(int bad, const char* what, const char* type, int level, int FB, int V,
                   const conv_case* s, double max_err) {
    if (bad) failed++; else passed++;
    char tile[16] = "-";
    if (FB) snprintf(tile, sizeof tile, "%dx%d", FB, V);
    printf("%s %-11s %-6s %-7s tile %-4s  N%d C%d %dx%d F%d k%dx%d pad %d,%d R%d  "
           "max rel err %.2e%s\n",
           bad ? "FAIL" : "ok  ", what, type, level_name(level), tile, s->N, s->C, s->H,
           s->W, s->F, s->KH, s->KW, s->ph, s->pw, s->R, max_err,
           bad ? "  <-- elements off or guard overwritten" : "");
}

/* Forward, input gradient and weight gradient of case s against the reference, on the
   active level with the (FB, V) micro-kernel (the weight gradient, which has no tiles,
   with the 2x1 that every level has). */
static void run_case(const conv_case* s, int level, int FB, int V) {
    const int N = s->N, C = s->C, H = s->H, W = s->W, F = s->F, KH = s->KH, KW = s->KW;
    const int OH = H + 2 * s->ph - KH + 1, OW = W + 2 * s->pw - KW + 1;
    const size_t nx = (size_t) N * C * H * W, nw = (size_t) F * C * KH * KW;
    const size_t ny = (size_t) N * F * OH * OW;
    double *x = random_array(nx), *w = random_array(nw), *bias = random_array(F);
    double* gy = random_array(ny);
    double *y_ref = xalloc(ny * sizeof(double)), *gx_ref = xalloc(nx * sizeof(double));
    double *gw_ref = xalloc(nw * sizeof(double)), *gb_ref = xalloc(F * sizeof(double));
    ref_forward(s, x, w, bias, y_ref);
    ref_backward(s, x, w, gy, gx_ref, gw_ref, gb_ref);
    /* the input gradient's padding KH-1-ph is a forward padding: ph <= KH-1 */
    const int gph = KH - 1 - s->ph, gpw = KW - 1 - s->pw;
    const int NBmax = (F > C ? F : C) + FB;
    double err = 0.0; /* set by compare_*, read only after it (argument order is unspecified) */

#define CHECK_FORWARD_AND_GRAD_X(T, TOL)                                                    \
    do {                                                                                     \
        int Fo, bad;                                                                         \
        T *xt = convert_##T(x, nx), *gyt = convert_##T(gy, ny);                              \
        T* bt = xalloc((size_t) NBmax * sizeof(T));                                          \
        memset(bt, 0, (size_t) NBmax * sizeof(T));                                           \
        for (int f = 0; f < F; f++) bt[f] = (T) bias[f];                                     \
        T* packed = pack_##T(w, F, C, KH, KW, FB, 0, &Fo);                                   \
        T* y = output_##T(ny);                                                               \
        conv_##T(xt, N, C, H, W, packed, bt, Fo, KH, KW, s->ph, s->pw, s->R, FB, V, y);      \
        bad = compare_##T(y, y_ref, ny, TOL, &err);                                          \
        report(bad, "forward", #T, level, FB, V, s, err);                                    \
        free(packed);                                                                        \
        packed = pack_##T(w, F, C, KH, KW, FB, 1, &Fo);                                      \
        memset(bt, 0, (size_t) NBmax * sizeof(T));                                           \
        T* gx = output_##T(nx);                                                              \
        conv_##T(gyt, N, F, OH, OW, packed, bt, Fo, KH, KW, gph, gpw, s->R, FB, V, gx);      \
        bad = compare_##T(gx, gx_ref, nx, TOL, &err);                                        \
        report(bad, "grad_input", #T, level, FB, V, s, err);                                 \
        free(packed); free(y); free(gx); free(bt); free(xt); free(gyt);                      \
    } while (0)

    CHECK_FORWARD_AND_GRAD_X(float, 1e-5);
    CHECK_FORWARD_AND_GRAD_X(double, 1e-12);

    /* the weight gradient: float32, one kernel per level (no tile to choose), so once */
    if (FB == 2 && V == 1 && dc_has_grad_weight()) {
        float *xt = convert_float(x, nx), *gyt = convert_float(gy, ny);
        float *gw = output_float(nw), *gb = output_float(F);
        grad_weight_float(xt, gyt, N, C, H, W, F, KH, KW, s->ph, s->pw, s->R, gw, gb);
        int bad = compare_float(gw, gw_ref, nw, 1e-5, &err);
        double err_b;
        bad += compare_float(gb, gb_ref, F, 1e-5, &err_b);
        report(bad, "grad_weight", "float", level, 0, 0, s, err > err_b ? err : err_b);
        free(xt); free(gyt); free(gw); free(gb);
    }
    free(x); free(w); free(bias); free(gy);
    free(y_ref); free(gx_ref); free(gw_ref); free(gb_ref);
}

int main(void) {
    int best = cnnf_cpu_isa();
    printf("cnnframe direct kernels, C test: %s, CPU's best level %s, vector extensions %d\n",
#if defined(__aarch64__)
           "aarch64",
#elif defined(__x86_64__)
           "x86-64",
#else
           "other architecture",
#endif
           level_name(best), CNNF_VECTOR_EXTENSIONS);
    for (int level = CNNF_ISA_GENERIC; level <= best; level++) {
        cnnf_set_isa(level);
        if (cnnf_isa() != level) {
            printf("FAIL cnnf_set_isa(%s) gave %s\n", level_name(level), level_name(cnnf_isa()));
            failed++;
            continue;
        }
        int tiles = 0;
        for (int t = 0; t < NTILES; t++) {
            if (!dc_has_tile(TILES[t][0], TILES[t][1])) continue;
            tiles++;
            for (int i = 0; i < NCASES; i++) run_case(&CASES[i], level, TILES[t][0], TILES[t][1]);
        }
        if (!tiles) {
            printf("FAIL level %s has no micro-kernel\n", level_name(level));
            failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
