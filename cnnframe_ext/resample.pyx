"""Resampling kernels over (N*C, H, W) planes: nearest and bilinear upsampling, adaptive
average and max pooling, forward and backward.

The callers (cnnframe.functional.upsample, .adaptive_pool) compute every index and
weight table once per call, as PyTorch does, so the kernels only gather (forward)
and scatter-add (backward).  Every plane is independent: the OpenMP threads split
the planes between them and never write to the same element; a backward pass
zeroes its plane of grad_x and adds into it, in output order.
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
        for q in prange(P, schedule="static"):
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
        for q in prange(P, schedule="static"):
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
        for q in prange(P, schedule="static"):
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
        for q in prange(P, schedule="static"):
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
        for q in prange(P, schedule="static"):
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
        for q in prange(P, schedule="static"):
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
        for q in prange(P, schedule="static"):
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
