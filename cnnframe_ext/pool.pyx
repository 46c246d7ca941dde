"""2-D pooling kernels (max, average, global average): forward and backward, NCHW.

Every (image, channel) plane is independent, so the OpenMP threads split the
N*C planes between them and never write to the same output element.
Semantics follow torch.nn.functional: max pooling treats padding as -inf,
average pooling counts padded zeros in the divisor (count_include_pad).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset


def max_pool2d_forward(const floating[:, :, ::1] x,   # IN  (N*C, H, W)
                       floating[:, :, ::1] y,         # OUT (N*C, OH, OW)
                       long long[:, :, ::1] argmax,   # OUT (N*C, OH, OW) flat h*W+w index in the plane
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads):
    cdef Py_ssize_t planes = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, best_i
    cdef floating best, v
    cdef bint take
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        for oh in range(OH):
            h0 = oh * sh - ph
            h1 = min(h0 + kh, H)
            h0 = max(h0, 0)
            for ow in range(OW):
                w0 = ow * sw - pw
                w1 = min(w0 + kw, W)
                w0 = max(w0, 0)
                # The window always holds at least one real pixel (padding <= kernel/2).
                best_i = h0 * W + w0
                best = x[q, h0, w0]
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        v = x[q, ih, iw]
                        # Branch-free select (random data defeats branch prediction).
                        # NaN propagates as in PyTorch: the first NaN wins and stays.
                        take = (v > best) | ((v != v) & (best == best))
                        best = v if take else best
                        best_i = (ih * W + iw) if take else best_i
                y[q, oh, ow] = best
                argmax[q, oh, ow] = best_i


def max_pool2d_backward(const floating[:, :, ::1] grad_y,   # IN  (N*C, OH, OW)
                        const long long[:, :, ::1] argmax,  # IN  (N*C, OH, OW)
                        floating[:, ::1] grad_x,            # OUT (N*C, H*W)
                        int num_threads):
    cdef Py_ssize_t planes = grad_y.shape[0]
    cdef int OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t HW = grad_x.shape[1]
    cdef Py_ssize_t q
    cdef int oh, ow
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        memset(&grad_x[q, 0], 0, HW * sizeof(floating))
        for oh in range(OH):
            for ow in range(OW):
                grad_x[q, argmax[q, oh, ow]] += grad_y[q, oh, ow]


def avg_pool2d_forward(const floating[:, :, ::1] x,   # IN  (N*C, H, W)
                       floating[:, :, ::1] y,         # OUT (N*C, OH, OW)
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads):
    cdef Py_ssize_t planes = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, hs, ws, he, we
    cdef floating acc
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        for oh in range(OH):
            hs = oh * sh - ph
            # The divisor counts padded cells but not cells past the padding.
            he = min(hs + kh, H + ph)
            h0 = max(hs, 0)
            h1 = min(hs + kh, H)
            for ow in range(OW):
                ws = ow * sw - pw
                we = min(ws + kw, W + pw)
                w0 = max(ws, 0)
                w1 = min(ws + kw, W)
                acc = 0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        acc = acc + x[q, ih, iw]
                y[q, oh, ow] = acc / ((he - hs) * (we - ws))


def avg_pool2d_backward(const floating[:, :, ::1] grad_y,  # IN  (N*C, OH, OW)
                        floating[:, :, ::1] grad_x,        # OUT (N*C, H, W)
                        int kh, int kw, int sh, int sw, int ph, int pw, int num_threads):
    cdef Py_ssize_t planes = grad_y.shape[0]
    cdef int H = grad_x.shape[1], W = grad_x.shape[2], OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, hs, ws, he, we
    cdef floating g
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        memset(&grad_x[q, 0, 0], 0, <size_t> H * W * sizeof(floating))
        for oh in range(OH):
            hs = oh * sh - ph
            he = min(hs + kh, H + ph)
            h0 = max(hs, 0)
            h1 = min(hs + kh, H)
            for ow in range(OW):
                ws = ow * sw - pw
                we = min(ws + kw, W + pw)
                w0 = max(ws, 0)
                w1 = min(ws + kw, W)
                g = grad_y[q, oh, ow] / ((he - hs) * (we - ws))
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        grad_x[q, ih, iw] += g


def global_avg_pool2d_forward(const floating[:, ::1] x,  # IN  (N*C, H*W)
                              floating[::1] y,           # OUT (N*C,)
                              int num_threads):
    cdef Py_ssize_t planes = x.shape[0], HW = x.shape[1], q, i
    cdef floating acc
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        acc = 0
        for i in range(HW):
            acc = acc + x[q, i]
        y[q] = acc / HW


def global_avg_pool2d_backward(const floating[::1] grad_y,  # IN  (N*C,)
                               floating[:, ::1] grad_x,     # OUT (N*C, H*W)
                               int num_threads):
    cdef Py_ssize_t planes = grad_x.shape[0], HW = grad_x.shape[1], q, i
    cdef floating g
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        g = grad_y[q] / HW
        for i in range(HW):
            grad_x[q, i] = g
