"""Depthwise convolution kernels (groups == C, M filters per input channel): forward and
both gradients, NCHW.

Output channel f = c * M + k filters input channel c with its own KH x KW filter.  Every
(image, input channel) plane is independent in the forward pass and for the input
gradient, so the OpenMP threads split the N*C planes; the weight gradient sums over the
images, so there the threads split the channels and each sums its channels' images in
order.  No element is written by two threads and no result depends on the thread count.

A plane is padded by copying it into a zeroed per-thread scratch plane (unpadded planes
are read in place); the plane kernels are in src/depthwise.h.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset

cimport cnnframe_ext._simd as _simd
from cnnframe_ext import runtime as _runtime


cdef extern from "src/depthwise.h":
    void dw_pad_plane_f(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, float*) noexcept nogil
    void dw_pad_plane_d(const double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void dw_unpad_plane_f(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, float*) noexcept nogil
    void dw_unpad_plane_d(const double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    void dw_forward_plane_f(const float*, Py_ssize_t, const float*, int, int, int, int, int, int, float, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void dw_forward_plane_d(const double*, Py_ssize_t, const double*, int, int, int, int, int, int, double, double*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void dw_grad_input_plane_f(const float*, Py_ssize_t, Py_ssize_t, const float*, int, int, int, int, int, int, float*, Py_ssize_t) noexcept nogil
    void dw_grad_input_plane_d(const double*, Py_ssize_t, Py_ssize_t, const double*, int, int, int, int, int, int, double*, Py_ssize_t) noexcept nogil
    void dw_grad_weight_plane_f(const float*, Py_ssize_t, const float*, Py_ssize_t, Py_ssize_t, int, int, int, int, int, int, float*) noexcept nogil
    void dw_grad_weight_plane_d(const double*, Py_ssize_t, const double*, Py_ssize_t, Py_ssize_t, int, int, int, int, int, int, double*) noexcept nogil


def _set_isa(int level):
    """Use instruction-set level `level` in this module's kernels, capped at the CPU's;
    return the level now used (see cnnframe_ext.runtime)."""
    _simd.cnnf_set_isa(level)
    return _simd.cnnf_isa()


_runtime._register(__name__, _set_isa)


cdef inline const floating* padded(const floating* x, Py_ssize_t H, Py_ssize_t W, int ph,
                                   int pw, floating* buf) noexcept nogil:
    """The plane x (H, W) padded by (ph, pw): x itself without padding, else a copy in buf."""
    if ph == 0 and pw == 0:
        return x
    if floating is float:
        dw_pad_plane_f(x, H, W, ph, pw, buf)
    else:
        dw_pad_plane_d(x, H, W, ph, pw, buf)
    return buf


def depthwise_forward(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                      const floating[:, ::1] w,         # IN  (C*M, KH*KW)
                      const floating[::1] bias,         # IN  (C*M,) or (0,): no bias
                      floating[:, :, :, ::1] y,         # OUT (N, C*M, OH, OW)
                      floating[:, ::1] buf,             # scratch (threads, (H+2ph)*(W+2pw))
                      int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                      int num_threads):
    """y = conv2d(x, w, bias, stride, padding, dilation, groups=C)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], M = y.shape[1] // C
    cdef Py_ssize_t WP = W + 2 * pw, item, n, c, k, f
    cdef bint has_bias = bias.shape[0] > 0
    cdef const floating* xp = NULL
    cdef floating* b = NULL
    cdef floating bv = 0
    if N * C == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        b = &buf[threadid(), 0]
        for item in prange(N * C, schedule="static"):
            n = item // C
            c = item % C
            xp = padded(&x[n, c, 0, 0], H, W, ph, pw, b)
            for k in range(M):
                f = c * M + k
                bv = bias[f] if has_bias else 0
                if floating is float:
                    dw_forward_plane_f(xp, WP, &w[f, 0], KH, KW, sh, sw, dh, dw, bv,
                                       &y[n, f, 0, 0], OH, OW)
                else:
                    dw_forward_plane_d(xp, WP, &w[f, 0], KH, KW, sh, sw, dh, dw, bv,
                                       &y[n, f, 0, 0], OH, OW)


def depthwise_grad_input(const floating[:, :, :, ::1] grad_y,  # IN  (N, C*M, OH, OW)
                         const floating[:, ::1] w,             # IN  (C*M, KH*KW)
                         floating[:, :, :, ::1] grad_x,        # OUT (N, C, H, W)
                         floating[:, ::1] buf,                 # scratch (threads, (H+2ph)*(W+2pw))
                         int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                         int num_threads):
    """grad_x of depthwise_forward: each plane's M output gradients scattered back through
    their filters into a zeroed padded plane, whose interior is grad_x."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1]
    cdef Py_ssize_t H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t OH = grad_y.shape[2], OW = grad_y.shape[3], M = grad_y.shape[1] // C
    cdef Py_ssize_t WP = W + 2 * pw, HP = H + 2 * ph, item, n, c, k, f
    cdef floating* b = NULL
    if N * C == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        b = &buf[threadid(), 0]
        for item in prange(N * C, schedule="static"):
            n = item // C
            c = item % C
            memset(b, 0, HP * WP * sizeof(floating))
            for k in range(M):
                f = c * M + k
                if floating is float:
                    dw_grad_input_plane_f(&grad_y[n, f, 0, 0], OH, OW, &w[f, 0], KH, KW,
                                          sh, sw, dh, dw, b, WP)
                else:
                    dw_grad_input_plane_d(&grad_y[n, f, 0, 0], OH, OW, &w[f, 0], KH, KW,
                                          sh, sw, dh, dw, b, WP)
            if floating is float:
                dw_unpad_plane_f(b, H, W, ph, pw, &grad_x[n, c, 0, 0])
            else:
                dw_unpad_plane_d(b, H, W, ph, pw, &grad_x[n, c, 0, 0])


def depthwise_grad_weight(const floating[:, :, :, ::1] x,       # IN  (N, C, H, W)
                          const floating[:, :, :, ::1] grad_y,  # IN  (N, C*M, OH, OW)
                          floating[:, ::1] grad_w,              # OUT (C*M, KH*KW)
                          floating[:, ::1] buf,                 # scratch (threads, (H+2ph)*(W+2pw))
                          int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                          int num_threads):
    """grad_w of depthwise_forward: per channel, the images' sums in order."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = grad_y.shape[2], OW = grad_y.shape[3], M = grad_y.shape[1] // C
    cdef Py_ssize_t WP = W + 2 * pw, n, c, k, f
    cdef const floating* xp = NULL
    cdef floating* b = NULL
    grad_w[:, :] = 0
    if N * C == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        b = &buf[threadid(), 0]
        for c in prange(C, schedule="static"):
            for n in range(N):
                xp = padded(&x[n, c, 0, 0], H, W, ph, pw, b)
                for k in range(M):
                    f = c * M + k
                    if floating is float:
                        dw_grad_weight_plane_f(xp, WP, &grad_y[n, f, 0, 0], OH, OW, KH, KW,
                                               sh, sw, dh, dw, &grad_w[f, 0])
                    else:
                        dw_grad_weight_plane_d(xp, WP, &grad_y[n, f, 0, 0], OH, OW, KH, KW,
                                               sh, sw, dh, dw, &grad_w[f, 0])
