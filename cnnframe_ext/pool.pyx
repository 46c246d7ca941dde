"""2-D pooling kernels (max, average, global average): forward and backward, NCHW.

Every (image, channel) plane is independent, so the OpenMP threads split the
N*C planes between them and never write to the same output element.
Semantics follow torch.nn.functional: max pooling treats padding as -inf,
average pooling counts padded zeros in the divisor (count_include_pad).

Inside the parallel loops each plane is reached through plain pointers held in
thread-private locals: memoryview structs are shared across the OpenMP region,
and the compiler would reload their data pointer and strides after every store.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset


cdef inline void max_pool_plane(const floating* xp, int H, int W, floating* yp,
                                long long* ap, int OH, int OW, int kh, int kw,
                                int sh, int sw, int ph, int pw) noexcept nogil:
    """Max pooling of one plane: yp (OH, OW) and its argmax ap from xp (H, W)."""
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, best_i, i
    cdef floating best, v
    cdef bint take
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
            best = xp[best_i]
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    i = ih * W + iw
                    v = xp[i]
                    # Branch-free select (random data defeats branch prediction).
                    # NaN propagates as in PyTorch: the first NaN wins and stays.
                    take = (v > best) | ((v != v) & (best == best))
                    best = v if take else best
                    best_i = i if take else best_i
            yp[oh * OW + ow] = best
            ap[oh * OW + ow] = best_i


def max_pool2d_forward(const floating[:, :, ::1] x,   # IN  (N*C, H, W)
                       floating[:, :, ::1] y,         # OUT (N*C, OH, OW)
                       long long[:, :, ::1] argmax,   # OUT (N*C, OH, OW) flat h*W+w index in the plane
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads):
    cdef Py_ssize_t planes = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t q
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        max_pool_plane(&x[q, 0, 0], H, W, &y[q, 0, 0], &argmax[q, 0, 0], OH, OW,
                       kh, kw, sh, sw, ph, pw)


def max_pool2d_backward(const floating[:, :, ::1] grad_y,   # IN  (N*C, OH, OW)
                        const long long[:, :, ::1] argmax,  # IN  (N*C, OH, OW)
                        floating[:, ::1] grad_x,            # OUT (N*C, H*W)
                        int num_threads):
    cdef Py_ssize_t planes = grad_y.shape[0]
    cdef Py_ssize_t P = <Py_ssize_t> grad_y.shape[1] * grad_y.shape[2]
    cdef Py_ssize_t HW = grad_x.shape[1]
    cdef Py_ssize_t q, i
    cdef const floating* gp
    cdef const long long* ap
    cdef floating* xp
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        gp = &grad_y[q, 0, 0]
        ap = &argmax[q, 0, 0]
        xp = &grad_x[q, 0]
        memset(xp, 0, HW * sizeof(floating))
        for i in range(P):
            xp[ap[i]] += gp[i]


def avg_pool2d_forward(const floating[:, :, ::1] x,   # IN  (N*C, H, W)
                       floating[:, :, ::1] y,         # OUT (N*C, OH, OW)
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads):
    cdef Py_ssize_t planes = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, hs, ws, he, we
    cdef floating acc
    cdef const floating* xp
    cdef floating* yp
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        xp = &x[q, 0, 0]
        yp = &y[q, 0, 0]
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
                        acc = acc + xp[ih * W + iw]
                yp[oh * OW + ow] = acc / ((he - hs) * (we - ws))


def avg_pool2d_backward(const floating[:, :, ::1] grad_y,  # IN  (N*C, OH, OW)
                        floating[:, :, ::1] grad_x,        # OUT (N*C, H, W)
                        int kh, int kw, int sh, int sw, int ph, int pw, int num_threads):
    cdef Py_ssize_t planes = grad_y.shape[0]
    cdef int H = grad_x.shape[1], W = grad_x.shape[2], OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, hs, ws, he, we
    cdef floating g
    cdef const floating* gp
    cdef floating* xp
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        gp = &grad_y[q, 0, 0]
        xp = &grad_x[q, 0, 0]
        memset(xp, 0, <size_t> H * W * sizeof(floating))
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
                g = gp[oh * OW + ow] / ((he - hs) * (we - ws))
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        xp[ih * W + iw] += g


def global_avg_pool2d_forward(const floating[:, ::1] x,  # IN  (N*C, H*W)
                              floating[::1] y,           # OUT (N*C,)
                              int num_threads):
    cdef Py_ssize_t planes = x.shape[0], HW = x.shape[1], q, i
    cdef floating acc
    cdef const floating* xp
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        xp = &x[q, 0]
        acc = 0
        for i in range(HW):
            acc = acc + xp[i]
        y[q] = acc / HW


def global_avg_pool2d_backward(const floating[::1] grad_y,  # IN  (N*C,)
                               floating[:, ::1] grad_x,     # OUT (N*C, H*W)
                               int num_threads):
    cdef Py_ssize_t planes = grad_x.shape[0], HW = grad_x.shape[1], q, i
    cdef floating g
    cdef floating* xp
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        xp = &grad_x[q, 0]
        g = grad_y[q] / HW
        for i in range(HW):
            xp[i] = g
