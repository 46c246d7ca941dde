/* The depthwise plane kernels' code for one element type, included by depthwise.h once per
   type with DW_T (the type) and the names of the functions defined here (DW_PAD_PLANE,
   DW_UNPAD_PLANE, DW_FORWARD_PLANE, DW_GRAD_INPUT_PLANE, DW_GRAD_WEIGHT_PLANE) defined; it
   undefines them again.  No include guard: meant to be included more than once.

   Planes are row-major.  A padded plane xp is (H + 2 ph) x (W + 2 pw), row length WP.
   Indices are ptrdiff_t: Python builds extensions with -fwrapv, under which int
   arithmetic may wrap and GCC then vectorises nothing. */

/* xp = the plane x (H, W) with ph zero rows above and below and pw zero columns left and
   right. */
static void DW_PAD_PLANE(const DW_T* restrict x, ptrdiff_t H, ptrdiff_t W, ptrdiff_t ph,
                         ptrdiff_t pw, DW_T* restrict xp) {
    ptrdiff_t WP = W + 2 * pw;
    memset(xp, 0, (size_t) (ph * WP) * sizeof(DW_T));
    for (ptrdiff_t i = 0; i < H; i++) {
        DW_T* restrict row = xp + (ph + i) * WP;
        memset(row, 0, (size_t) pw * sizeof(DW_T));
        memcpy(row + pw, x + i * W, (size_t) W * sizeof(DW_T));
        memset(row + pw + W, 0, (size_t) pw * sizeof(DW_T));
    }
    memset(xp + (ph + H) * WP, 0, (size_t) (ph * WP) * sizeof(DW_T));
}

/* x (H, W) = the interior of the padded plane xp: the inverse of DW_PAD_PLANE. */
static void DW_UNPAD_PLANE(const DW_T* restrict xp, ptrdiff_t H, ptrdiff_t W, ptrdiff_t ph,
                           ptrdiff_t pw, DW_T* restrict x) {
    ptrdiff_t WP = W + 2 * pw;
    for (ptrdiff_t i = 0; i < H; i++)
        memcpy(x + i * W, xp + (ph + i) * WP + pw, (size_t) W * sizeof(DW_T));
}

/* y (OH, OW) = bias + correlation of the padded plane xp (row length WP) with the
   KH x KW filter w, stride (sh, sw), dilation (dh, dw).  One output row at a time: it
   stays in L1 while every tap adds its weighted, shifted input row to it. */
CNNF_INLINE void DW_FORWARD_PLANE(const DW_T* restrict xp, ptrdiff_t WP,
                                  const DW_T* restrict w, int KH, int KW, int sh, int sw,
                                  int dh, int dw, DW_T bias, DW_T* restrict y, ptrdiff_t OH,
                                  ptrdiff_t OW) {
    for (ptrdiff_t i = 0; i < OH; i++) {
        DW_T* restrict yr = y + i * OW;
        CNNF_DW_SIMD
        for (ptrdiff_t j = 0; j < OW; j++) yr[j] = bias;
        for (ptrdiff_t a = 0; a < KH; a++) {
            for (ptrdiff_t b = 0; b < KW; b++) {
                const DW_T* restrict xr = xp + (i * sh + a * dh) * WP + b * dw;
                DW_T wv = w[a * KW + b];
                if (sw == 1) {
                    CNNF_DW_SIMD
                    for (ptrdiff_t j = 0; j < OW; j++) yr[j] += wv * xr[j];
                } else {
                    CNNF_DW_SIMD
                    for (ptrdiff_t j = 0; j < OW; j++) yr[j] += wv * xr[j * sw];
                }
            }
        }
    }
}

/* gxp (padded, row length WP) += the gradient of DW_FORWARD_PLANE's output gy (OH, OW)
   with respect to its input: every output element's gradient scattered back, weighted,
   to the inputs of its window.  The caller zeroes gxp and unpads it. */
CNNF_INLINE void DW_GRAD_INPUT_PLANE(const DW_T* restrict gy, ptrdiff_t OH, ptrdiff_t OW,
                                     const DW_T* restrict w, int KH, int KW, int sh, int sw,
                                     int dh, int dw, DW_T* restrict gxp, ptrdiff_t WP) {
    for (ptrdiff_t i = 0; i < OH; i++) {
        const DW_T* restrict gr = gy + i * OW;
        for (ptrdiff_t a = 0; a < KH; a++) {
            for (ptrdiff_t b = 0; b < KW; b++) {
                DW_T* restrict xr = gxp + (i * sh + a * dh) * WP + b * dw;
                DW_T wv = w[a * KW + b];
                if (sw == 1) {
                    CNNF_DW_SIMD
                    for (ptrdiff_t j = 0; j < OW; j++) xr[j] += wv * gr[j];
                } else {
                    /* Stride > 1: a row's targets are sw apart and never collide. */
                    CNNF_DW_SIMD
                    for (ptrdiff_t j = 0; j < OW; j++) xr[j * sw] += wv * gr[j];
                }
            }
        }
    }
}

/* gw (KH * KW) += the gradient of DW_FORWARD_PLANE's output gy (OH, OW) with respect to
   its filter: for each tap, the dot product of gy with the input window it multiplied
   (a sum per output row, then over rows in order). */
CNNF_INLINE void DW_GRAD_WEIGHT_PLANE(const DW_T* restrict xp, ptrdiff_t WP,
                                      const DW_T* restrict gy, ptrdiff_t OH, ptrdiff_t OW,
                                      int KH, int KW, int sh, int sw, int dh, int dw,
                                      DW_T* restrict gw) {
    for (ptrdiff_t a = 0; a < KH; a++) {
        for (ptrdiff_t b = 0; b < KW; b++) {
            DW_T total = 0;
            for (ptrdiff_t i = 0; i < OH; i++) {
                const DW_T* restrict xr = xp + (i * sh + a * dh) * WP + b * dw;
                const DW_T* restrict gr = gy + i * OW;
                DW_T s = 0;
                if (sw == 1) {
                    CNNF_DW_SIMD_SUM(s)
                    for (ptrdiff_t j = 0; j < OW; j++) s += gr[j] * xr[j];
                } else {
                    CNNF_DW_SIMD_SUM(s)
                    for (ptrdiff_t j = 0; j < OW; j++) s += gr[j] * xr[j * sw];
                }
                total += s;
            }
            gw[a * KW + b] += total;
        }
    }
}

#undef DW_T
#undef DW_PAD_PLANE
#undef DW_UNPAD_PLANE
#undef DW_FORWARD_PLANE
#undef DW_GRAD_INPUT_PLANE
#undef DW_GRAD_WEIGHT_PLANE
