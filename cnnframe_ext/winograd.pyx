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
Output sizes that are not multiples of m get ceil(size / m) tiles: the padded input
copy is zero beyond the image, so the last tiles compute a few outputs that are never
stored (the forward writes the last tile row / column through a per-thread edge buffer),
and the weight gradient reads grad_y's last tiles through that buffer, zero-padded.
The caller transforms the weights (U = G g G^T), picks m and validates every argument.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset, memcpy

from cnnframe_ext._blas cimport gemm
cimport cnnframe_ext._simd as _simd
from cnnframe_ext import runtime as _runtime


cdef extern from "src/winograd.h":
    void input_row_f(const float*, const float*, const float*, const float*, int, float*, Py_ssize_t) noexcept nogil
    void input_row_d(const double*, const double*, const double*, const double*, int, double*, Py_ssize_t) noexcept nogil
    void output_row_f(const float*, Py_ssize_t, int, float, float*, float*) noexcept nogil
    void output_row_d(const double*, Py_ssize_t, int, double, double*, double*) noexcept nogil
    void grad_row_f(const float*, const float*, int, float*, Py_ssize_t) noexcept nogil
    void grad_row_d(const double*, const double*, int, double*, Py_ssize_t) noexcept nogil

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


def _set_isa(int level):
    """Use instruction-set level `level` in this module's kernels, capped at the CPU's;
    return the level now used (see cnnframe_ext.runtime)."""
    _simd.cnnf_set_isa(level)
    return _simd.cnnf_isa()


_runtime._register(__name__, _set_isa)


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


cdef void output_tile_row(const floating* m, Py_ssize_t s, int tile, int tw_n, floating bias,
                          floating* y, int rows, int OW, floating* edge) noexcept nogil:
    """Y = A^T M A + bias for one row of tiles into `rows` output rows of width OW (stride
    OW) at y.  A ragged row (rows < tile, or OW < tw_n * tile) goes through `edge`
    (tile x tw_n * tile), then only its valid part is copied."""
    cdef int OWp = tw_n * tile, r
    cdef floating* out = y
    cdef Py_ssize_t rs = OW
    if rows < tile or OWp != OW:
        out = edge
        rs = OWp
    if tile == 2:
        output_row(m, s, tw_n, bias, out, out + rs)
    else:
        output43_row(m, s, tw_n, bias, out, rs)
    if out == edge:
        for r in range(rows):
            memcpy(y + <Py_ssize_t> r * OW, edge + <Py_ssize_t> r * OWp, OW * sizeof(floating))


cdef void grad_tile_row(const floating* gy, int tile, int tw_n, int rows, int OW,
                        floating* edge, floating* z, Py_ssize_t s) noexcept nogil:
    """A dY A^T for one row of tiles of grad_y (`rows` valid rows of width OW at gy).  A
    ragged row is copied into `edge` (tile x tw_n * tile) and zero-padded first: the
    outputs the forward never stored have no gradient."""
    cdef int OWp = tw_n * tile, r
    cdef const floating* src = gy
    cdef Py_ssize_t rs = OW
    if rows < tile or OWp != OW:
        memset(edge, 0, <size_t> tile * OWp * sizeof(floating))
        for r in range(rows):
            memcpy(edge + <Py_ssize_t> r * OWp, gy + <Py_ssize_t> r * OW, OW * sizeof(floating))
        src = edge
        rs = OWp
    if tile == 2:
        grad_row(src, src + rs, tw_n, z, s)
    else:
        grad43_row(src, rs, tw_n, z, s)


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
                     floating[:, :, :, ::1] y,         # OUT (N, F, OH, OW)
                     floating[:, ::1] pad,             # scratch (threads, padded image, see transforms)
                     floating[:, ::1] V,               # scratch (threads, P planes of >= C * B * tiles)
                     floating[:, ::1] M,               # scratch (threads, P planes of >= F * B * tiles)
                     floating[:, ::1] edge,            # scratch (threads, m * OW rounded up to m)
                     int ph, int pw, int groups, int B, int num_threads):
    """F(m x m, 3x3) convolution, m = 2 or 4 (U.shape[0] = 16 or 36)."""
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef int P = U.shape[0], tile = 2 if P == 16 else 4
    cdef int Cg = C // groups, Fg = F // groups
    cdef int th_n = (OH + tile - 1) // tile, tw_n = (OW + tile - 1) // tile
    cdef int tiles = th_n * tw_n, OHp = th_n * tile, OWp = tw_n * tile
    cdef int nblocks = (N + B - 1) // B
    cdef int blk, n0, nb, b, f, g, xi, th
    cdef Py_ssize_t nt, s, sm
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t_id = 0
    cdef floating* xp = NULL
    cdef floating* v = NULL
    cdef floating* m = NULL
    cdef floating* e = NULL
    cdef floating bf
    with nogil, parallel(num_threads=num_threads):
        t_id = threadid()
        xp = &pad[t_id, 0]
        v = &V[t_id, 0]
        m = &M[t_id, 0]
        e = &edge[t_id, 0]
        for blk in prange(nblocks, schedule="static"):
            n0 = blk * B
            nb = min(B, N - n0)
            nt = <Py_ssize_t> nb * tiles
            s = V.shape[1] // P     # the caller spaces the planes (see conv.py)
            sm = M.shape[1] // P
            for b in range(nb):
                if tile == 2:
                    transform_inputs(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OHp, OWp, xp,
                                     v + b * tiles, nt, s)
                else:
                    transform_inputs43(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OHp, OWp, xp,
                                       v + b * tiles, nt, s)
            for xi in range(P):
                for g in range(groups):
                    gemm(c'N', c'N', <int> nt, Fg, Cg, 1, v + xi * s + g * Cg * nt, <int> nt,
                         &U[xi, g * Fg, 0], Cg, 0, m + xi * sm + g * Fg * nt, <int> nt)
            for b in range(nb):
                for f in range(F):
                    bf = bias[f] if bias.shape[0] > 0 else 0
                    for th in range(th_n):
                        output_tile_row(m + f * nt + b * tiles + th * tw_n, sm, tile, tw_n, bf,
                                        &y[n0 + b, f, tile * th, 0], min(tile, OH - tile * th),
                                        OW, e)


def winograd_grad_weight3x3(const floating[:, :, :, ::1] x,       # IN  (N, C, H, W)
                            const floating[:, :, :, ::1] grad_y,  # IN  (N, F, OH, OW)
                            floating[:, ::1] grad_m,              # OUT (parts, P * F * C/groups)
                            floating[:, ::1] grad_b,              # OUT (parts, F) partial sums
                            floating[:, ::1] pad,                 # scratch (threads, padded image)
                            floating[:, ::1] V,                   # scratch (threads, P planes of >= C * B * tiles)
                            floating[:, ::1] Z,                   # scratch (threads, P planes of >= F * B * tiles)
                            floating[:, ::1] edge,                # scratch (threads, m * OW rounded up to m)
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
    cdef int th_n = (OH + tile - 1) // tile, tw_n = (OW + tile - 1) // tile
    cdef int tiles = th_n * tw_n, OHp = th_n * tile, OWp = tw_n * tile
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
    cdef floating* e = NULL
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
        e = &edge[t_id, 0]
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
                        transform_inputs(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OHp, OWp, xp,
                                         v + b * tiles, nt, s)
                    else:
                        transform_inputs43(&x[n0 + b, 0, 0, 0], C, H, W, ph, pw, OHp, OWp, xp,
                                           v + b * tiles, nt, s)
                    for f in range(F):
                        gy = &grad_y[n0 + b, f, 0, 0]
                        for th in range(th_n):
                            grad_tile_row(gy + tile * th * OW, tile, tw_n,
                                          min(tile, OH - tile * th), OW, e,
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
