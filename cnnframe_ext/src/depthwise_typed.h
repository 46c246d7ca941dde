/* The depthwise plane kernels' code for one element type and vector width, included by
   depthwise.h once per pair with DW_T (the element type), DW_V (a vector of DW_L of
   them; DW_T itself when DW_L is 1), DW_UV and DW_IV (its unaligned view and integer
   twin, when DW_L > 1) and DW_SUFFIX defined; it undefines them again.  No include
   guard: meant to be included more than once.

   Indices are ptrdiff_t: Python builds extensions with -fwrapv, under which int
   arithmetic may wrap and GCC then vectorises nothing. */

#define DW_FN(name) CNNF_CAT(name, DW_SUFFIX)
#if DW_L > 1
#define DW_LOAD(p) (*(const DW_UV*) (p))
#define DW_STORE(p, v) (*(DW_UV*) (p) = (v))
#define DW_SPLAT(s) ((s) - (DW_V){0})
#else
#define DW_LOAD(p) (*(p))
#define DW_STORE(p, v) (*(p) = (v))
#define DW_SPLAT(s) (s)
#endif

/* d[0:n] = s[0:n], a vector at a time (not a libc call per row). */
CNNF_INLINE void DW_FN(dw_copy_run)(DW_T* restrict d, const DW_T* restrict s, ptrdiff_t n) {
#if DW_L > 1
    ptrdiff_t j = 0;
    for (; j + DW_L <= n; j += DW_L) {
        DW_OPAQUE(j);
        DW_STORE(d + j, DW_LOAD(s + j));
    }
    for (; j < n; j++) {
        DW_OPAQUE(j);
        d[j] = s[j];
    }
#else
    memcpy(d, s, (size_t) n * sizeof(DW_T));
#endif
}

/* The sum of v's lanes, in lane order. */
CNNF_INLINE DW_T DW_FN(dw_hsum)(DW_V v) {
#if DW_L > 1
    DW_T s = v[0];
    for (int k = 1; k < DW_L; k++) s += v[k];
    return s;
#else
    return v;
#endif
}

/* xs = the x copy of the plane x (H, W): each row split into its sw phases (depthwise.h).
   Writes the data positions only. */
CNNF_INLINE void DW_FN(dw_split_rows)(const dw_geometry* g, const DW_T* restrict x,
                                      DW_T* restrict xs) {
    const ptrdiff_t H = g->H, W = g->W, pw = g->pw, sw = g->sw, WQ = g->WQ, RS = g->RS;
    if (sw == 1) {
        for (ptrdiff_t r = 0; r < H; r++) DW_FN(dw_copy_run)(xs + r * RS + pw, x + r * W, W);
        return;
    }
    /* a phase at a time, so that its offsets (two divisions) are worked out once, not
       once per row: phase q holds the input columns c0 + k * sw (n of them) at
       k + (c0 + pw) / sw, where c0 is the first column with (c0 + pw) % sw == q */
    for (ptrdiff_t q = 0; q < sw; q++) {
        const ptrdiff_t c0 = ((q - pw) % sw + sw) % sw;
        const ptrdiff_t n = c0 < W ? (W - c0 + sw - 1) / sw : 0;
        const ptrdiff_t off = q * WQ + (c0 + pw) / sw;
        for (ptrdiff_t r = 0; r < H; r++) {
            DW_T* restrict dq = xs + r * RS + off;
            const DW_T* restrict sq = x + r * W + c0;
            if (sw == 2) {
                for (ptrdiff_t k = 0; k < n; k++) dq[k] = sq[2 * k];
            } else {
                for (ptrdiff_t k = 0; k < n; k++) dq[k] = sq[k * sw];
            }
        }
    }
}

/* gys = the grad_y copies of the M planes gy (M, OH, OW): row i of plane k holds gy[k, i]
   at columns L0 + j * sw, those inside [0, WD) (depthwise.h).  Writes the data only. */
CNNF_INLINE void DW_FN(dw_spread_rows)(const dw_geometry* g, const DW_T* restrict gy,
                                       DW_T* restrict gys) {
    const ptrdiff_t OW = g->OW, sw = g->sw, L0 = g->L0, WD = g->WD, RSg = g->RSg;
    /* columns j0 <= j < j1 land inside the row */
    ptrdiff_t j0 = L0 >= 0 ? 0 : (-L0 + sw - 1) / sw;
    ptrdiff_t j1 = WD - 1 - L0 < 0 ? 0 : (WD - 1 - L0) / sw + 1;
    if (j1 > OW) j1 = OW;
    if (j1 <= j0) return;
    for (ptrdiff_t r = 0; r < g->M * g->OH; r++) {
        const DW_T* restrict s = gy + r * OW;
        DW_T* restrict d = gys + r * RSg + L0;
        if (sw == 1) {
            DW_FN(dw_copy_run)(d + j0, s + j0, j1 - j0);
        } else if (sw == 2) {
            for (ptrdiff_t j = j0; j < j1; j++) d[2 * j] = s[j];
        } else {
            for (ptrdiff_t j = j0; j < j1; j++) d[j * sw] = s[j];
        }
    }
}

/* One block of NV output vectors, out[0:np] (np <= NV * DW_L):
       out[j] = init + sum over sources s, taps (a, b) of f[s, a, b] * V_s[u0 + a*dh][j + coff[b]]
   where row u of the virtual plane V_s is row (u / step) of the copy src + s * PS when
   u is a multiple of step below step * nrows, and zero otherwise (not read).  src points
   at the block's first column.  K: 3 or 5 for a K x K filter with its taps unrolled, 0
   for any KH x KW. */
CNNF_INLINE void DW_FN(dw_corr_block)(const int NV, const int K, const DW_T* restrict src,
                                      ptrdiff_t nsrc, ptrdiff_t PS, ptrdiff_t RS,
                                      ptrdiff_t nrows, ptrdiff_t step, ptrdiff_t u0,
                                      const DW_T* restrict f, ptrdiff_t KH_, ptrdiff_t KW_,
                                      ptrdiff_t dh, const ptrdiff_t* restrict coff, DW_T init,
                                      DW_T* restrict out, ptrdiff_t np) {
    const ptrdiff_t KH = K ? K : KH_, KW = K ? K : KW_;
    DW_V acc[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[v] = DW_SPLAT(init);
    for (ptrdiff_t s = 0; s < nsrc; s++) {
        const DW_T* restrict plane = src + s * PS;
        const DW_T* restrict fs = f + s * KH * KW;
        for (ptrdiff_t a = 0; a < KH; a++) {
            ptrdiff_t u = u0 + a * dh, q;
            if (u < 0) continue;
            if (step == 1) {
                q = u;
            } else if (step == 2) {
                if (u & 1) continue;
                q = u >> 1;
            } else {
                q = u / step;
                if (q * step != u) continue;
            }
            if (q >= nrows) break;
            const DW_T* restrict row = plane + q * RS;
#pragma GCC unroll 5
            for (ptrdiff_t b = 0; b < KW; b++) {
                const DW_V wv = DW_SPLAT(fs[a * KW + b]);
                const DW_T* restrict p = row + coff[b];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) acc[v] += wv * DW_LOAD(p + v * DW_L);
            }
        }
    }
    if (np == NV * DW_L) {
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) DW_STORE(out + v * DW_L, acc[v]);
    } else {
        /* a row's tail: through tmp, without taking acc's address */
        DW_T tmp[4 * DW_L];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) DW_STORE(tmp + v * DW_L, acc[v]);
        for (ptrdiff_t j = 0; j < np; j++) out[j] = tmp[j];
    }
}

/* Four output rows of one column block, out[r * OW + (0 : np)] for r < 4 (np <= DW_L),
   row r's virtual rows starting at u0 + r * rs: the same sums as dw_corr_block's, in the
   same order, for a single source read at every row (step 1) whose rows u0 + r * rs +
   a * dh all exist.  A narrow plane (under 4 vectors a row) blocks rows, not columns,
   so that four sums are in flight rather than one chain of KH * KW multiply-adds. */
CNNF_INLINE void DW_FN(dw_corr_rows4)(const int K, const DW_T* restrict src, ptrdiff_t RS,
                                      ptrdiff_t u0, ptrdiff_t rs, const DW_T* restrict f,
                                      ptrdiff_t KH_, ptrdiff_t KW_, ptrdiff_t dh,
                                      const ptrdiff_t* restrict coff, DW_T init,
                                      DW_T* restrict out, ptrdiff_t OW, ptrdiff_t np) {
    const ptrdiff_t KH = K ? K : KH_, KW = K ? K : KW_, rstep = rs * RS;
    DW_V acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) acc[r] = DW_SPLAT(init);
    for (ptrdiff_t a = 0; a < KH; a++) {
        const DW_T* restrict row = src + (u0 + a * dh) * RS;
#pragma GCC unroll 5
        for (ptrdiff_t b = 0; b < KW; b++) {
            const DW_V wv = DW_SPLAT(f[a * KW + b]);
            const DW_T* restrict p = row + coff[b];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) acc[r] += wv * DW_LOAD(p + r * rstep);
        }
    }
    if (np == DW_L) {
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) DW_STORE(out + r * OW, acc[r]);
    } else {
        DW_T tmp[4 * DW_L];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) DW_STORE(tmp + r * DW_L, acc[r]);
        for (int r = 0; r < 4; r++)
            for (ptrdiff_t j = 0; j < np; j++) out[r * OW + j] = tmp[r * DW_L + j];
    }
}

/* out (OH, OW) = init + the correlation of dw_corr_block for every output row i, whose
   virtual rows start at u0 = i * rs - T: 4-vector blocks, then single vectors, then a
   partial one; on a narrow plane, 4-row blocks (dw_corr_rows4) where they apply. */
CNNF_INLINE void DW_FN(dw_corr_plane)(const int K, const DW_T* restrict src, ptrdiff_t nsrc,
                                      ptrdiff_t PS, ptrdiff_t RS, ptrdiff_t nrows,
                                      ptrdiff_t step, ptrdiff_t rs, ptrdiff_t T,
                                      const DW_T* restrict f, ptrdiff_t KH, ptrdiff_t KW,
                                      ptrdiff_t dh, const ptrdiff_t* restrict coff, DW_T init,
                                      DW_T* restrict out, ptrdiff_t OH, ptrdiff_t OW) {
    const int narrow = nsrc == 1 && step == 1 && OW < 4 * DW_L;
    const ptrdiff_t reach = ((K ? K : KH) - 1) * dh;
    for (ptrdiff_t i = 0; i < OH;) {
        const ptrdiff_t u0 = i * rs - T;
        DW_T* restrict o = out + i * OW;
        ptrdiff_t j = 0;
        if (narrow && i + 4 <= OH && u0 >= 0 && u0 + 3 * rs + reach < nrows) {
            for (; j < OW; j += DW_L)
                DW_FN(dw_corr_rows4)(K, src + j, RS, u0, rs, f, KH, KW, dh, coff, init, o + j,
                                     OW, OW - j < DW_L ? OW - j : DW_L);
            i += 4;
            continue;
        }
        for (; j + 4 * DW_L <= OW; j += 4 * DW_L)
            DW_FN(dw_corr_block)(4, K, src + j, nsrc, PS, RS, nrows, step, u0, f, KH, KW, dh,
                                 coff, init, o + j, 4 * DW_L);
        for (; j + DW_L <= OW; j += DW_L)
            DW_FN(dw_corr_block)(1, K, src + j, nsrc, PS, RS, nrows, step, u0, f, KH, KW, dh,
                                 coff, init, o + j, DW_L);
        if (j < OW)
            DW_FN(dw_corr_block)(1, K, src + j, nsrc, PS, RS, nrows, step, u0, f, KH, KW, dh,
                                 coff, init, o + j, OW - j);
        i++;
    }
}

/* dw_corr_plane with the 3x3 and 5x5 filters unrolled. */
CNNF_INLINE void DW_FN(dw_corr)(const DW_T* restrict src, ptrdiff_t nsrc, ptrdiff_t PS,
                                ptrdiff_t RS, ptrdiff_t nrows, ptrdiff_t step, ptrdiff_t rs,
                                ptrdiff_t T, const DW_T* restrict f, ptrdiff_t KH,
                                ptrdiff_t KW, ptrdiff_t dh, const ptrdiff_t* restrict coff,
                                DW_T init, DW_T* restrict out, ptrdiff_t OH, ptrdiff_t OW) {
    if (KH == 3 && KW == 3)
        DW_FN(dw_corr_plane)(3, src, nsrc, PS, RS, nrows, step, rs, T, f, KH, KW, dh, coff,
                             init, out, OH, OW);
    else if (KH == 5 && KW == 5)
        DW_FN(dw_corr_plane)(5, src, nsrc, PS, RS, nrows, step, rs, T, f, KH, KW, dh, coff,
                             init, out, OH, OW);
    else
        DW_FN(dw_corr_plane)(0, src, nsrc, PS, RS, nrows, step, rs, T, f, KH, KW, dh, coff,
                             init, out, OH, OW);
}

CNNF_INLINE void DW_FN(dw_forward_plane_body)(const dw_geometry* g, const DW_T* restrict x,
                                              const DW_T* restrict w,
                                              const DW_T* restrict bias, DW_T* restrict y,
                                              DW_T* restrict xs) {
    const ptrdiff_t KK = g->KH * g->KW, plane = g->OH * g->OW;
    DW_FN(dw_split_rows)(g, x, xs);
    for (ptrdiff_t k = 0; k < g->M; k++)
        DW_FN(dw_corr)(xs, 1, 0, g->RS, g->H, 1, g->sh, g->ph, w + k * KK, g->KH, g->KW,
                       g->dh, g->coff, bias ? bias[k] : 0, y + k * plane, g->OH, g->OW);
}

/* gw[b0 : b0 + NB] (one filter row a) += the taps' dot products of gy (OH, OW) with the
   x copy: NB taps' sums in registers (two sets, for even and odd vectors of a row),
   over the whole plane, then summed across lanes.  The tail vector's lanes past the
   row are zero in g and masked off in x (0 * inf would be NaN). */
CNNF_INLINE void DW_FN(dw_gw_taps)(const int NB, const dw_geometry* g,
                                   const DW_T* restrict xs, const DW_T* restrict gy,
                                   ptrdiff_t a, ptrdiff_t b0, DW_T* restrict gw) {
    const ptrdiff_t OH = g->OH, OW = g->OW, RS = g->RS;
    const ptrdiff_t* restrict coff = g->coff + b0;
    DW_V acc0[5], acc1[5];
#pragma GCC unroll 5
    for (int b = 0; b < NB; b++) acc0[b] = acc1[b] = DW_SPLAT((DW_T) 0);
    const ptrdiff_t full = OW - OW % DW_L;
#if DW_L > 1
    DW_IV mask;
    for (int l = 0; l < DW_L; l++) mask[l] = l < OW - full ? -1 : 0;
#endif
    for (ptrdiff_t i = 0; i < OH; i++) {
        ptrdiff_t u = i * g->sh + a * g->dh - g->ph;
        if (u < 0) continue;
        if (u >= g->H) break;
        const DW_T* restrict xr = xs + u * RS;
        const DW_T* restrict gr = gy + i * OW;
        ptrdiff_t j = 0;
        for (; j + 2 * DW_L <= OW; j += 2 * DW_L) {
            const DW_V g0 = DW_LOAD(gr + j), g1 = DW_LOAD(gr + j + DW_L);
#pragma GCC unroll 5
            for (int b = 0; b < NB; b++) {
                acc0[b] += g0 * DW_LOAD(xr + coff[b] + j);
                acc1[b] += g1 * DW_LOAD(xr + coff[b] + j + DW_L);
            }
        }
        if (j < full) {
            const DW_V g0 = DW_LOAD(gr + j);
#pragma GCC unroll 5
            for (int b = 0; b < NB; b++) acc0[b] += g0 * DW_LOAD(xr + coff[b] + j);
            j += DW_L;
        }
#if DW_L > 1
        if (j < OW) {
            DW_T tmp[DW_L] = {0};
            for (ptrdiff_t l = 0; l < OW - j; l++) tmp[l] = gr[j + l];
            const DW_V g1 = DW_LOAD(tmp);
#pragma GCC unroll 5
            for (int b = 0; b < NB; b++)
                acc1[b] += g1 * (DW_V) ((DW_IV) DW_LOAD(xr + coff[b] + j) & mask);
        }
#endif
    }
#pragma GCC unroll 5
    for (int b = 0; b < NB; b++) gw[b0 + b] += DW_FN(dw_hsum)(acc0[b] + acc1[b]);
}

CNNF_INLINE void DW_FN(dw_backward_plane_body)(const dw_geometry* g, const DW_T* restrict x,
                                               const DW_T* restrict gy,
                                               const DW_T* restrict wflip,
                                               DW_T* restrict gx, DW_T* restrict gw,
                                               DW_T* restrict gb, DW_T* restrict xs,
                                               DW_T* restrict gys) {
    const ptrdiff_t KH = g->KH, KW = g->KW, KK = KH * KW, plane = g->OH * g->OW;
    if (gx) {
        DW_FN(dw_spread_rows)(g, gy, gys);
        DW_FN(dw_corr)(gys, g->M, g->OH * g->RSg, g->RSg, g->OH, g->sh, 1, g->T0, wflip, KH,
                       KW, g->dh, g->coffg, 0, gx, g->H, g->W);
    }
    if (!gw) return;
    DW_FN(dw_split_rows)(g, x, xs);
    for (ptrdiff_t k = 0; k < g->M; k++) {
        const DW_T* restrict gk = gy + k * plane;
        DW_T* restrict gwk = gw + k * KK;
        for (ptrdiff_t a = 0; a < KH; a++) {
            if (KW == 3) {
                DW_FN(dw_gw_taps)(3, g, xs, gk, a, 0, gwk + a * KW);
            } else if (KW == 5) {
                DW_FN(dw_gw_taps)(5, g, xs, gk, a, 0, gwk + a * KW);
            } else {
                ptrdiff_t b = 0;
                for (; b + 4 <= KW; b += 4) DW_FN(dw_gw_taps)(4, g, xs, gk, a, b, gwk + a * KW);
                for (; b < KW; b++) DW_FN(dw_gw_taps)(1, g, xs, gk, a, b, gwk + a * KW);
            }
        }
        /* the bias gradient: the plane's sum, in the same lane order */
        DW_V s0 = DW_SPLAT((DW_T) 0);
        ptrdiff_t p = 0;
        for (; p + DW_L <= plane; p += DW_L) s0 += DW_LOAD(gk + p);
        DW_T total = DW_FN(dw_hsum)(s0);
        for (; p < plane; p++) total += gk[p];
        gb[k] += total;
    }
}

#undef DW_FN
#undef DW_LOAD
#undef DW_STORE
#undef DW_SPLAT
#undef DW_T
#undef DW_V
#undef DW_UV
#undef DW_IV
#undef DW_L
#undef DW_SUFFIX
