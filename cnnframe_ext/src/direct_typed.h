/* The direct convolution's micro-kernels for one element type and vector width, included
   by direct.h once per pair with these defined (it undefines them again):
     DC_T        the element type (float or double)
     DC_VEC      its vector type of DC_VB bytes (simd.h), DC_UVEC the unaligned view
     DC_VB       the vector width in bytes (64, 32 or 16)
     DC_MAX_ACC  the most accumulator vectors a tile may hold (FB * NV)
     DC_MAX_NV   the most pixel vectors a tile may span (NV = V * 64 / DC_VB)
   and the names of the always-inline functions defined here: DC_TAP, DC_TILE, DC_BAND,
   and, where DC_DW_BAND is defined, DC_DW_TILE and DC_DW_BAND (the weight gradient,
   whose tiles hold up to DC_DW_MAX_NF x DC_DW_MAX_NK sums).  The tile sizes FB, NV
   (or V) and K are parameters that direct.h passes as constants, so each non-inline
   kernel there is compiled for one tile size.  No include guard: meant to be included
   more than once. */

/* One tap for a tile: acc[f * NV + v] += w[f] * src[v * L ...] for FB channels, NV
   vectors of pixels. */
CNNF_INLINE void DC_TAP(const int FB, const int NV, const DC_T* restrict src,
                        const DC_T* restrict w, DC_VEC* restrict acc) {
    enum { L = DC_VB / sizeof(DC_T) };
    DC_VEC in[DC_MAX_NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) in[v] = *(const DC_UVEC*) (src + v * L);
#pragma GCC unroll 32
    for (int f = 0; f < FB; f++) {
        DC_T wf = w[f];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[f * NV + v] += wf * in[v];
    }
}

/* One tile: FB output channels x NV vectors of pixels starting at xs (band copies + p0).
   Writes channels < nf and pixels < np of y (y[f * plane + p]).  K > 0: a K x K kernel
   with its taps unrolled; K == 0: any KH_ x KW_. */
CNNF_INLINE void DC_TILE(const int FB, const int NV, const int K, const DC_T* restrict xs,
                         int C, int KH_, int KW_, ptrdiff_t cs, ptrdiff_t ks, int row,
                         const DC_T* restrict w, const DC_T* restrict bias, DC_T* restrict y,
                         ptrdiff_t plane, int nf, int np) {
    enum { L = DC_VB / sizeof(DC_T) };
    const int KH = K ? K : KH_, KW = K ? K : KW_;
    DC_VEC acc[DC_MAX_ACC];
#pragma GCC unroll 32
    for (int f = 0; f < FB; f++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[f * NV + v] = bias[f] - (DC_VEC){};
    /* every output pixel sums bias, then c, kw, kh in this order, whatever the tile */
    for (int c = 0; c < C; c++) {
        const DC_T* src = xs + c * cs;
        if (K == 3) {
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++)
#pragma GCC unroll 3
                for (int kh = 0; kh < 3; kh++, w += FB)
                    DC_TAP(FB, NV, src + kw * ks + kh * row, w, acc);
        } else if (K == 5) {
#pragma GCC unroll 5
            for (int kw = 0; kw < 5; kw++)
#pragma GCC unroll 5
                for (int kh = 0; kh < 5; kh++, w += FB)
                    DC_TAP(FB, NV, src + kw * ks + kh * row, w, acc);
        } else {
            for (int kw = 0; kw < KW; kw++)
                for (int kh = 0; kh < KH; kh++, w += FB)
                    DC_TAP(FB, NV, src + kw * ks + kh * row, w, acc);
        }
    }
    if (np == NV * L && nf == FB) {
#pragma GCC unroll 32
        for (int f = 0; f < FB; f++)
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) *(DC_UVEC*) (y + f * plane + v * L) = acc[f * NV + v];
    } else {
        /* a channel or pixel tail: through tmp, without taking acc's address */
        DC_T tmp[DC_MAX_NV * L];
#pragma GCC unroll 32
        for (int f = 0; f < FB; f++) {
            if (f < nf) {
#pragma GCC unroll 8
                for (int v = 0; v < NV; v++) *(DC_UVEC*) (tmp + v * L) = acc[f * NV + v];
                for (int p = 0; p < np; p++) {
                    DC_OPAQUE(p);
                    y[f * plane + p] = tmp[p];
                }
            }
        }
    }
}

/* One band (output rows oh0 .. oh0+R-1 of one image x (C, H, W) into y (F, OH, OW)) with
   the (FB, V) micro-kernel, V in 64-byte units: the shifted copies, then every strip x
   channel block.  w: packed (nfb, C, KW, KH, FB) weights, bias: (nfb * FB,) zero-padded. */
CNNF_INLINE void DC_BAND(const int FB, const int V, const int K, const DC_T* restrict x, int C,
                         int H, int W, const DC_T* restrict w, const DC_T* restrict bias, int F,
                         int KH, int KW, int ph, int pw, int sh, int sw, int dh, int dw,
                         int oh0, int R, int OH, int OW, DC_T* restrict buf,
                         DC_T* restrict y) {
    const int NV = V * 64 / DC_VB, S = V * 64 / (int) sizeof(DC_T);
    const int taps = sh != 1 || sw != 1 || dh != 1 || dw != 1;
    ptrdiff_t plane = (ptrdiff_t) OH * OW, wstride = (ptrdiff_t) C * KW * KH * FB;
    DC_T* yb = y + (ptrdiff_t) oh0 * OW;
    int Pb = R * OW;
    if (!taps) {
        const DC_T* xs = (const DC_T*) dc_copy(x, sizeof(DC_T), C, H, W, KH, KW, ph, pw, oh0,
                                               R, OW, V, buf);
        ptrdiff_t ks = (ptrdiff_t) (R + KH - 1) * OW, cs = KW * ks;
        for (int p0 = 0; p0 < Pb; p0 += S) {
            int np = Pb - p0 < S ? Pb - p0 : S;
            for (int f0 = 0; f0 < F; f0 += FB) {
                int nf = F - f0 < FB ? F - f0 : FB;
                DC_TILE(FB, NV, K, xs + p0, C, KH, KW, cs, ks, OW, w + (f0 / FB) * wstride,
                        bias + f0, yb + f0 * plane + p0, plane, nf, np);
            }
        }
        return;
    }
    /* strided or dilated: one run per tap (dc_copy_taps), a 1 x (KH * KW) kernel */
    const DC_T* xs = (const DC_T*) dc_copy_taps(x, sizeof(DC_T), C, H, W, KH, KW, ph, pw, sh,
                                                sw, dh, dw, oh0, R, OW, V, buf);
    ptrdiff_t ks = (ptrdiff_t) R * OW, cs = (ptrdiff_t) KH * KW * ks;
    for (int p0 = 0; p0 < Pb; p0 += S) {
        int np = Pb - p0 < S ? Pb - p0 : S;
        for (int f0 = 0; f0 < F; f0 += FB) {
            int nf = F - f0 < FB ? F - f0 : FB;
            DC_TILE(FB, NV, 0, xs + p0, C, 1, KH * KW, cs, ks, OW, w + (f0 / FB) * wstride,
                    bias + f0, yb + f0 * plane + p0, plane, nf, np);
        }
    }
}

#ifdef DC_DW_BAND
/* The lanes of v added up in a fixed order. */
CNNF_INLINE DC_T DC_HSUM(DC_VEC v) {
    enum { L = DC_VB / sizeof(DC_T) };
    DC_T s = v[0];
    for (int l = 1; l < L; l++) s += v[l];
    return s;
}

/* Weight-gradient tile: sums of NF channels' grad_y (gy, channels gys apart) times NK
   kernel rows' inputs (xr, rows OW elements apart: the parameter is the row step) over P pixels, added to gw[k * gwf + j * gwk]. */
CNNF_INLINE void DC_DW_TILE(const int NF, const int NK, const DC_T* restrict gy, ptrdiff_t gys,
                            const DC_T* restrict xr, int OW, ptrdiff_t P, DC_T* restrict gw,
                            ptrdiff_t gwf, int gwk) {
    enum { L = DC_VB / sizeof(DC_T) };
    DC_VEC acc[DC_DW_MAX_NF * DC_DW_MAX_NK], g[DC_DW_MAX_NF];
    DC_T tail[DC_DW_MAX_NF * DC_DW_MAX_NK];
#pragma GCC unroll 32
    for (int i = 0; i < NF * NK; i++) {
        acc[i] = (DC_VEC){};
        tail[i] = 0;
    }
    ptrdiff_t p = 0;
    for (; p + L <= P; p += L) {
#pragma GCC unroll 8
        for (int k = 0; k < NF; k++) g[k] = *(const DC_UVEC*) (gy + k * gys + p);
#pragma GCC unroll 8
        for (int j = 0; j < NK; j++) {
            DC_VEC xv = *(const DC_UVEC*) (xr + (ptrdiff_t) j * OW + p);
#pragma GCC unroll 8
            for (int k = 0; k < NF; k++) acc[k * NK + j] += g[k] * xv;
        }
    }
    for (; p < P; p++)  /* the last pixels, one at a time (no reads past either array) */
#pragma GCC unroll 8
        for (int k = 0; k < NF; k++)
#pragma GCC unroll 8
            for (int j = 0; j < NK; j++) tail[k * NK + j] += gy[k * gys + p] * xr[(ptrdiff_t) j * OW + p];
#pragma GCC unroll 8
    for (int k = 0; k < NF; k++)
#pragma GCC unroll 8
        for (int j = 0; j < NK; j++)
            gw[k * gwf + j * gwk] += DC_HSUM(acc[k * NK + j]) + tail[k * NK + j];
}

/* grad_w (F, C, KH, KW) and grad_b (F,) += the sums over one band of R output rows; gy
   points at grad_y[n, 0, oh0, 0], gys = OH * OW apart per channel.  See direct.h. */
CNNF_INLINE void DC_DW_BAND(const DC_T* x, int C, int H, int W, const DC_T* gy, ptrdiff_t gys,
                            int F, int KH, int KW, int ph, int pw, int sh, int sw, int dh,
                            int dw, int oh0, int R, int OW, DC_T* buf, DC_T* gw, DC_T* gb) {
    enum { L = DC_VB / sizeof(DC_T), NF = DC_DW_MAX_NF, NK = DC_DW_MAX_NK };
    DC_DW_BAND_COPIES(DC_T);
    ptrdiff_t P = (ptrdiff_t) R * OW;
    ptrdiff_t gwf = (ptrdiff_t) C * KH * KW;
    for (int c = 0; c < C; c++)
        for (int kw = 0; kw < KW; kw++)
            for (int f0 = 0; f0 < F; f0 += NF)
                for (int kh0 = 0; kh0 < KH; kh0 += NK) {
                    int nf = F - f0 < NF ? F - f0 : NF, nk = KH - kh0 < NK ? KH - kh0 : NK;
                    const DC_T* g = gy + f0 * gys;
                    const DC_T* xr = xs + c * cs + kw * kws + (ptrdiff_t) kh0 * rows;
                    DC_T* d = gw + f0 * gwf + (ptrdiff_t) c * KH * KW + kh0 * KW + kw;
                    /* one case per tile size, so that each is compiled with its own sizes */
                    switch (nf * 8 + nk) {
                        case 1 * 8 + 1: DC_DW_TILE(1, 1, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 1 * 8 + 2: DC_DW_TILE(1, 2, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 1 * 8 + 3: DC_DW_TILE(1, 3, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 2 * 8 + 1: DC_DW_TILE(2, 1, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 2 * 8 + 2: DC_DW_TILE(2, 2, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 2 * 8 + 3: DC_DW_TILE(2, 3, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 3 * 8 + 1: DC_DW_TILE(3, 1, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 3 * 8 + 2: DC_DW_TILE(3, 2, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 3 * 8 + 3: DC_DW_TILE(3, 3, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 4 * 8 + 1: DC_DW_TILE(4, 1, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 4 * 8 + 2: DC_DW_TILE(4, 2, g, gys, xr, rows, P, d, gwf, KW); break;
                        case 4 * 8 + 3: DC_DW_TILE(4, 3, g, gys, xr, rows, P, d, gwf, KW); break;
                    }
                }
    for (int f = 0; f < F; f++) {  /* the bias gradient: plain sums of the band */
        DC_VEC a = {};
        DC_T t = 0;
        ptrdiff_t p = 0;
        for (; p + L <= P; p += L) a += *(const DC_UVEC*) (gy + f * gys + p);
        for (; p < P; p++) t += gy[f * gys + p];
        gb[f] += DC_HSUM(a) + t;
    }
}
#endif

#undef DC_T
#undef DC_VEC
#undef DC_UVEC
#undef DC_VB
#undef DC_MAX_ACC
#undef DC_MAX_NV
#undef DC_TAP
#undef DC_TILE
#undef DC_BAND
#undef DC_HSUM
#undef DC_DW_TILE
#undef DC_DW_BAND
