/* Winograd F(2x2, 3x3) and F(4x4, 3x3) tile transforms over a row of tiles, vectorised
   across tiles (cnnframe_ext/winograd.pyx).  restrict: the transformed planes never
   alias the input rows.  One version per instruction-set level (simd.h:
   CNNF_MULTIVERSION).

   F(4x4, 3x3) works on 6x6 input tiles at a stride of 4, 36 products per tile.  The
   padded image is stored phase-split - row[q*Q + u] holds column 4u + q - so that the
   six columns 4tw..4tw+5 of tile tw are contiguous across tiles: column c of every tile
   in a row is the run starting at (c % 4) * Q + c / 4.

   Defines, for float (_f) and double (_d):
     input_row_f/_d, output_row_f/_d, grad_row_f/_d                 (F(2x2, 3x3))
     phase_split_row_f/_d, input43_row_f/_d, output43_row_f/_d, grad43_row_f/_d
                                                                     (F(4x4, 3x3))
   each dispatching to its _avx512, _avx2 and _generic version. */
#ifndef CNNFRAME_WINOGRAD_H
#define CNNFRAME_WINOGRAD_H

#include "simd.h"

/* F(4x4, 3x3)'s 1-D transforms: B^T (6 -> 6) of the input, A^T (6 -> 4) of the products,
   and the weight gradient's A (4 -> 6) of grad_y. */
#define CNNF_BT6(x0, x1, x2, x3, x4, x5, o0, o1, o2, o3, o4, o5)                         \
    o0 = 4 * (x0) - 5 * (x2) + (x4);                                                    \
    o1 = (x3) + (x4) - 4 * ((x1) + (x2));                                                \
    o2 = 4 * ((x1) - (x2)) + (x4) - (x3);                                                \
    o3 = 2 * ((x3) - (x1)) + (x4) - (x2);                                                \
    o4 = 2 * ((x1) - (x3)) + (x4) - (x2);                                                \
    o5 = 4 * (x1) - 5 * (x3) + (x5);
#define CNNF_AT6(x0, x1, x2, x3, x4, x5, o0, o1, o2, o3)                                 \
    o0 = (x0) + (x1) + (x2) + (x3) + (x4);                                               \
    o1 = ((x1) - (x2)) + 2 * ((x3) - (x4));                                              \
    o2 = ((x1) + (x2)) + 4 * ((x3) + (x4));                                              \
    o3 = ((x1) - (x2)) + 8 * ((x3) - (x4)) + (x5);
#define CNNF_A6(x0, x1, x2, x3, o0, o1, o2, o3, o4, o5)                                   \
    o0 = (x0); o1 = (x0) + (x1) + (x2) + (x3); o2 = (x0) - (x1) + (x2) - (x3);            \
    o3 = (x0) + 2 * (x1) + 4 * (x2) + 8 * (x3); o4 = (x0) - 2 * (x1) + 4 * (x2) - 8 * (x3); \
    o5 = (x3);
/* Their columns and rows of one tile, on the locals t<row><col>, a<row><col> and
   c<row><col> of the functions in winograd_typed.h. */
#define CNNF_IN43_COL(k, off)                                                            \
    CNNF_BT6(r0[(off) + tw], r1[(off) + tw], r2[(off) + tw], r3[(off) + tw],             \
             r4[(off) + tw], r5[(off) + tw], t0##k, t1##k, t2##k, t3##k, t4##k, t5##k)
#define CNNF_IN43_ROW(i)                                                                 \
    CNNF_BT6(t##i##0, t##i##1, t##i##2, t##i##3, t##i##4, t##i##5,                       \
             v[(6*i+0)*s + tw], v[(6*i+1)*s + tw], v[(6*i+2)*s + tw],                    \
             v[(6*i+3)*s + tw], v[(6*i+4)*s + tw], v[(6*i+5)*s + tw])
#define CNNF_OUT43_COL(j)                                                                \
    CNNF_AT6(m[(0+j)*s + tw], m[(6+j)*s + tw], m[(12+j)*s + tw], m[(18+j)*s + tw],       \
             m[(24+j)*s + tw], m[(30+j)*s + tw], a0##j, a1##j, a2##j, a3##j)
#define CNNF_OUT43_ROW(i)                                                                \
    CNNF_AT6(a##i##0, a##i##1, a##i##2, a##i##3, a##i##4, a##i##5, o0, o1, o2, o3)       \
    y##i[4*tw] = o0 + bias; y##i[4*tw+1] = o1 + bias;                                    \
    y##i[4*tw+2] = o2 + bias; y##i[4*tw+3] = o3 + bias;
#define CNNF_GRAD43_COL(k)                                                               \
    CNNF_A6(y0[4*tw+k], y1[4*tw+k], y2[4*tw+k], y3[4*tw+k], c0##k, c1##k, c2##k, c3##k,   \
            c4##k, c5##k)
#define CNNF_GRAD43_ROW(i)                                                               \
    CNNF_A6(c##i##0, c##i##1, c##i##2, c##i##3, z[(6*i+0)*s + tw], z[(6*i+1)*s + tw],     \
            z[(6*i+2)*s + tw], z[(6*i+3)*s + tw], z[(6*i+4)*s + tw], z[(6*i+5)*s + tw])

/* The transforms' code, once per element type: winograd_typed.h names its functions
   after the macros defined here. */
#define WG_T float
#define WG_INPUT_ROW input_row_f_body
#define WG_OUTPUT_ROW output_row_f_body
#define WG_GRAD_ROW grad_row_f_body
#define WG_PHASE_SPLIT_ROW phase_split_row_f_body
#define WG_INPUT43_ROW input43_row_f_body
#define WG_OUTPUT43_ROW output43_row_f_body
#define WG_GRAD43_ROW grad43_row_f_body
#include "winograd_typed.h"

#define WG_T double
#define WG_INPUT_ROW input_row_d_body
#define WG_OUTPUT_ROW output_row_d_body
#define WG_GRAD_ROW grad_row_d_body
#define WG_PHASE_SPLIT_ROW phase_split_row_d_body
#define WG_INPUT43_ROW input43_row_d_body
#define WG_OUTPUT43_ROW output43_row_d_body
#define WG_GRAD43_ROW grad43_row_d_body
#include "winograd_typed.h"

/* input_row_f and _d (and their _avx512, _avx2, _generic versions), and so on */
CNNF_MULTIVERSION(input_row_f, (const float* restrict r0, const float* restrict r1,
                                const float* restrict r2, const float* restrict r3,
                                int tiles_w, float* restrict v, ptrdiff_t s),
                  (r0, r1, r2, r3, tiles_w, v, s))
CNNF_MULTIVERSION(input_row_d, (const double* restrict r0, const double* restrict r1,
                                const double* restrict r2, const double* restrict r3,
                                int tiles_w, double* restrict v, ptrdiff_t s),
                  (r0, r1, r2, r3, tiles_w, v, s))
CNNF_MULTIVERSION(output_row_f, (const float* restrict m, ptrdiff_t s, int tiles_w, float bias,
                                 float* restrict y0, float* restrict y1),
                  (m, s, tiles_w, bias, y0, y1))
CNNF_MULTIVERSION(output_row_d, (const double* restrict m, ptrdiff_t s, int tiles_w,
                                 double bias, double* restrict y0, double* restrict y1),
                  (m, s, tiles_w, bias, y0, y1))
CNNF_MULTIVERSION(grad_row_f, (const float* restrict y0, const float* restrict y1, int tiles_w,
                               float* restrict z, ptrdiff_t s),
                  (y0, y1, tiles_w, z, s))
CNNF_MULTIVERSION(grad_row_d, (const double* restrict y0, const double* restrict y1,
                               int tiles_w, double* restrict z, ptrdiff_t s),
                  (y0, y1, tiles_w, z, s))
CNNF_MULTIVERSION(phase_split_row_f, (const float* restrict src, int W, int pw, ptrdiff_t Q,
                                      float* restrict dst),
                  (src, W, pw, Q, dst))
CNNF_MULTIVERSION(phase_split_row_d, (const double* restrict src, int W, int pw, ptrdiff_t Q,
                                      double* restrict dst),
                  (src, W, pw, Q, dst))
CNNF_MULTIVERSION(input43_row_f, (const float* restrict r0, const float* restrict r1,
                                  const float* restrict r2, const float* restrict r3,
                                  const float* restrict r4, const float* restrict r5,
                                  ptrdiff_t Q, int tiles_w, float* restrict v, ptrdiff_t s),
                  (r0, r1, r2, r3, r4, r5, Q, tiles_w, v, s))
CNNF_MULTIVERSION(input43_row_d, (const double* restrict r0, const double* restrict r1,
                                  const double* restrict r2, const double* restrict r3,
                                  const double* restrict r4, const double* restrict r5,
                                  ptrdiff_t Q, int tiles_w, double* restrict v, ptrdiff_t s),
                  (r0, r1, r2, r3, r4, r5, Q, tiles_w, v, s))
CNNF_MULTIVERSION(output43_row_f, (const float* restrict m, ptrdiff_t s, int tiles_w,
                                   float bias, float* restrict y0, float* restrict y1,
                                   float* restrict y2, float* restrict y3),
                  (m, s, tiles_w, bias, y0, y1, y2, y3))
CNNF_MULTIVERSION(output43_row_d, (const double* restrict m, ptrdiff_t s, int tiles_w,
                                   double bias, double* restrict y0, double* restrict y1,
                                   double* restrict y2, double* restrict y3),
                  (m, s, tiles_w, bias, y0, y1, y2, y3))
CNNF_MULTIVERSION(grad43_row_f, (const float* restrict y0, const float* restrict y1,
                                 const float* restrict y2, const float* restrict y3,
                                 int tiles_w, float* restrict z, ptrdiff_t s),
                  (y0, y1, y2, y3, tiles_w, z, s))
CNNF_MULTIVERSION(grad43_row_d, (const double* restrict y0, const double* restrict y1,
                                 const double* restrict y2, const double* restrict y3,
                                 int tiles_w, double* restrict z, ptrdiff_t s),
                  (y0, y1, y2, y3, tiles_w, z, s))

#endif /* CNNFRAME_WINOGRAD_H */
