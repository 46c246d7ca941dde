"""Resampling kernels over (N*C, H, W) planes: nearest and bilinear upsampling, adaptive
average and max pooling, forward and backward; and the depth-to-space interleaving (and
its inverse) of a transposed convolution whose stride is its kernel size.

The callers (cnnframe.functional.upsample, .adaptive_pool) compute every index and
weight table once per call, as PyTorch does, so the kernels only gather (forward)
and scatter-add (backward).  Every plane is independent: the OpenMP threads take
planes (8 at a time, as they come free) and never write to the same element; a
backward pass zeroes its plane of grad_x and adds into it, in output order.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memset


def nearest_forward(const floating[:, :, ::1] x,   # IN  (P, H, W)
                    const long long[::1] hidx,     # IN  (OH,) source row of each output row
                    const long long[::1] widx,     # IN  (OW,) source column of each output column
                    floating[:, :, ::1] y,         # OUT (P, OH, OW)
                    int num_threads):
    cdef Py_ssize_t P = x.shape[0], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t q, i, j
    cdef const floating* src
    cdef floating* dst
    with nogil, parallel(num_threads=num_threads):
        for q in prange(P, schedule="dynamic", chunksize=8):
            for i in range(OH):
                src = &x[q, hidx[i], 0]
                dst = &y[q, i, 0]
                for j in range(OW):
                    dst[j] = src[widx[j]]


def nearest_backward(const floating[:, :, ::1] grad_y,  # IN  (P, OH, OW)
                     const long long[::1] hidx,         # IN  (OH,)
                     const long long[::1] widx,         # IN  (OW,)
                     floating[:, :, ::1] grad_x,        # OUT (P, H, W)
                     int num_threads):
    cdef Py_ssize_t P = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t q, i, j
    cdef const floating* src
    cdef floating* dst
    with nogil, parallel(num_threads=num_threads):
        for q in prange(P, schedule="dynamic", chunksize=8):
            memset(&grad_x[q, 0, 0], 0, H * W * sizeof(floating))
            for i in range(OH):
                src = &grad_y[q, i, 0]
                dst = &grad_x[q, hidx[i], 0]
                for j in range(OW):
                    dst[widx[j]] += src[j]


def bilinear_forward(const floating[:, :, ::1] x,   # IN  (P, H, W)
                     const long long[::1] h0,       # IN  (OH,) upper source row
                     const long long[::1] h1,       # IN  (OH,) lower source row
                     const floating[::1] lh0,       # IN  (OH,) weight of the upper row
                     const floating[::1] lh1,       # IN  (OH,) weight of the lower row
                     const long long[::1] w0,       # IN  (OW,) left source column
                     const long long[::1] w1,       # IN  (OW,) right source column
                     const floating[::1] lw0,       # IN  (OW,) weight of the left column
                     const floating[::1] lw1,       # IN  (OW,) weight of the right column
                     floating[:, :, ::1] y,         # OUT (P, OH, OW)
                     int num_threads):
    cdef Py_ssize_t P = x.shape[0], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t q, i, j
    cdef const floating* r0
    cdef const floating* r1
    cdef floating* dst
    cdef floating a0, a1
    with nogil, parallel(num_threads=num_threads):
        for q in prange(P, schedule="dynamic", chunksize=8):
            for i in range(OH):
                r0 = &x[q, h0[i], 0]
                r1 = &x[q, h1[i], 0]
                a0 = lh0[i]
                a1 = lh1[i]
                dst = &y[q, i, 0]
                for j in range(OW):
                    dst[j] = (a0 * (lw0[j] * r0[w0[j]] + lw1[j] * r0[w1[j]])
                              + a1 * (lw0[j] * r1[w0[j]] + lw1[j] * r1[w1[j]]))


def bilinear_backward(const floating[:, :, ::1] grad_y,  # IN  (P, OH, OW)
                      const long long[::1] h0, const long long[::1] h1,
                      const floating[::1] lh0, const floating[::1] lh1,
                      const long long[::1] w0, const long long[::1] w1,
                      const floating[::1] lw0, const floating[::1] lw1,
                      floating[:, :, ::1] grad_x,        # OUT (P, H, W)
                      int num_threads):
    cdef Py_ssize_t P = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t q, i, j
    cdef const floating* src
    cdef floating* r0
    cdef floating* r1
    cdef floating g0, g1
    with nogil, parallel(num_threads=num_threads):
        for q in prange(P, schedule="dynamic", chunksize=8):
            memset(&grad_x[q, 0, 0], 0, H * W * sizeof(floating))
            for i in range(OH):
                src = &grad_y[q, i, 0]
                r0 = &grad_x[q, h0[i], 0]
                r1 = &grad_x[q, h1[i], 0]
                for j in range(OW):
                    g0 = lh0[i] * src[j]
                    g1 = lh1[i] * src[j]
                    r0[w0[j]] += lw0[j] * g0
                    r0[w1[j]] += lw1[j] * g0
                    r1[w0[j]] += lw0[j] * g1
                    r1[w1[j]] += lw1[j] * g1


def adaptive_avg_forward(const floating[:, :, ::1] x,   # IN  (P, H, W)
                         const long long[::1] hs,       # IN  (OH,) first row of each window
                         const long long[::1] he,       # IN  (OH,) one past its last row
                         const long long[::1] ws,       # IN  (OW,) first column
                         const long long[::1] we,       # IN  (OW,) one past the last column
                         floating[:, :, ::1] y,         # OUT (P, OH, OW)
                         int num_threads):
    cdef Py_ssize_t P = x.shape[0], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t q, i, j, a, b
    cdef floating acc
    with nogil, parallel(num_threads=num_threads):
        for q in prange(P, schedule="dynamic", chunksize=8):
            for i in range(OH):
                for j in range(OW):
                    acc = 0
                    for a in range(hs[i], he[i]):
                        for b in range(ws[j], we[j]):
                            acc = acc + x[q, a, b]
                    y[q, i, j] = acc / ((he[i] - hs[i]) * (we[j] - ws[j]))


def adaptive_avg_backward(const floating[:, :, ::1] grad_y,  # IN  (P, OH, OW)
                          const long long[::1] hs, const long long[::1] he,
                          const long long[::1] ws, const long long[::1] we,
                          floating[:, :, ::1] grad_x,        # OUT (P, H, W)
                          int num_threads):
    cdef Py_ssize_t P = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t q, i, j, a, b
    cdef floating g
    with nogil, parallel(num_threads=num_threads):
        for q in prange(P, schedule="dynamic", chunksize=8):
            memset(&grad_x[q, 0, 0], 0, H * W * sizeof(floating))
            for i in range(OH):
                for j in range(OW):
                    g = grad_y[q, i, j] / ((he[i] - hs[i]) * (we[j] - ws[j]))
                    for a in range(hs[i], he[i]):
                        for b in range(ws[j], we[j]):
                            grad_x[q, a, b] += g


def adaptive_max_forward(const floating[:, :, ::1] x,   # IN  (P, H, W)
                         const long long[::1] hs, const long long[::1] he,
                         const long long[::1] ws, const long long[::1] we,
                         floating[:, :, ::1] y,         # OUT (P, OH, OW)
                         long long[:, :, ::1] argmax,   # OUT (P, OH, OW) flat h*W+w index in the plane
                         int num_threads):
    """The maximum of each window; ties go to the first in row-major order and a NaN
    propagates (the last NaN of a window wins), as PyTorch's CPU kernel."""
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t q, i, j, a, b, best_i
    cdef floating best, v
    with nogil, parallel(num_threads=num_threads):
        for q in prange(P, schedule="dynamic", chunksize=8):
            for i in range(OH):
                for j in range(OW):
                    best_i = hs[i] * W + ws[j]
                    best = x[q, hs[i], ws[j]]
                    for a in range(hs[i], he[i]):
                        for b in range(ws[j], we[j]):
                            v = x[q, a, b]
                            if v > best or v != v:
                                best = v
                                best_i = a * W + b
                    y[q, i, j] = best
                    argmax[q, i, j] = best_i


def depth_to_space(const floating[:, :, :, ::1] z,   # IN  (N, C*KH*KW, H, W)
                   const floating[::1] bias,         # IN  (C,), or empty for none
                   floating[:, :, :, ::1] y,         # OUT (N, C, H*KH, W*KW)
                   int num_threads):
    """y[n, c, i*KH + a, j*KW + b] = z[n, (c*KH + a)*KW + b, i, j] + bias[c]: the planes of
    z, one per kernel position (a, b) of channel c, interleaved into the finer grid (a
    transposed convolution whose stride is its kernel size, from its 1x1 convolution)."""
    cdef Py_ssize_t N = y.shape[0], C = y.shape[1], H = z.shape[2], W = z.shape[3]
    cdef Py_ssize_t KH = y.shape[2] // H, KW = y.shape[3] // W
    cdef bint has_bias = bias.shape[0] > 0
    cdef Py_ssize_t q, c, i, a, b, j
    cdef floating beta
    cdef const floating* src
    cdef floating* dst
    with nogil, parallel(num_threads=num_threads):
        for q in prange(N * C, schedule="dynamic", chunksize=8):
            c = q % C
            beta = bias[c] if has_bias else 0
            for i in range(H):
                for a in range(KH):
                    dst = &y[q // C, c, i * KH + a, 0]
                    for b in range(KW):
                        src = &z[q // C, (c * KH + a) * KW + b, i, 0]
                        for j in range(W):
                            dst[j * KW + b] = src[j] + beta


def space_to_depth(const floating[:, :, :, ::1] y,   # IN  (N, C, H*KH, W*KW)
                   floating[:, :, :, ::1] z,         # OUT (N, C*KH*KW, H, W)
                   int num_threads):
    """The inverse of depth_to_space (without bias): z[n, (c*KH + a)*KW + b, i, j] =
    y[n, c, i*KH + a, j*KW + b]."""
    cdef Py_ssize_t N = y.shape[0], C = y.shape[1], H = z.shape[2], W = z.shape[3]
    cdef Py_ssize_t KH = y.shape[2] // H, KW = y.shape[3] // W
    cdef Py_ssize_t q, c, i, a, b, j
    cdef const floating* src
    cdef floating* dst
    with nogil, parallel(num_threads=num_threads):
        for q in prange(N * C, schedule="dynamic", chunksize=8):
            c = q % C
            for i in range(H):
                for a in range(KH):
                    src = &y[q // C, c, i * KH + a, 0]
                    for b in range(KW):
                        dst = &z[q // C, (c * KH + a) * KW + b, i, 0]
                        for j in range(W):
                            dst[j] = src[j * KW + b]
