"""Depthwise convolution kernels (groups == C, M filters per input channel): forward and
both gradients, NCHW.

Output channel f = c * M + k filters input channel c with its own KH x KW filter.  Every
(image, input channel) plane is independent in the forward pass, so the OpenMP threads
split the N*C planes there; the backward pass sums the filters' gradients over the
images, so there the threads split the channels and each takes its channels' images in
order, computing each plane's input gradient and its share of the filters' gradients in
one visit.  No element is written by two threads and no result depends on the thread
count.

Each thread copies the plane it works on into its scratch row (zeroed once per call); the
layouts and the plane kernels are in src/depthwise.h.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.stdlib cimport malloc, free
from libc.string cimport memset

cimport cnnframe_ext._simd as _simd
from cnnframe_ext import runtime as _runtime


cdef extern from "src/depthwise.h":
    ctypedef struct dw_geometry:
        Py_ssize_t x_elements, gy_elements
    void dw_layout(dw_geometry*, Py_ssize_t*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                   Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                   Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
    void dw_forward_plane_f(const dw_geometry*, const float*, const float*, const float*,
                            float*, float*) noexcept nogil
    void dw_forward_plane_d(const dw_geometry*, const double*, const double*, const double*,
                            double*, double*) noexcept nogil
    void dw_backward_plane_f(const dw_geometry*, const float*, const float*, const float*,
                             float*, float*, float*, float*, float*) noexcept nogil
    void dw_backward_plane_d(const dw_geometry*, const double*, const double*, const double*,
                             double*, double*, double*, double*, double*) noexcept nogil


def _set_isa(int level):
    """Use instruction-set level `level` in this module's kernels, capped at the CPU's;
    return the level now used (see cnnframe_ext.runtime)."""
    _simd.cnnf_set_isa(level)
    return _simd.cnnf_isa()


_runtime._register(__name__, _set_isa)


cdef Py_ssize_t* layout(dw_geometry* g, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH,
                        Py_ssize_t OW, Py_ssize_t M, int KH, int KW, int sh, int sw, int ph,
                        int pw, int dh, int dw, int itemsize) except NULL:
    """Fills g; returns its tap offsets (malloc'd: the caller frees them)."""
    cdef Py_ssize_t* coffs = <Py_ssize_t*> malloc(2 * KW * sizeof(Py_ssize_t))
    if coffs == NULL:
        raise MemoryError("depthwise: no memory for the tap offsets")
    dw_layout(g, coffs, H, W, OH, OW, M, KH, KW, sh, sw, ph, pw, dh, dw, itemsize)
    return coffs


def scratch_elements(Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t M,
                     int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                     int itemsize, bint backward):
    """Scratch elements one thread needs: the x copy, and for the backward pass the
    grad_y copies too."""
    cdef dw_geometry g
    free(layout(&g, H, W, OH, OW, M, KH, KW, sh, sw, ph, pw, dh, dw, itemsize))
    return g.x_elements + (g.gy_elements if backward else 0)


def depthwise_forward(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                      const floating[:, ::1] w,         # IN  (C*M, KH*KW)
                      const floating[::1] bias,         # IN  (C*M,) or (0,): no bias
                      floating[:, :, :, ::1] y,         # OUT (N, C*M, OH, OW)
                      floating[:, ::1] buf,             # scratch (threads, scratch_elements)
                      int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                      int num_threads):
    """y = conv2d(x, w, bias, stride, padding, dilation, groups=C)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], M = y.shape[1] // C
    cdef Py_ssize_t item, n, c
    cdef bint has_bias = bias.shape[0] > 0
    cdef floating* b = NULL
    cdef dw_geometry g
    if N * C == 0:
        return
    cdef Py_ssize_t* coffs = layout(&g, H, W, OH, OW, M, KH, KW, sh, sw, ph, pw, dh, dw,
                                    sizeof(floating))
    try:
        b = NULL   # set before the block (firstprivate: see direct.pyx)
        with nogil, parallel(num_threads=num_threads):
            b = &buf[threadid(), 0]
            memset(b, 0, g.x_elements * sizeof(floating))
            for item in prange(N * C, schedule="static"):
                n = item // C
                c = item % C
                if floating is float:
                    dw_forward_plane_f(&g, &x[n, c, 0, 0], &w[c * M, 0],
                                       &bias[c * M] if has_bias else NULL, &y[n, c * M, 0, 0], b)
                else:
                    dw_forward_plane_d(&g, &x[n, c, 0, 0], &w[c * M, 0],
                                       &bias[c * M] if has_bias else NULL, &y[n, c * M, 0, 0], b)
    finally:
        free(coffs)


def depthwise_backward(const floating[:, :, :, ::1] x,       # IN  (N, C, H, W)
                       const floating[:, :, :, ::1] grad_y,  # IN  (N, C*M, OH, OW)
                       const floating[:, ::1] wflip,         # IN  (C*M, KH*KW), taps reversed
                       floating[:, :, :, ::1] grad_x,        # OUT (N, C, H, W) or None: skip
                       floating[:, ::1] grad_w,              # OUT (C*M, KH*KW)
                       floating[::1] grad_b,                 # OUT (C*M,)
                       floating[:, ::1] buf,                 # scratch (threads, scratch_elements)
                       int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                       int num_threads):
    """grad_x (unless None), grad_w and grad_b of depthwise_forward: per channel, its
    images in order."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = grad_y.shape[2], OW = grad_y.shape[3], M = grad_y.shape[1] // C
    cdef Py_ssize_t n, c
    cdef bint need_x = grad_x is not None
    cdef floating* b = NULL
    cdef floating* gx = NULL
    cdef dw_geometry g
    grad_w[:, :] = 0
    grad_b[:] = 0
    if N * C == 0:
        if need_x:
            grad_x[:, :, :, :] = 0
        return
    cdef Py_ssize_t* coffs = layout(&g, H, W, OH, OW, M, KH, KW, sh, sw, ph, pw, dh, dw,
                                    sizeof(floating))
    try:
        b = NULL   # set before the block (firstprivate: see direct.pyx)
        with nogil, parallel(num_threads=num_threads):
            b = &buf[threadid(), 0]
            memset(b, 0, (g.x_elements + g.gy_elements) * sizeof(floating))
            for c in prange(C, schedule="static"):
                for n in range(N):
                    gx = &grad_x[n, c, 0, 0] if need_x else NULL
                    if floating is float:
                        dw_backward_plane_f(&g, &x[n, c, 0, 0], &grad_y[n, c * M, 0, 0],
                                            &wflip[c * M, 0], gx, &grad_w[c * M, 0],
                                            &grad_b[c * M], b, b + g.x_elements)
                    else:
                        dw_backward_plane_d(&g, &x[n, c, 0, 0], &grad_y[n, c * M, 0, 0],
                                            &wflip[c * M, 0], gx, &grad_w[c * M, 0],
                                            &grad_b[c * M], b, b + g.x_elements)
    finally:
        free(coffs)
