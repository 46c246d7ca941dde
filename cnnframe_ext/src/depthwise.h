/* Depthwise convolution (groups == C, each input channel with its own M filters), one
   plane at a time.  A depthwise layer does KH*KW multiply-adds per output element, so it
   is bound by memory, not arithmetic: each plane is copied once into a small per-thread
   scratch (which stays in L1/L2) in a layout where every tap is a unit-stride run, and
   the plane kernels keep a block of output vectors in registers while all the taps add
   into it, so each output vector is stored once.

   Layouts (dw_layout computes them; the caller zeroes the scratch once per call, and
   the per-plane copies only ever write the data positions, so padding stays zero):
   - x copies, for the forward pass and the weight gradient: the H input rows, each
     split into its sw phases (phase q holds the padded row's columns q, q + sw, ...,
     WQ of them), so the tap b of output column j is the element j + coff[b] of the row,
     coff[b] = ((b * dw) % sw) * WQ + (b * dw) / sw: a stride-2 tap is a contiguous load.
     The padding rows are not stored: a tap that would read one is skipped.
   - grad_y copies, for the input gradient: grad_x is the stride-1 correlation of grad_y,
     spread out by the stride (grad_y[i, j] at row T0 + i * sh, column L0 + j * sw of a
     zero plane), with the flipped filter.  The rows in between are zero and not stored
     (skipped, as padding rows are); the columns in between are zeros in the copy.
   Each row copy has L (64 bytes) of slack past its data, so a whole vector may always
   be loaded; lanes past the output row are discarded (or masked, for the weight
   gradient).

   The summation order of every output element is fixed (bias, then the filters and
   their taps in row-major order; a weight-gradient or bias sum: per plane in lane order,
   then the planes in image order), so results do not depend on the thread count.

   Each level computes at its own vector width (multiwidth.h); the avx2 level fuses
   multiply-adds, so its results differ from the generic level's in the last bits.

   Defines, for float (_f) and double (_d), each dispatching to its _avx512, _avx2 and
   _generic version:
     dw_forward_plane_f/_d    y planes (M of them) of one input plane
     dw_backward_plane_f/_d   grad_x of one input plane and its filters' gradients
   and dw_layout (the geometry and scratch sizes). */
#ifndef CNNFRAME_DEPTHWISE_H
#define CNNFRAME_DEPTHWISE_H

#include <stddef.h>
#include <string.h>

#include "multiwidth.h"
#include "simd.h"

/* The geometry of one call: sizes, the copies' layouts and the column offsets of the
   taps (coff: in the x copies, coffg: in the grad_y copies; KW entries each). */
typedef struct {
    ptrdiff_t H, W, OH, OW, M;           /* input plane, output plane, filters per channel */
    ptrdiff_t KH, KW, sh, sw, ph, pw, dh, dw;
    ptrdiff_t WQ, RS;                    /* x copies: phase length, row stride */
    ptrdiff_t WD, RSg, T0, L0;           /* grad_y copies: width, row stride, origin */
    ptrdiff_t x_elements, gy_elements;   /* scratch elements of each copy */
    const ptrdiff_t* coff;
    const ptrdiff_t* coffg;
} dw_geometry;

/* Fills g for a call (coffs: 2 * KW entries, which g->coff and g->coffg point into);
   itemsize: bytes per element.  The copies' slack is 64 bytes, the widest vector. */
static inline void dw_layout(dw_geometry* g, ptrdiff_t* coffs, ptrdiff_t H, ptrdiff_t W,
                             ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t M, ptrdiff_t KH,
                             ptrdiff_t KW, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph,
                             ptrdiff_t pw, ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t itemsize) {
    ptrdiff_t L = 64 / itemsize;
    g->H = H, g->W = W, g->OH = OH, g->OW = OW, g->M = M;
    g->KH = KH, g->KW = KW, g->sh = sh, g->sw = sw, g->ph = ph, g->pw = pw;
    g->dh = dh, g->dw = dw;
    g->WQ = (W + 2 * pw + sw - 1) / sw;
    g->RS = (sw * g->WQ + L + L - 1) / L * L;
    g->WD = W + (KW - 1) * dw;
    g->RSg = (g->WD + L + L - 1) / L * L;
    g->T0 = (KH - 1) * dh - ph;
    g->L0 = (KW - 1) * dw - pw;
    g->x_elements = H * g->RS;
    g->gy_elements = M * OH * g->RSg;
    for (ptrdiff_t b = 0; b < KW; b++) {
        coffs[b] = ((b * dw) % sw) * g->WQ + (b * dw) / sw;
        coffs[KW + b] = b * dw;
    }
    g->coff = coffs;
    g->coffg = coffs + KW;
}

#if CNNF_VECTOR_EXTENSIONS
/* Hides a loop index from GCC, which would turn short copy loops into memcpy calls (a
   libc call per row costs more than the row). */
#define DW_OPAQUE(j) __asm__("" : "+r"(j))
typedef int cnnf_i32x4 __attribute__((vector_size(16)));
typedef int cnnf_i32x8 __attribute__((vector_size(32)));
typedef int cnnf_i32x16 __attribute__((vector_size(64)));
typedef long long cnnf_i64x2 __attribute__((vector_size(16)));
typedef long long cnnf_i64x4 __attribute__((vector_size(32)));
typedef long long cnnf_i64x8 __attribute__((vector_size(64)));
#endif

/* The code, once per element type and vector width: depthwise_typed.h names its
   functions with DW_SUFFIX and undefines these macros.  DW_V: DW_L values of type DW_T
   (DW_UV its unaligned view, DW_IV the integer vector of the same size). */
#if CNNF_VECTOR_EXTENSIONS
#define DW_T float
#define DW_V cnnf_f32x4
#define DW_UV cnnf_f32x4u
#define DW_IV cnnf_i32x4
#define DW_L 4
#define DW_SUFFIX f4
#include "depthwise_typed.h"
#define DW_T double
#define DW_V cnnf_f64x2
#define DW_UV cnnf_f64x2u
#define DW_IV cnnf_i64x2
#define DW_L 2
#define DW_SUFFIX d2
#include "depthwise_typed.h"
#else
#define DW_T float
#define DW_V float
#define DW_L 1
#define DW_SUFFIX f1
#include "depthwise_typed.h"
#define DW_T double
#define DW_V double
#define DW_L 1
#define DW_SUFFIX d1
#include "depthwise_typed.h"
#endif
#if CNNF_X86
#define DW_T float
#define DW_V cnnf_f32x8
#define DW_UV cnnf_f32x8u
#define DW_IV cnnf_i32x8
#define DW_L 8
#define DW_SUFFIX f8
#include "depthwise_typed.h"
#define DW_T double
#define DW_V cnnf_f64x4
#define DW_UV cnnf_f64x4u
#define DW_IV cnnf_i64x4
#define DW_L 4
#define DW_SUFFIX d4
#include "depthwise_typed.h"
#define DW_T float
#define DW_V cnnf_f32x16
#define DW_UV cnnf_f32x16u
#define DW_IV cnnf_i32x16
#define DW_L 16
#define DW_SUFFIX f16
#include "depthwise_typed.h"
#define DW_T double
#define DW_V cnnf_f64x8
#define DW_UV cnnf_f64x8u
#define DW_IV cnnf_i64x8
#define DW_L 8
#define DW_SUFFIX d8
#include "depthwise_typed.h"
#endif

/* GCC 12 reports "acc may be used uninitialized" in the unrolled blocks, whose first
   loop sets every acc[v] they use: the false positive direct.h silences too (GCC proper
   only: clang also defines __GNUC__ but has no such warning). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define DW_KERNEL(name, fparams, dparams, args)                                             \
    CNNF_MULTIWIDTH(name##_f, name##_body, fparams, args, f16, f8, CNNF_F128)               \
    CNNF_MULTIWIDTH(name##_d, name##_body, dparams, args, d8, d4, CNNF_D128)

/* dw_forward_plane_f and _d (and their _avx512, _avx2, _generic versions):
   y (M, OH, OW) = the M filters w (M, KH*KW) of x (H, W), plus bias (M,) unless NULL;
   xs: the thread's zeroed x copy (g->x_elements). */
DW_KERNEL(dw_forward_plane,
          (const dw_geometry* g, const float* restrict x, const float* restrict w,
           const float* restrict bias, float* restrict y, float* restrict xs),
          (const dw_geometry* g, const double* restrict x, const double* restrict w,
           const double* restrict bias, double* restrict y, double* restrict xs),
          (g, x, w, bias, y, xs))
/* dw_backward_plane_f and _d: for one input plane x (H, W) and its output gradients
   gy (M, OH, OW), gx (H, W) = the input gradient (unless gx is NULL; wflip: the filters
   (M, KH*KW) with their taps reversed) and, unless gw is NULL, gw (M, KH*KW) += the
   filters' gradients and gb (M,) += the bias gradients.  xs, gys: the thread's zeroed
   x and grad_y copies. */
DW_KERNEL(dw_backward_plane,
          (const dw_geometry* g, const float* restrict x, const float* restrict gy,
           const float* restrict wflip, float* restrict gx, float* restrict gw,
           float* restrict gb, float* restrict xs, float* restrict gys),
          (const dw_geometry* g, const double* restrict x, const double* restrict gy,
           const double* restrict wflip, double* restrict gx, double* restrict gw,
           double* restrict gb, double* restrict xs, double* restrict gys),
          (g, x, gy, wflip, gx, gw, gb, xs, gys))

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif /* CNNFRAME_DEPTHWISE_H */
