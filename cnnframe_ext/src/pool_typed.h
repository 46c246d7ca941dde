/* The vectorised pooling kernels' code for one element type, included by pool.h once per
   type with POOL_T (the type), POOL_SELECT (its branch-free select) and the names of the
   functions defined here (MAX_2X2_SPAN, MAX_POOL_2X2, MAX_POOL_INSIDE, AVG_POOL_2X2,
   AVG_UNPOOL_2X2) defined; it undefines them again.  No include guard: meant to be
   included more than once. */

/* 2x2 windows, stride 2, windows [j0, j0 + n) of input rows r0, r1 (W: the row length,
   i0: r0's index in the plane): the first maximum of each row's pair, then of the two;
   the same element as the row-major scan (ties keep the earlier one). */
CNNF_INLINE void MAX_2X2_SPAN(const POOL_T* restrict r0, const POOL_T* restrict r1,
                              long long i0, long long W, POOL_T* restrict yr,
                              long long* restrict ar, ptrdiff_t j0, ptrdiff_t n) {
    CNNF_SIMD
    for (ptrdiff_t j = j0; j < j0 + n; j++) {
        POOL_T v0 = r0[2 * j], v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];
        int t1 = CNNF_TAKES(v1, v0), t3 = CNNF_TAKES(v3, v2);
        POOL_T m0 = t1 ? v1 : v0, m1 = t3 ? v3 : v2;
        int tb = CNNF_TAKES(m1, m0);
        yr[j] = tb ? m1 : m0;
        ar[j] = i0 + 2 * j + (tb ? W + t3 : t1);
    }
}

/* 2x2 max pooling, stride 2, of a plane x (2*OH.., W) into y and its argmax a (OH, OW). */
CNNF_INLINE void MAX_POOL_2X2(const POOL_T* restrict x, int W, POOL_T* restrict y,
                              long long* restrict a, int OH, int OW) {
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        const POOL_T* r0 = x + 2 * oh * W;
        if (OW >= CNNF_VECTOR) {
            CNNF_FOR_SPANS(OW, j0, n)
                MAX_2X2_SPAN(r0, r0 + W, 2 * oh * W, W, y + oh * OW, a + oh * OW, j0, n);
        } else {
            /* A row shorter than a vector: scalar, selecting by bit masks (GCC would
               branch on each select of the vector loop's scalar version). */
            const POOL_T* r1 = r0 + W;
            for (ptrdiff_t j = 0; j < OW; j++) {
                POOL_T v0 = r0[2 * j], v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];
                int t1 = CNNF_TAKES(v1, v0), t3 = CNNF_TAKES(v3, v2);
                POOL_T m0 = POOL_SELECT(t1, v1, v0), m1 = POOL_SELECT(t3, v3, v2);
                int tb = CNNF_TAKES(m1, m0);
                y[oh * OW + j] = POOL_SELECT(tb, m1, m0);
                a[oh * OW + j] = 2 * oh * W + 2 * j + t1 + tb * (W + t3 - t1);
            }
        }
    }
}

/* Windows that lie wholly inside the plane (all of an unpadded pooling, the interior of
   a padded one): the OHr x OWr windows whose first starts at input (h0, w0), written to
   y and a with row stride ys.  One pass over a span of windows per window element, in
   the generic loop's order. */
CNNF_INLINE void MAX_POOL_INSIDE(const POOL_T* restrict x, int W, POOL_T* restrict y,
                                 long long* restrict a, int ys, int h0, int w0, int OHr,
                                 int OWr, int kh, int kw, int sh, int sw) {
    for (ptrdiff_t r = 0; r < OHr; r++) {
        POOL_T* restrict yr = y + r * ys;
        long long* restrict ar = a + r * ys;
        long long i00 = (h0 + r * sh) * W + w0;
        CNNF_FOR_SPANS(OWr, j0, n) {
            CNNF_SIMD
            for (ptrdiff_t j = j0; j < j0 + n; j++) {
                yr[j] = x[i00 + j * sw];
                ar[j] = i00 + j * sw;
            }
            for (int dh = 0; dh < kh; dh++) {
                for (int dw = (dh == 0); dw < kw; dw++) {
                    long long i0 = i00 + (long long) dh * W + dw;
                    CNNF_SIMD
                    for (ptrdiff_t j = j0; j < j0 + n; j++) {
                        long long i = i0 + j * sw;
                        POOL_T v = x[i], best = yr[j];
                        int take = CNNF_TAKES(v, best);
                        yr[j] = take ? v : best;
                        ar[j] = take ? i : ar[j];
                    }
                }
            }
        }
    }
}

/* 2x2 stride-2 average pooling, summed in the generic loop's order. */
CNNF_INLINE void AVG_POOL_2X2(const POOL_T* restrict x, int W, POOL_T* restrict y, int OH,
                              int OW) {
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        const POOL_T* restrict r0 = x + 2 * oh * W;
        const POOL_T* restrict r1 = r0 + W;
        POOL_T* restrict yr = y + oh * OW;
        CNNF_FOR_SPANS(OW, j0, n) {
            CNNF_SIMD
            for (ptrdiff_t j = j0; j < j0 + n; j++) {
                POOL_T acc = (POOL_T) 0 + r0[2 * j];
                acc = acc + r0[2 * j + 1];
                acc = acc + r1[2 * j];
                acc = acc + r1[2 * j + 1];
                yr[j] = acc / 4;
            }
        }
    }
}

/* Its gradient, each grad_x element written once: g / 4 to the four cells (as
   0 + g / 4, the generic loop's accumulation onto zeros), zeros to a last odd row or
   column. */
CNNF_INLINE void AVG_UNPOOL_2X2(const POOL_T* restrict g, int OH, int OW, int H, int W,
                                POOL_T* restrict x) {
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        POOL_T* restrict x0 = x + 2 * oh * W;
        POOL_T* restrict x1 = x0 + W;
        const POOL_T* restrict gr = g + oh * OW;
        CNNF_FOR_SPANS(OW, j0, n) {
            CNNF_SIMD
            for (ptrdiff_t j = j0; j < j0 + n; j++) {
                POOL_T v = (POOL_T) 0 + gr[j] / 4;
                x0[2 * j] = v;
                x0[2 * j + 1] = v;
                x1[2 * j] = v;
                x1[2 * j + 1] = v;
            }
        }
        if (W & 1) {
            x0[W - 1] = 0;
            x1[W - 1] = 0;
        }
    }
    if (H & 1)
        memset(x + (ptrdiff_t) (H - 1) * W, 0, (size_t) W * sizeof(POOL_T));
}

#undef POOL_T
#undef POOL_SELECT
#undef MAX_2X2_SPAN
#undef MAX_POOL_2X2
#undef MAX_POOL_INSIDE
#undef AVG_POOL_2X2
#undef AVG_UNPOOL_2X2
