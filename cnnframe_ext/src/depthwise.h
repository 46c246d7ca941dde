/* Depthwise convolution (groups == C, each input channel with its own M filters), one
   plane at a time.  A depthwise layer does KH*KW multiply-adds per output element, so it
   is bound by memory, not arithmetic: the plane kernels here make one pass over their
   input and output planes, which stay in L1/L2, and leave the vector width to the
   compiler (omp simd over a row).  Padding is applied by copying a plane into a zeroed
   scratch plane first (depthwise.pyx), so the loops have no bounds checks.

   The summation order of every output element is fixed (bias, then the taps in row-major
   order; a weight gradient: per output row, then rows in order), so results do not
   depend on the thread count.

   Defines, for float (_f) and double (_d), each dispatching to its _avx512, _avx2 and
   _generic version (simd.h: CNNF_MULTIVERSION):
     dw_forward_plane_f/_d, dw_grad_input_plane_f/_d, dw_grad_weight_plane_f/_d
   and the helpers dw_pad_plane_f/_d, dw_unpad_plane_f/_d. */
#ifndef CNNFRAME_DEPTHWISE_H
#define CNNFRAME_DEPTHWISE_H

#include <string.h>

#include "simd.h"

#if CNNF_VECTOR_EXTENSIONS
#define CNNF_DW_SIMD _Pragma("omp simd")
#define CNNF_DW_SIMD_SUM(s) _Pragma("omp simd reduction(+:s)")
#else
#define CNNF_DW_SIMD
#define CNNF_DW_SIMD_SUM(s)
#endif

#define DW_T float
#define DW_PAD_PLANE dw_pad_plane_f
#define DW_UNPAD_PLANE dw_unpad_plane_f
#define DW_FORWARD_PLANE dw_forward_plane_f_body
#define DW_GRAD_INPUT_PLANE dw_grad_input_plane_f_body
#define DW_GRAD_WEIGHT_PLANE dw_grad_weight_plane_f_body
#include "depthwise_typed.h"

#define DW_T double
#define DW_PAD_PLANE dw_pad_plane_d
#define DW_UNPAD_PLANE dw_unpad_plane_d
#define DW_FORWARD_PLANE dw_forward_plane_d_body
#define DW_GRAD_INPUT_PLANE dw_grad_input_plane_d_body
#define DW_GRAD_WEIGHT_PLANE dw_grad_weight_plane_d_body
#include "depthwise_typed.h"

#define DW_GEOMETRY_PARAMS int KH, int KW, int sh, int sw, int dh, int dw
#define DW_GEOMETRY_ARGS KH, KW, sh, sw, dh, dw

/* Defines dw_forward_plane_f (and its _avx512/_avx2/_generic versions). */
CNNF_MULTIVERSION(dw_forward_plane_f,
                  (const float* xp, ptrdiff_t WP, const float* w, DW_GEOMETRY_PARAMS,
                   float bias, float* y, ptrdiff_t OH, ptrdiff_t OW),
                  (xp, WP, w, DW_GEOMETRY_ARGS, bias, y, OH, OW))
/* Defines dw_forward_plane_d. */
CNNF_MULTIVERSION(dw_forward_plane_d,
                  (const double* xp, ptrdiff_t WP, const double* w, DW_GEOMETRY_PARAMS,
                   double bias, double* y, ptrdiff_t OH, ptrdiff_t OW),
                  (xp, WP, w, DW_GEOMETRY_ARGS, bias, y, OH, OW))
/* Defines dw_grad_input_plane_f. */
CNNF_MULTIVERSION(dw_grad_input_plane_f,
                  (const float* gy, ptrdiff_t OH, ptrdiff_t OW, const float* w,
                   DW_GEOMETRY_PARAMS, float* gxp, ptrdiff_t WP),
                  (gy, OH, OW, w, DW_GEOMETRY_ARGS, gxp, WP))
/* Defines dw_grad_input_plane_d. */
CNNF_MULTIVERSION(dw_grad_input_plane_d,
                  (const double* gy, ptrdiff_t OH, ptrdiff_t OW, const double* w,
                   DW_GEOMETRY_PARAMS, double* gxp, ptrdiff_t WP),
                  (gy, OH, OW, w, DW_GEOMETRY_ARGS, gxp, WP))
/* Defines dw_grad_weight_plane_f. */
CNNF_MULTIVERSION(dw_grad_weight_plane_f,
                  (const float* xp, ptrdiff_t WP, const float* gy, ptrdiff_t OH,
                   ptrdiff_t OW, DW_GEOMETRY_PARAMS, float* gw),
                  (xp, WP, gy, OH, OW, DW_GEOMETRY_ARGS, gw))
/* Defines dw_grad_weight_plane_d. */
CNNF_MULTIVERSION(dw_grad_weight_plane_d,
                  (const double* xp, ptrdiff_t WP, const double* gy, ptrdiff_t OH,
                   ptrdiff_t OW, DW_GEOMETRY_PARAMS, double* gw),
                  (xp, WP, gy, OH, OW, DW_GEOMETRY_ARGS, gw))

#endif /* CNNFRAME_DEPTHWISE_H */
