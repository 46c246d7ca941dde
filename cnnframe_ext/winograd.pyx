"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution for 3x3, stride-1, undilated
kernels, NCHW: forward (winograd_conv3x3) and weight gradient (winograd_grad_weight3x3).

Each m x m output tile (m = 2 or 4) comes from an (m+2) x (m+2) input patch d and a
3x3 filter g as
    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* element-wise over P = (m+2)^2 positions)
which spends 16 multiplies per 2x2 tile (F(2x2)) or 36 per 4x4 tile (F(4x4)) and
channel pair where im2col + GEMM spends 36 or 144.  Summed over input channels,
each position xi becomes one GEMM:
    M[xi] (tiles x F) = V[xi] (tiles x C) @ U[xi] (C x F).

A block is B whole images; one thread copies each into a zero-padded buffer,
transforms it a row of tiles at a time (vectorised across the row), runs the
P GEMMs per group and transforms the products back.  Every output element is
produced by exactly one block, so results do not depend on the thread count.
The caller transforms the weights (U = G g G^T), picks m, validates every
argument and only calls this for output sizes that are multiples of m.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset, memcpy

from cnnframe_ext._blas cimport gemm


cdef extern from *:
    """
    /* Winograd F(2x2,3x3) tile transforms over a row of tiles, vectorised across tiles.
       restrict: the transformed planes never alias the input rows.  On x86-64 the
       compiler also builds AVX2 and AVX-512 versions and picks one at load time. */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define CNNF_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define CNNF_CLONES
    #endif
    #define CNNF_TRANSFORMS(T, SUF)                                                          \
    CNNF_CLONES                                                                         \
    static void input_row_##SUF(const T* restrict r0, const T* restrict r1,                 \
                                const T* restrict r2, const T* restrict r3, int tiles_w,    \
                                T* restrict v, Py_ssize_t s) {                              \
        _Pragma("omp simd")                                                                 \
        for (int tw = 0; tw < tiles_w; tw++) {                                              \
            int j = 2 * tw;                                                                 \
            T a0 = r0[j] - r2[j], a1 = r0[j+1] - r2[j+1], a2 = r0[j+2] - r2[j+2], a3 = r0[j+3] - r2[j+3]; \
            T b0 = r1[j] + r2[j], b1 = r1[j+1] + r2[j+1], b2 = r1[j+2] + r2[j+2], b3 = r1[j+3] + r2[j+3]; \
            T c0 = r2[j] - r1[j], c1 = r2[j+1] - r1[j+1], c2 = r2[j+2] - r1[j+2], c3 = r2[j+3] - r1[j+3]; \
            T e0 = r1[j] - r3[j], e1 = r1[j+1] - r3[j+1], e2 = r1[j+2] - r3[j+2], e3 = r1[j+3] - r3[j+3]; \
            v[0*s+tw] = a0 - a2;  v[1*s+tw] = a1 + a2;  v[2*s+tw] = a2 - a1;  v[3*s+tw] = a1 - a3;   \
            v[4*s+tw] = b0 - b2;  v[5*s+tw] = b1 + b2;  v[6*s+tw] = b2 - b1;  v[7*s+tw] = b1 - b3;   \
            v[8*s+tw] = c0 - c2;  v[9*s+tw] = c1 + c2;  v[10*s+tw] = c2 - c1; v[11*s+tw] = c1 - c3;  \
            v[12*s+tw] = e0 - e2; v[13*s+tw] = e1 + e2; v[14*s+tw] = e2 - e1; v[15*s+tw] = e1 - e3;  \
        }                                                                                   \
    }                                                                                       \
    CNNF_CLONES                                                                         \
    static void output_row_##SUF(const T* restrict m, Py_ssize_t s, int tiles_w, T bias,    \
                                 T* restrict y0, T* restrict y1) {                          \
        _Pragma("omp simd")                                                                 \
        for (int tw = 0; tw < tiles_w; tw++) {                                              \
            T s00 = m[0*s+tw] + m[4*s+tw] + m[8*s+tw],  s01 = m[1*s+tw] + m[5*s+tw] + m[9*s+tw];   \
            T s02 = m[2*s+tw] + m[6*s+tw] + m[10*s+tw], s03 = m[3*s+tw] + m[7*s+tw] + m[11*s+tw];  \
            T s10 = m[4*s+tw] - m[8*s+tw] - m[12*s+tw], s11 = m[5*s+tw] - m[9*s+tw] - m[13*s+tw];  \
            T s12 = m[6*s+tw] - m[10*s+tw] - m[14*s+tw], s13 = m[7*s+tw] - m[11*s+tw] - m[15*s+tw]; \
            y0[2*tw] = s00 + s01 + s02 + bias;  y0[2*tw+1] = s01 - s02 - s03 + bias;            \
            y1[2*tw] = s10 + s11 + s12 + bias;  y1[2*tw+1] = s11 - s12 - s13 + bias;            \
        }                                                                                   \
    }                                                                                       \
    /* The weight gradient's transform of a row of 2x2 grad_y tiles: Z = A dY A^T (4x4). */ \
    CNNF_CLONES                                                                         \
    static void grad_row_##SUF(const T* restrict y0, const T* restrict y1, int tiles_w,     \
                               T* restrict z, Py_ssize_t s) {                               \
        _Pragma("omp simd")                                                                 \
        for (int tw = 0; tw < tiles_w; tw++) {                                              \
            T a = y0[2*tw], b = y0[2*tw+1], c = y1[2*tw], d = y1[2*tw+1];                   \
            T r1a = a + c, r1b = b + d, r2a = a - c, r2b = b - d;                           \
            z[0*s+tw] = a;    z[1*s+tw] = a + b;       z[2*s+tw] = a - b;       z[3*s+tw] = -b;    \
            z[4*s+tw] = r1a;  z[5*s+tw] = r1a + r1b;   z[6*s+tw] = r1a - r1b;   z[7*s+tw] = -r1b;  \
            z[8*s+tw] = r2a;  z[9*s+tw] = r2a + r2b;   z[10*s+tw] = r2a - r2b;  z[11*s+tw] = -r2b; \
            z[12*s+tw] = -c;  z[13*s+tw] = -c - d;     z[14*s+tw] = d - c;      z[15*s+tw] = d;    \
        }                                                                                   \
    }
    CNNF_TRANSFORMS(float, f)
    CNNF_TRANSFORMS(double, d)
    """
    void input_row_f(const float*, const float*, const float*, const float*, int, float*, Py_ssize_t) noexcept nogil
    void input_row_d(const double*, const double*, const double*, const double*, int, double*, Py_ssize_t) noexcept nogil
    void output_row_f(const float*, Py_ssize_t, int, float, float*, float*) noexcept nogil
    void output_row_d(const double*, Py_ssize_t, int, double, double*, double*) noexcept nogil
    void grad_row_f(const float*, const float*, int, float*, Py_ssize_t) noexcept nogil
    void grad_row_d(const double*, const double*, int, double*, Py_ssize_t) noexcept nogil


cdef extern from *:
    """
    /* Winograd F(4x4,3x3): 6x6 input tiles at a stride of 4, 36 products per tile.
       The padded image is stored phase-split - row[q*Q + u] holds column 4u + q - so
       that the six columns 4tw..4tw+5 of tile tw are contiguous across tiles: column c
       of every tile in a row is the run starting at (c % 4) * Q + c / 4. */
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
    #define CNNF_A6(x0, x1, x2, x3, o0, o1, o2, o3, o4, o5)                                   \
        o0 = (x0); o1 = (x0) + (x1) + (x2) + (x3); o2 = (x0) - (x1) + (x2) - (x3);            \
        o3 = (x0) + 2 * (x1) + 4 * (x2) + 8 * (x3); o4 = (x0) - 2 * (x1) + 4 * (x2) - 8 * (x3); \
        o5 = (x3);
    #define CNNF_GRAD43_COL(k)                                                               \
        CNNF_A6(y0[4*tw+k], y1[4*tw+k], y2[4*tw+k], y3[4*tw+k], c0##k, c1##k, c2##k, c3##k,   \
                c4##k, c5##k)
    #define CNNF_GRAD43_ROW(i)                                                               \
        CNNF_A6(c##i##0, c##i##1, c##i##2, c##i##3, z[(6*i+0)*s + tw], z[(6*i+1)*s + tw],     \
                z[(6*i+2)*s + tw], z[(6*i+3)*s + tw], z[(6*i+4)*s + tw], z[(6*i+5)*s + tw])
    #define CNNF_TRANSFORMS43(T, SUF)                                                        \
    /* The weight gradient's transform of a row of 4x4 grad_y tiles: Z = A dY A^T (6x6). */ \
    CNNF_CLONES                                                                              \
    static void grad43_row_##SUF(const T* restrict y0, const T* restrict y1,                 \
                                 const T* restrict y2, const T* restrict y3, int tiles_w,    \
                                 T* restrict z, Py_ssize_t s) {                              \
        _Pragma("omp simd")                                                                  \
        for (int tw = 0; tw < tiles_w; tw++) {                                               \
            T c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23;                    \
            T c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;                    \
            CNNF_GRAD43_COL(0) CNNF_GRAD43_COL(1) CNNF_GRAD43_COL(2) CNNF_GRAD43_COL(3)      \
            CNNF_GRAD43_ROW(0) CNNF_GRAD43_ROW(1) CNNF_GRAD43_ROW(2)                         \
            CNNF_GRAD43_ROW(3) CNNF_GRAD43_ROW(4) CNNF_GRAD43_ROW(5)                         \
        }                                                                                    \
    }                                                                                        \
    /* One input row (W values) into a phase-split padded row: column 4u + q - pw of src */  \
    /* goes to dst[q*Q + u]; dst is zeroed by the caller.                                */  \
    CNNF_CLONES                                                                              \
    static void phase_split_row_##SUF(const T* restrict src, int W, int pw, Py_ssize_t Q,    \
                                      T* restrict dst) {                                     \
        for (int q = 0; q < 4; q++) {                                                        \
            int u_lo = pw > q ? (pw - q + 3) / 4 : 0, last = W - 1 + pw - q;                 \
            int u_hi = last < 0 ? 0 : (last / 4 + 1 < Q ? last / 4 + 1 : (int) Q);           \
            const T* restrict from = src + q - pw;                                           \
            _Pragma("omp simd")                                                              \
            for (int u = u_lo; u < u_hi; u++)                                                \
                dst[q * Q + u] = from[4 * u];                                                \
        }                                                                                    \
    }                                                                                        \
    CNNF_CLONES                                                                              \
    static void input43_row_##SUF(const T* restrict r0, const T* restrict r1,                \
                                  const T* restrict r2, const T* restrict r3,                \
                                  const T* restrict r4, const T* restrict r5,                \
                                  Py_ssize_t Q, int tiles_w, T* restrict v, Py_ssize_t s) {  \
        _Pragma("omp simd")                                                                  \
        for (int tw = 0; tw < tiles_w; tw++) {                                               \
            T t00, t01, t02, t03, t04, t05, t10, t11, t12, t13, t14, t15;                    \
            T t20, t21, t22, t23, t24, t25, t30, t31, t32, t33, t34, t35;                    \
            T t40, t41, t42, t43, t44, t45, t50, t51, t52, t53, t54, t55;                    \
            CNNF_IN43_COL(0, 0) CNNF_IN43_COL(1, Q) CNNF_IN43_COL(2, 2 * Q)                  \
            CNNF_IN43_COL(3, 3 * Q) CNNF_IN43_COL(4, 1) CNNF_IN43_COL(5, Q + 1)              \
            CNNF_IN43_ROW(0) CNNF_IN43_ROW(1) CNNF_IN43_ROW(2)                               \
            CNNF_IN43_ROW(3) CNNF_IN43_ROW(4) CNNF_IN43_ROW(5)                               \
        }                                                                                    \
    }                                                                                        \
    CNNF_CLONES                                                                              \
    static void output43_row_##SUF(const T* restrict m, Py_ssize_t s, int tiles_w, T bias,  \
                                   T* restrict y0, T* restrict y1, T* restrict y2,           \
                                   T* restrict y3) {                                         \
        _Pragma("omp simd")                                                                  \
        for (int tw = 0; tw < tiles_w; tw++) {                                               \
            T a00, a01, a02, a03, a04, a05, a10, a11, a12, a13, a14, a15;                    \
            T a20, a21, a22, a23, a24, a25, a30, a31, a32, a33, a34, a35, o0, o1, o2, o3;    \
            CNNF_OUT43_COL(0) CNNF_OUT43_COL(1) CNNF_OUT43_COL(2)                            \
            CNNF_OUT43_COL(3) CNNF_OUT43_COL(4) CNNF_OUT43_COL(5)                            \
            CNNF_OUT43_ROW(0) CNNF_OUT43_ROW(1) CNNF_OUT43_ROW(2) CNNF_OUT43_ROW(3)          \
        }                                                                                    \
    }
    CNNF_TRANSFORMS43(float, f)
    CNNF_TRANSFORMS43(double, d)
    """
    void phase_split_row_f(const float*, int, int, Py_ssize_t, float*) noexcept nogil
    void phase_split_row_d(const double*, int, int, Py_ssize_t, double*) noexcept nogil
    void grad43_row_f(const float*, const float*, const float*, const float*, int, float*,
                      Py_ssize_t) noexcept nogil
    void grad43_row_d(const double*, const double*, const double*, const double*, int, double*,
                      Py_ssize_t) noexcept nogil
    void input43_row_f(const float*, const float*, const float*, const float*, const float*,
                       const float*, Py_ssize_t, int, float*, Py_ssize_t) noexcept nogil
    void input43_row_d(const double*, const double*, const double*, const double*,
                       const double*, const double*, Py_ssize_t, int, double*, Py_ssize_t) noexcept nogil
    void output43_row_f(const float*, Py_ssize_t, int, float, float*, float*, float*, float*) noexcept nogil
    void output43_row_d(const double*, Py_ssize_t, int, double, double*, double*, double*,
                        double*) noexcept nogil


cdef inline void input43_row(const floating* r0, Py_ssize_t rs, Py_ssize_t Q, int tiles_w,
                             floating* v, Py_ssize_t s) noexcept nogil:
    """Six phase-split padded rows, rs apart, starting at r0."""
    if floating is float:
        input43_row_f(r0, r0 + rs, r0 + 2 * rs, r0 + 3 * rs, r0 + 4 * rs, r0 + 5 * rs, Q,
                      tiles_w, v, s)
    else:
        input43_row_d(r0, r0 + rs, r0 + 2 * rs, r0 + 3 * rs, r0 + 4 * rs, r0 + 5 * rs, Q,
                      tiles_w, v, s)


cdef inline void grad43_row(const floating* y0, Py_ssize_t ys, int tiles_w, floating* z,
                            Py_ssize_t s) noexcept nogil:
    """Four grad_y rows, ys apart, starting at y0."""
    if floating is float:
        grad43_row_f(y0, y0 + ys, y0 + 2 * ys, y0 + 3 * ys, tiles_w, z, s)
    else:
        grad43_row_d(y0, y0 + ys, y0 + 2 * ys, y0 + 3 * ys, tiles_w, z, s)


cdef inline void output43_row(const floating* m, Py_ssize_t s, int tiles_w, floating bias,
                              floating* y0, Py_ssize_t ys) noexcept nogil:
    """Four output rows, ys apart, starting at y0."""
    if floating is float:
        output43_row_f(m, s, tiles_w, bias, y0, y0 + ys, y0 + 2 * ys, y0 + 3 * ys)
    else:
        output43_row_d(m, s, tiles_w, bias, y0, y0 + ys, y0 + 2 * ys, y0 + 3 * ys)


cdef inline void input_row(const floating* r0, const floating* r1, const floating* r2,
                           const floating* r3, int tiles_w, floating* v, Py_ssize_t s) noexcept nogil:
    if floating is float:
        input_row_f(r0, r1, r2, r3, tiles_w, v, s)
    else:
        input_row_d(r0, r1, r2, r3, tiles_w, v, s)


cdef inline void output_row(const floating* m, Py_ssize_t s, int tiles_w, floating bias,
                            floating* y0, floating* y1) noexcept nogil:
    if floating is float:
        output_row_f(m, s, tiles_w, bias, y0, y1)
    else:
        output_row_d(m, s, tiles_w, bias, y0, y1)


cdef inline void grad_row(const floating* y0, const floating* y1, int tiles_w,
                          floating* z, Py_ssize_t s) noexcept nogil:
    if floating is float:
        grad_row_f(y0, y1, tiles_w, z, s)
    else:
        grad_row_d(y0, y1, tiles_w, z, s)


cdef void transform_inputs(const floating* x, int C, int H, int W, int ph, int pw,
                           int OH, int OW, floating* xp, floating* v,
                           Py_ssize_t nt, Py_ssize_t s) noexcept nogil:
    """V = B^T d B for every tile of one image x (C, H, W) into the 16 planes v[xi*s + c*nt + t].

    xp is scratch for the zero-padded image (C, OH+2, OW+2): tile (th, tw) reads
    rows 2th..2th+3 and columns 2tw..2tw+3 of it.
    """
    cdef int Hp = OH + 2, Wp = OW + 2, tw_n = OW // 2, tiles = (OH // 2) * tw_n
    cdef int h_lo = max(0, -ph), h_hi = min(H, Hp - ph)
    cdef int w_lo = max(0, -pw), w_hi = min(W, Wp - pw)
    cdef int c, ih, th
    cdef const floating* src
    memset(xp, 0, <size_t> C * Hp * Wp * sizeof(floating))
    for c in range(C):
        for ih in range(h_lo, h_hi):
            if w_hi > w_lo:
                memcpy(xp + (<Py_ssize_t> c * Hp + ih + ph) * Wp + w_lo + pw,
                       x + (<Py_ssize_t> c * H + ih) * W + w_lo, (w_hi - w_lo) * sizeof(floating))
    for c in range(C):
        for th in range(OH // 2):
            src = xp + (<Py_ssize_t> c * Hp + 2 * th) * Wp
            input_row(src, src + Wp, src + 2 * Wp, src + 3 * Wp, tw_n, v + c * nt + th * tw_n, s)


cdef void transform_inputs43(const floating* x, int C, int H, int W, int ph, int pw,
                             int OH, int OW, floating* xp, floating* v,
                             Py_ssize_t nt, Py_ssize_t s) noexcept nogil:
    """F(4x4, 3x3): V = B^T d B for every 6x6 tile of one image into v[xi*s + c*nt + t].

    xp is scratch for the zero-padded image (C, OH+2, 4 phases, Q = OW/4 + 1), phase-split:
    padded column 4u + q is at [q*Q + u], so every load of the row transform is contiguous.
    """
    cdef int Hp = OH + 2, tw_n = OW // 4, Q = OW // 4 + 1
    cdef Py_ssize_t rs = 4 * Q   # one phase-split padded row
    cdef int h_lo = max(0, -ph), h_hi = min(H, Hp - ph)
    cdef int c, ih, th
    cdef const floating* src
    cdef floating* dst
    memset(xp, 0, <size_t> C * Hp * rs * sizeof(floating))
    for c in range(C):
        for ih in range(h_lo, h_hi):
            src = x + (<Py_ssize_t> c * H + ih) * W
            dst = xp + (<Py_ssize_t> c * Hp + ih + ph) * rs
            if floating is float:
                phase_split_row_f(src, W, pw, Q, dst)
            else:
                phase_split_row_d(src, W, pw, Q, dst)
    for c in range(C):
        for th in range(OH // 4):
            input43_row(xp + (<Py_ssize_t> c * Hp + 4 * th) * rs, rs, Q, tw_n,
                        v + c * nt + th * tw_n, s)


def winograd_conv3x3(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                     const floating[:, :, ::1] U,      # IN  (P, F, C/groups), P = (m+2)^2 positions
                     const floating[::1] bias,         # IN  (F,) or empty
                     floating[:, :, :, ::1] y,         # OUT (N, F, OH, OW), OH and OW multiples of m
                     floating[:, ::1] pad,             # scratch (threads, padded image, see transforms)
                     floating[:, ::1] V,               # scratch (threads, P planes of >= C * B * tiles)
                     floating[:, ::1] M,               # scratch (threads, P planes of >= F * B * tiles)
                     int ph, int pw, int groups, int B, int num_threads):
    """F(m x m, 3x3) convolution, m = 2 or 4 (U.shape[0] = 16 or 36)."""
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef int P = U.shape[0], tile = 2 if P == 16 else 4
    cdef int Cg = C // groups, Fg = F // groups
    cdef int th_n = OH // tile, tw_n = OW // tile, tiles = th_n * tw_n
    cdef int nblocks = (N + B - 1) // B
    cdef int blk, n0, nb, b, f, g, xi, th
    cdef Py_ssize_t nt, s, sm
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t_id = 0
    cdef floating* xp = NULL
    cdef floating* v = NULL
    cdef floating* m = NULL
    cdef floating bf
    with nogil, parallel(num_threads=num_threads):
        t_id = threadid()
        xp = &pad[t_id, 0]
        v = &V[t_id, 0]
        m = &M[t_id, 0]
        for blk in prange(nblocks, schedule="static"):
            n0 = blk * B
            nb = min(B, N - n0)
            nt = <Py_ssize_t> nb * tiles
            s = V.shape[1] // P     # the caller spaces the planes (see conv.py)
            sm = M.shape[1] // P
            for b in range(nb):
                if tile == 2:
                    transform_inputs(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OH, OW, xp,
                                     v + b * tiles, nt, s)
                else:
                    transform_inputs43(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OH, OW, xp,
                                       v + b * tiles, nt, s)
            for xi in range(P):
                for g in range(groups):
                    gemm(c'N', c'N', <int> nt, Fg, Cg, 1, v + xi * s + g * Cg * nt, <int> nt,
                         &U[xi, g * Fg, 0], Cg, 0, m + xi * sm + g * Fg * nt, <int> nt)
            for b in range(nb):
                for f in range(F):
                    bf = bias[f] if bias.shape[0] > 0 else 0
                    for th in range(th_n):
                        if tile == 2:
                            output_row(m + f * nt + b * tiles + th * tw_n, sm, tw_n, bf,
                                       &y[n0 + b, f, 2 * th, 0], &y[n0 + b, f, 2 * th + 1, 0])
                        else:
                            output43_row(m + f * nt + b * tiles + th * tw_n, sm, tw_n, bf,
                                         &y[n0 + b, f, 4 * th, 0], OW)


def winograd_grad_weight3x3(const floating[:, :, :, ::1] x,       # IN  (N, C, H, W)
                            const floating[:, :, :, ::1] grad_y,  # IN  (N, F, OH, OW), OH, OW even
                            floating[:, ::1] grad_m,              # OUT (parts, P * F * C/groups)
                            floating[:, ::1] grad_b,              # OUT (parts, F) partial sums
                            floating[:, ::1] pad,                 # scratch (threads, padded image)
                            floating[:, ::1] V,                   # scratch (threads, P planes of >= C * B * tiles)
                            floating[:, ::1] Z,                   # scratch (threads, P planes of >= F * B * tiles)
                            int ph, int pw, int groups, int B, int tile, int num_threads):
    """Weight gradient of a 3x3 stride-1 conv by Winograd F(m x m, 3x3), m = tile (2 or 4).

    Forward is Y = A^T [U * V] A per tile, so dL/dU = sum over tiles of
    (A dY A^T) * V, one GEMM per position xi (P = (m+2)^2 of them) over the tiles:
        grad_m[part, xi] (F x C/g) += Z[xi] (F x tiles) @ V[xi]^T (tiles x C/g)
    and the caller finishes with dW = G^T (sum over parts of grad_m) G.  The image
    blocks are cut into grad_m.shape[0] fixed partitions, each summed in block
    order into its own row, so the result does not depend on the thread count.
    """
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = grad_y.shape[1], OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef int Cg = C // groups, Fg = F // groups
    cdef int P = (tile + 2) * (tile + 2), bias_plane = 5 if tile == 2 else 7
    cdef int th_n = OH // tile, tw_n = OW // tile, tiles = th_n * tw_n
    cdef int nblocks = (N + B - 1) // B
    cdef int nparts = grad_m.shape[0]
    cdef int part, blk, n0, nb, b, f, g, xi, th
    cdef Py_ssize_t nt, s, sz, t
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t_id = 0
    cdef floating* xp = NULL
    cdef floating* v = NULL
    cdef floating* z = NULL
    cdef floating* gm
    cdef const floating* gy
    cdef floating acc
    memset(&grad_m[0, 0], 0, grad_m.shape[0] * grad_m.shape[1] * sizeof(floating))
    memset(&grad_b[0, 0], 0, grad_b.shape[0] * grad_b.shape[1] * sizeof(floating))
    if N == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t_id = threadid()
        xp = &pad[t_id, 0]
        v = &V[t_id, 0]
        z = &Z[t_id, 0]
        for part in prange(nparts, schedule="static"):
            gm = &grad_m[part, 0]
            for blk in range(part * nblocks // nparts, (part + 1) * nblocks // nparts):
                n0 = blk * B
                nb = min(B, N - n0)
                nt = <Py_ssize_t> nb * tiles
                s = V.shape[1] // P
                sz = Z.shape[1] // P
                for b in range(nb):
                    if tile == 2:
                        transform_inputs(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OH, OW, xp,
                                         v + b * tiles, nt, s)
                    else:
                        transform_inputs43(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OH, OW, xp,
                                           v + b * tiles, nt, s)
                    for f in range(F):
                        gy = &grad_y[n0 + b, f, 0, 0]
                        for th in range(th_n):
                            if tile == 2:
                                grad_row(gy + 2 * th * OW, gy + (2 * th + 1) * OW, tw_n,
                                         z + f * nt + b * tiles + th * tw_n, sz)
                            else:
                                grad43_row(gy + 4 * th * OW, OW, tw_n,
                                           z + f * nt + b * tiles + th * tw_n, sz)
                # Z[bias_plane] (row 1, column 1 of Z) is the sum of the tile's dY: summed
                # over the tiles it is the bias gradient.
                for f in range(F):
                    acc = 0
                    for t in range(nt):
                        acc = acc + z[bias_plane * sz + f * nt + t]
                    grad_b[part, f] += acc
                for xi in range(P):
                    for g in range(groups):
                        # (C/g x F/g, column-major) += V[xi]_g^T (C/g x nt) @ Z[xi]_g (nt x F/g)
                        gemm(c'T', c'N', Cg, Fg, <int> nt, 1, v + xi * s + g * Cg * nt, <int> nt,
                             z + xi * sz + g * Fg * nt, <int> nt, 1,
                             gm + (xi * F + g * Fg) * Cg, Cg)
