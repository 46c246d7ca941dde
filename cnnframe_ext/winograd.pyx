"""Winograd F(2x2, 3x3) convolution for 3x3, stride-1, undilated kernels, NCHW.

Each 2x2 output tile comes from a 4x4 input patch d and a 3x3 filter g as
    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* element-wise over 16 positions)
which spends 16 multiplies per tile and channel pair where im2col + GEMM spends
36.  Summed over input channels, each position xi becomes one GEMM:
    M[xi] (tiles x F) = V[xi] (tiles x C) @ U[xi] (C x F).

A block is B whole images; one thread copies each into a zero-padded buffer,
transforms it a row of tiles at a time (vectorised across the row), runs the
16 GEMMs per group and transforms the products back.  Every output element is
produced by exactly one block, so results do not depend on the thread count.
The caller transforms the weights (U = G g G^T), validates every argument and
only calls this for even output sizes.
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


def winograd_conv3x3(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                     const floating[:, :, ::1] U,      # IN  (16, F, C/groups)
                     const floating[::1] bias,         # IN  (F,) or empty
                     floating[:, :, :, ::1] y,         # OUT (N, F, OH, OW), OH and OW even
                     floating[:, ::1] pad,             # scratch (threads, C * (OH+2) * (OW+2))
                     floating[:, ::1] V,               # scratch (threads, 16 planes of >= C * B * tiles)
                     floating[:, ::1] M,               # scratch (threads, 16 planes of >= F * B * tiles)
                     int ph, int pw, int groups, int B, int num_threads):
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef int Cg = C // groups, Fg = F // groups
    cdef int th_n = OH // 2, tw_n = OW // 2, tiles = th_n * tw_n
    cdef int nblocks = (N + B - 1) // B
    cdef int blk, n0, nb, b, f, g, xi, th, t_id
    cdef Py_ssize_t nt, s, sm
    cdef floating* xp
    cdef floating* v
    cdef floating* m
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
            s = V.shape[1] // 16     # the caller spaces the planes (see conv.py)
            sm = M.shape[1] // 16
            for b in range(nb):
                transform_inputs(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OH, OW, xp,
                                 v + b * tiles, nt, s)
            for xi in range(16):
                for g in range(groups):
                    gemm(c'N', c'N', <int> nt, Fg, Cg, 1, v + xi * s + g * Cg * nt, <int> nt,
                         &U[xi, g * Fg, 0], Cg, 0, m + xi * sm + g * Fg * nt, <int> nt)
            for b in range(nb):
                for f in range(F):
                    bf = bias[f] if bias.shape[0] > 0 else 0
                    for th in range(th_n):
                        output_row(m + f * nt + b * tiles + th * tw_n, sm, tw_n, bf,
                                   &y[n0 + b, f, 2 * th, 0], &y[n0 + b, f, 2 * th + 1, 0])


def winograd_grad_weight3x3(const floating[:, :, :, ::1] x,       # IN  (N, C, H, W)
                            const floating[:, :, :, ::1] grad_y,  # IN  (N, F, OH, OW), OH, OW even
                            floating[:, ::1] grad_m,              # OUT (parts, 16 * F * C/groups)
                            floating[:, ::1] grad_b,              # OUT (parts, F) partial sums
                            floating[:, ::1] pad,                 # scratch (threads, C*(OH+2)*(OW+2))
                            floating[:, ::1] V,                   # scratch (threads, 16 planes of >= C * B * tiles)
                            floating[:, ::1] Z,                   # scratch (threads, 16 planes of >= F * B * tiles)
                            int ph, int pw, int groups, int B, int num_threads):
    """Weight gradient of a 3x3 stride-1 conv in the Winograd domain, per partition.

    Forward is Y = A^T [U * V] A per tile, so dL/dU = sum over tiles of
    (A dY A^T) * V, one GEMM per position xi over the tiles:
        grad_m[part, xi] (F x C/g) += Z[xi] (F x tiles) @ V[xi]^T (tiles x C/g)
    and the caller finishes with dW = G^T (sum over parts of grad_m) G.  The image
    blocks are cut into grad_m.shape[0] fixed partitions, each summed in block
    order into its own row, so the result does not depend on the thread count.
    """
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = grad_y.shape[1], OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef int Cg = C // groups, Fg = F // groups
    cdef int th_n = OH // 2, tw_n = OW // 2, tiles = th_n * tw_n
    cdef int nblocks = (N + B - 1) // B
    cdef int nparts = grad_m.shape[0]
    cdef int part, blk, n0, nb, b, f, g, xi, th, t_id
    cdef Py_ssize_t nt, s, sz, t
    cdef floating* xp
    cdef floating* v
    cdef floating* z
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
                s = V.shape[1] // 16
                sz = Z.shape[1] // 16
                for b in range(nb):
                    transform_inputs(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OH, OW, xp,
                                     v + b * tiles, nt, s)
                    for f in range(F):
                        gy = &grad_y[n0 + b, f, 0, 0]
                        for th in range(th_n):
                            grad_row(gy + 2 * th * OW, gy + (2 * th + 1) * OW, tw_n,
                                     z + f * nt + b * tiles + th * tw_n, sz)
                # Z[5] = dy00 + dy01 + dy10 + dy11: its sum over tiles is the bias gradient.
                for f in range(F):
                    acc = 0
                    for t in range(nt):
                        acc = acc + z[5 * sz + f * nt + t]
                    grad_b[part, f] += acc
                for xi in range(16):
                    for g in range(groups):
                        # (C/g x F/g, column-major) += V[xi]_g^T (C/g x nt) @ Z[xi]_g (nt x F/g)
                        gemm(c'T', c'N', Cg, Fg, <int> nt, 1, v + xi * s + g * Cg * nt, <int> nt,
                             z + xi * sz + g * Fg * nt, <int> nt, 1,
                             gm + (xi * F + g * Fg) * Cg, Cg)
