/* The Winograd transforms' code for one element type, included by winograd.h once per
   type with WG_T (the type) and the names of the functions defined here (WG_INPUT_ROW,
   WG_OUTPUT_ROW, WG_GRAD_ROW, WG_PHASE_SPLIT_ROW, WG_INPUT43_ROW, WG_OUTPUT43_ROW,
   WG_GRAD43_ROW) defined; it undefines them again.  No include guard: meant to be
   included more than once.  Plane xi of a transformed row lives at [xi*s + tw]. */

/* F(2x2, 3x3): V = B^T d B for a row of 4x4 input tiles (rows r0..r3, stride 2). */
CNNF_INLINE void WG_INPUT_ROW(const WG_T* restrict r0, const WG_T* restrict r1,
                              const WG_T* restrict r2, const WG_T* restrict r3, int tiles_w,
                              WG_T* restrict v, ptrdiff_t s) {
    _Pragma("omp simd")
    for (int tw = 0; tw < tiles_w; tw++) {
        int j = 2 * tw;
        WG_T a0 = r0[j] - r2[j], a1 = r0[j+1] - r2[j+1], a2 = r0[j+2] - r2[j+2], a3 = r0[j+3] - r2[j+3];
        WG_T b0 = r1[j] + r2[j], b1 = r1[j+1] + r2[j+1], b2 = r1[j+2] + r2[j+2], b3 = r1[j+3] + r2[j+3];
        WG_T c0 = r2[j] - r1[j], c1 = r2[j+1] - r1[j+1], c2 = r2[j+2] - r1[j+2], c3 = r2[j+3] - r1[j+3];
        WG_T e0 = r1[j] - r3[j], e1 = r1[j+1] - r3[j+1], e2 = r1[j+2] - r3[j+2], e3 = r1[j+3] - r3[j+3];
        v[0*s+tw] = a0 - a2;  v[1*s+tw] = a1 + a2;  v[2*s+tw] = a2 - a1;  v[3*s+tw] = a1 - a3;
        v[4*s+tw] = b0 - b2;  v[5*s+tw] = b1 + b2;  v[6*s+tw] = b2 - b1;  v[7*s+tw] = b1 - b3;
        v[8*s+tw] = c0 - c2;  v[9*s+tw] = c1 + c2;  v[10*s+tw] = c2 - c1; v[11*s+tw] = c1 - c3;
        v[12*s+tw] = e0 - e2; v[13*s+tw] = e1 + e2; v[14*s+tw] = e2 - e1; v[15*s+tw] = e1 - e3;
    }
}

/* F(2x2, 3x3): Y = A^T M A + bias for a row of tiles into output rows y0, y1. */
CNNF_INLINE void WG_OUTPUT_ROW(const WG_T* restrict m, ptrdiff_t s, int tiles_w, WG_T bias,
                               WG_T* restrict y0, WG_T* restrict y1) {
    _Pragma("omp simd")
    for (int tw = 0; tw < tiles_w; tw++) {
        WG_T s00 = m[0*s+tw] + m[4*s+tw] + m[8*s+tw],  s01 = m[1*s+tw] + m[5*s+tw] + m[9*s+tw];
        WG_T s02 = m[2*s+tw] + m[6*s+tw] + m[10*s+tw], s03 = m[3*s+tw] + m[7*s+tw] + m[11*s+tw];
        WG_T s10 = m[4*s+tw] - m[8*s+tw] - m[12*s+tw], s11 = m[5*s+tw] - m[9*s+tw] - m[13*s+tw];
        WG_T s12 = m[6*s+tw] - m[10*s+tw] - m[14*s+tw], s13 = m[7*s+tw] - m[11*s+tw] - m[15*s+tw];
        y0[2*tw] = s00 + s01 + s02 + bias;  y0[2*tw+1] = s01 - s02 - s03 + bias;
        y1[2*tw] = s10 + s11 + s12 + bias;  y1[2*tw+1] = s11 - s12 - s13 + bias;
    }
}

/* The weight gradient's transform of a row of 2x2 grad_y tiles: Z = A dY A^T (4x4). */
CNNF_INLINE void WG_GRAD_ROW(const WG_T* restrict y0, const WG_T* restrict y1, int tiles_w,
                             WG_T* restrict z, ptrdiff_t s) {
    _Pragma("omp simd")
    for (int tw = 0; tw < tiles_w; tw++) {
        WG_T a = y0[2*tw], b = y0[2*tw+1], c = y1[2*tw], d = y1[2*tw+1];
        WG_T r1a = a + c, r1b = b + d, r2a = a - c, r2b = b - d;
        z[0*s+tw] = a;    z[1*s+tw] = a + b;       z[2*s+tw] = a - b;       z[3*s+tw] = -b;
        z[4*s+tw] = r1a;  z[5*s+tw] = r1a + r1b;   z[6*s+tw] = r1a - r1b;   z[7*s+tw] = -r1b;
        z[8*s+tw] = r2a;  z[9*s+tw] = r2a + r2b;   z[10*s+tw] = r2a - r2b;  z[11*s+tw] = -r2b;
        z[12*s+tw] = -c;  z[13*s+tw] = -c - d;     z[14*s+tw] = d - c;      z[15*s+tw] = d;
    }
}

/* The weight gradient's transform of a row of 4x4 grad_y tiles: Z = A dY A^T (6x6). */
CNNF_INLINE void WG_GRAD43_ROW(const WG_T* restrict y0, const WG_T* restrict y1,
                               const WG_T* restrict y2, const WG_T* restrict y3, int tiles_w,
                               WG_T* restrict z, ptrdiff_t s) {
    _Pragma("omp simd")
    for (int tw = 0; tw < tiles_w; tw++) {
        WG_T c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23;
        WG_T c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
        CNNF_GRAD43_COL(0) CNNF_GRAD43_COL(1) CNNF_GRAD43_COL(2) CNNF_GRAD43_COL(3)
        CNNF_GRAD43_ROW(0) CNNF_GRAD43_ROW(1) CNNF_GRAD43_ROW(2)
        CNNF_GRAD43_ROW(3) CNNF_GRAD43_ROW(4) CNNF_GRAD43_ROW(5)
    }
}

/* One input row (W values) into a phase-split padded row: column 4u + q - pw of src goes
   to dst[q*Q + u]; dst is zeroed by the caller. */
CNNF_INLINE void WG_PHASE_SPLIT_ROW(const WG_T* restrict src, int W, int pw, ptrdiff_t Q,
                                    WG_T* restrict dst) {
    for (int q = 0; q < 4; q++) {
        int u_lo = pw > q ? (pw - q + 3) / 4 : 0, last = W - 1 + pw - q;
        int u_hi = last < 0 ? 0 : (last / 4 + 1 < Q ? last / 4 + 1 : (int) Q);
        const WG_T* restrict from = src + q - pw;
        _Pragma("omp simd")
        for (int u = u_lo; u < u_hi; u++)
            dst[q * Q + u] = from[4 * u];
    }
}

/* F(4x4, 3x3): V = B^T d B for a row of 6x6 tiles of six phase-split rows r0..r5. */
CNNF_INLINE void WG_INPUT43_ROW(const WG_T* restrict r0, const WG_T* restrict r1,
                                const WG_T* restrict r2, const WG_T* restrict r3,
                                const WG_T* restrict r4, const WG_T* restrict r5,
                                ptrdiff_t Q, int tiles_w, WG_T* restrict v, ptrdiff_t s) {
    _Pragma("omp simd")
    for (int tw = 0; tw < tiles_w; tw++) {
        WG_T t00, t01, t02, t03, t04, t05, t10, t11, t12, t13, t14, t15;
        WG_T t20, t21, t22, t23, t24, t25, t30, t31, t32, t33, t34, t35;
        WG_T t40, t41, t42, t43, t44, t45, t50, t51, t52, t53, t54, t55;
        CNNF_IN43_COL(0, 0) CNNF_IN43_COL(1, Q) CNNF_IN43_COL(2, 2 * Q)
        CNNF_IN43_COL(3, 3 * Q) CNNF_IN43_COL(4, 1) CNNF_IN43_COL(5, Q + 1)
        CNNF_IN43_ROW(0) CNNF_IN43_ROW(1) CNNF_IN43_ROW(2)
        CNNF_IN43_ROW(3) CNNF_IN43_ROW(4) CNNF_IN43_ROW(5)
    }
}

/* F(4x4, 3x3): Y = A^T M A + bias for a row of tiles into output rows y0..y3. */
CNNF_INLINE void WG_OUTPUT43_ROW(const WG_T* restrict m, ptrdiff_t s, int tiles_w, WG_T bias,
                                 WG_T* restrict y0, WG_T* restrict y1, WG_T* restrict y2,
                                 WG_T* restrict y3) {
    _Pragma("omp simd")
    for (int tw = 0; tw < tiles_w; tw++) {
        WG_T a00, a01, a02, a03, a04, a05, a10, a11, a12, a13, a14, a15;
        WG_T a20, a21, a22, a23, a24, a25, a30, a31, a32, a33, a34, a35, o0, o1, o2, o3;
        CNNF_OUT43_COL(0) CNNF_OUT43_COL(1) CNNF_OUT43_COL(2)
        CNNF_OUT43_COL(3) CNNF_OUT43_COL(4) CNNF_OUT43_COL(5)
        CNNF_OUT43_ROW(0) CNNF_OUT43_ROW(1) CNNF_OUT43_ROW(2) CNNF_OUT43_ROW(3)
    }
}

#undef WG_T
#undef WG_INPUT_ROW
#undef WG_OUTPUT_ROW
#undef WG_GRAD_ROW
#undef WG_PHASE_SPLIT_ROW
#undef WG_INPUT43_ROW
#undef WG_OUTPUT43_ROW
#undef WG_GRAD43_ROW
