/* The direct convolution's micro-kernels for one element type and vector width, included
   by direct.h once per pair with these defined (it undefines them again):
     DC_T        the element type (float or double)
     DC_VEC      its vector type of DC_VB bytes (simd.h), DC_UVEC the unaligned view
     DC_VB       the vector width in bytes (64, 32 or 16)
     DC_MAX_ACC  the most accumulator vectors a tile may hold (FB * NV)
     DC_MAX_NV   the most pixel vectors a tile may span (NV = V * 64 / DC_VB)
   and the names of the always-inline functions defined here: DC_TAP, DC_TILE, DC_BAND.
   The tile sizes FB, NV (or V) and K are parameters that direct.h passes as constants,
   so each non-inline kernel there is compiled for one tile size.  No include guard: meant to be included
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
                         int KH, int KW, int ph, int pw, int oh0, int R, int OH, int OW,
                         DC_T* restrict buf, DC_T* restrict y) {
    const int NV = V * 64 / DC_VB, S = V * 64 / (int) sizeof(DC_T);
    const DC_T* xs = (const DC_T*) dc_copy(x, sizeof(DC_T), C, H, W, KH, KW, ph, pw, oh0, R,
                                           OW, V, buf);
    ptrdiff_t ks = (ptrdiff_t) (R + KH - 1) * OW, cs = KW * ks;
    ptrdiff_t plane = (ptrdiff_t) OH * OW, wstride = (ptrdiff_t) C * KW * KH * FB;
    DC_T* yb = y + (ptrdiff_t) oh0 * OW;
    int Pb = R * OW;
    for (int p0 = 0; p0 < Pb; p0 += S) {
        int np = Pb - p0 < S ? Pb - p0 : S;
        for (int f0 = 0; f0 < F; f0 += FB) {
            int nf = F - f0 < FB ? F - f0 : FB;
            DC_TILE(FB, NV, K, xs + p0, C, KH, KW, cs, ks, OW, w + (f0 / FB) * wstride,
                    bias + f0, yb + f0 * plane + p0, plane, nf, np);
        }
    }
}


#undef DC_T
#undef DC_VEC
#undef DC_UVEC
#undef DC_VB
#undef DC_MAX_ACC
#undef DC_MAX_NV
#undef DC_TAP
#undef DC_TILE
#undef DC_BAND
