"""2-D pooling kernels (max, average, global average): forward and backward, NCHW.

Every (image, channel) plane is independent, so the OpenMP threads split the
N*C planes between them and never write to the same output element.
Semantics follow torch.nn.functional: max pooling treats padding as -inf,
average pooling counts padded zeros in the divisor (count_include_pad).

Inside the parallel loops each plane is reached through plain pointers held in
thread-private locals: memoryview structs are shared across the OpenMP region,
and the compiler would reload their data pointer and strides after every store.

Max pooling windows that lie wholly inside the plane (all of them without
padding), and 2x2 stride-2 average pooling, take vectorised kernels (src/pool.h) that
give the same bits as the generic loops: they visit each window's elements in the
same order with the same select or sum, only for a row of windows side by side;
2x2 stride-2 max pooling has its own kernel.  Callers pass vectorised=False to run
the generic loops (the tests compare the two).
"""
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.string cimport memset

cimport cnnframe_ext._simd as _simd
from cnnframe_ext import runtime as _runtime


cdef extern from "src/pool.h":
    float cnnf_select_f(int, float, float) noexcept nogil
    double cnnf_select_d(int, double, double) noexcept nogil
    void max_pool_2x2_f(const float*, int, float*, long long*, int, int) noexcept nogil
    void max_pool_2x2_d(const double*, int, double*, long long*, int, int) noexcept nogil
    void max_pool_inside_f(const float*, int, float*, long long*, int, int, int, int, int, int, int, int, int) noexcept nogil
    void max_pool_inside_d(const double*, int, double*, long long*, int, int, int, int, int, int, int, int, int) noexcept nogil
    void avg_pool_2x2_f(const float*, int, float*, int, int) noexcept nogil
    void avg_pool_2x2_d(const double*, int, double*, int, int) noexcept nogil
    void avg_unpool_2x2_f(const float*, int, int, int, int, float*) noexcept nogil
    void avg_unpool_2x2_d(const double*, int, int, int, int, double*) noexcept nogil


def _set_isa(int level):
    """Use instruction-set level `level` in this module's kernels, capped at the CPU's;
    return the level now used (see cnnframe_ext.runtime)."""
    _simd.cnnf_set_isa(level)
    return _simd.cnnf_isa()


_runtime._register(__name__, _set_isa)


cdef inline floating select(bint t, floating p, floating q) noexcept nogil:
    """t ? p : q without a branch (random data defeats branch prediction)."""
    if floating is float:
        return cnnf_select_f(t, p, q)
    else:
        return cnnf_select_d(t, p, q)


cdef inline void max_pool_2x2(const floating* x, int W, floating* y, long long* a,
                              int OH, int OW) noexcept nogil:
    if floating is float:
        max_pool_2x2_f(x, W, y, a, OH, OW)
    else:
        max_pool_2x2_d(x, W, y, a, OH, OW)


cdef inline void max_pool_inside(const floating* x, int W, floating* y, long long* a, int ys,
                                 int h0, int w0, int OHr, int OWr, int kh, int kw, int sh,
                                 int sw) noexcept nogil:
    if floating is float:
        max_pool_inside_f(x, W, y, a, ys, h0, w0, OHr, OWr, kh, kw, sh, sw)
    else:
        max_pool_inside_d(x, W, y, a, ys, h0, w0, OHr, OWr, kh, kw, sh, sw)


cdef inline void avg_pool_2x2(const floating* x, int W, floating* y, int OH,
                              int OW) noexcept nogil:
    if floating is float:
        avg_pool_2x2_f(x, W, y, OH, OW)
    else:
        avg_pool_2x2_d(x, W, y, OH, OW)


cdef inline void avg_unpool_2x2(const floating* g, int OH, int OW, int H, int W,
                                floating* x) noexcept nogil:
    if floating is float:
        avg_unpool_2x2_f(g, OH, OW, H, W, x)
    else:
        avg_unpool_2x2_d(g, OH, OW, H, W, x)


cdef inline void max_pool_windows(const floating* xp, int H, int W, floating* yp,
                                  long long* ap, int OW, int oh0, int oh1, int ow0, int ow1,
                                  int kh, int kw, int sh, int sw, int ph, int pw) noexcept nogil:
    """Max pooling of windows [oh0, oh1) x [ow0, ow1) of one plane: yp (OH, OW) and its
    argmax ap from xp (H, W), clipping each window to the plane."""
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, best_i, i
    cdef floating best, v
    cdef bint take
    for oh in range(oh0, oh1):
        h0 = oh * sh - ph
        h1 = min(h0 + kh, H)
        h0 = max(h0, 0)
        for ow in range(ow0, ow1):
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
                    # NaN propagates as in PyTorch: the first NaN wins and stays.
                    take = (v > best) | ((v != v) & (best == best))
                    best = select(take, v, best)
                    best_i = best_i + take * (i - best_i)
            yp[oh * OW + ow] = best
            ap[oh * OW + ow] = best_i


cdef inline int first_inside(int s, int p) noexcept nogil:
    """The first window (stride s, padding p) that starts inside the plane: ceil(p / s)."""
    return (p + s - 1) // s


cdef inline int end_inside(int n, int k, int s, int p, int out) noexcept nogil:
    """One past the last of `out` windows (size k, stride s, padding p) that ends inside a
    plane side of n pixels."""
    if n + p - k < 0:
        return 0
    return min(out, (n + p - k) // s + 1)


def max_pool2d_forward(const floating[:, :, ::1] x,   # IN  (N*C, H, W)
                       floating[:, :, ::1] y,         # OUT (N*C, OH, OW)
                       long long[:, :, ::1] argmax,   # OUT (N*C, OH, OW) flat h*W+w index in the plane
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads,
                       bint vectorised=True):
    """Windows wholly inside the plane (all of them without padding) run vectorised, 2x2
    stride-2 ones in their own kernel; the rest, a border where padding clips windows, in
    the generic loop.  vectorised=False runs every window through the generic loop."""
    cdef Py_ssize_t planes = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef bint two_by_two = (vectorised and kh == 2 and kw == 2 and sh == 2 and sw == 2
                            and ph == 0 and pw == 0)
    # The windows inside: rows [oh0, oh1), columns [ow0, ow1) (none if not vectorised).
    cdef int oh0 = first_inside(sh, ph), oh1 = end_inside(H, kh, sh, ph, OH)
    cdef int ow0 = first_inside(sw, pw), ow1 = end_inside(W, kw, sw, pw, OW)
    if not vectorised or oh1 <= oh0 or ow1 <= ow0:
        oh0 = oh1 = ow0 = ow1 = 0
    cdef Py_ssize_t q
    cdef const floating* xp
    cdef floating* yp
    cdef long long* ap
    with nogil, parallel(num_threads=num_threads):
        for q in prange(planes, schedule="static"):
            xp = &x[q, 0, 0]
            yp = &y[q, 0, 0]
            ap = &argmax[q, 0, 0]
            if two_by_two:
                max_pool_2x2(xp, W, yp, ap, OH, OW)
            else:
                if oh1 > oh0:
                    max_pool_inside(xp, W, yp + oh0 * OW + ow0, ap + oh0 * OW + ow0, OW,
                                    oh0 * sh - ph, ow0 * sw - pw, oh1 - oh0, ow1 - ow0,
                                    kh, kw, sh, sw)
                # the border: rows above and below the inside, then its left and right
                max_pool_windows(xp, H, W, yp, ap, OW, 0, oh0, 0, OW, kh, kw, sh, sw, ph, pw)
                max_pool_windows(xp, H, W, yp, ap, OW, oh1, OH, 0, OW, kh, kw, sh, sw, ph, pw)
                max_pool_windows(xp, H, W, yp, ap, OW, oh0, oh1, 0, ow0, kh, kw, sh, sw, ph, pw)
                max_pool_windows(xp, H, W, yp, ap, OW, oh0, oh1, ow1, OW, kh, kw, sh, sw, ph, pw)


def max_pool2d_backward(const floating[:, :, ::1] grad_y,   # IN  (N*C, OH, OW)
                        const long long[:, :, ::1] argmax,  # IN  (N*C, OH, OW)
                        floating[:, ::1] grad_x,            # OUT (N*C, H*W)
                        int num_threads):
    """Scatter grad_y onto zeros at argmax; return how many argmaxes lie outside
    [0, H*W) (those are skipped, and the caller raises).

    Checking the indices here, in the loop that reads them anyway, saves the caller
    two passes over argmax (argmax.min() and .max() took as long as this kernel).
    Zeroing a plane and scattering onto it (both in L1) also measured faster than
    writing each grad_x element once from a vectorised 2x2 kernel.
    """
    cdef Py_ssize_t planes = grad_y.shape[0]
    cdef Py_ssize_t P = <Py_ssize_t> grad_y.shape[1] * grad_y.shape[2]
    cdef Py_ssize_t HW = grad_x.shape[1]
    cdef Py_ssize_t q, i, outside = 0
    cdef long long k
    cdef const floating* gp
    cdef const long long* ap
    cdef floating* xp
    with nogil, parallel(num_threads=num_threads):
        for q in prange(planes, schedule="static"):
            gp = &grad_y[q, 0, 0]
            ap = &argmax[q, 0, 0]
            xp = &grad_x[q, 0]
            memset(xp, 0, HW * sizeof(floating))
            for i in range(P):
                k = ap[i]
                if <unsigned long long> k < <unsigned long long> HW:
                    xp[k] += gp[i]
                else:
                    outside += 1
    return outside


def avg_pool2d_forward(const floating[:, :, ::1] x,   # IN  (N*C, H, W)
                       floating[:, :, ::1] y,         # OUT (N*C, OH, OW)
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads,
                       bint vectorised=True):
    """vectorised=False runs every geometry through the generic loop (for tests)."""
    cdef Py_ssize_t planes = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef bint two_by_two = (vectorised and kh == 2 and kw == 2 and sh == 2 and sw == 2
                            and ph == 0 and pw == 0)
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, hs, ws, he, we
    cdef floating acc
    cdef const floating* xp
    cdef floating* yp
    with nogil, parallel(num_threads=num_threads):
        for q in prange(planes, schedule="static"):
            xp = &x[q, 0, 0]
            yp = &y[q, 0, 0]
            if two_by_two:
                avg_pool_2x2(xp, W, yp, OH, OW)
            else:
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
                        # In 64 bits: a window of 46341 x 46341 overflows an int.
                        yp[oh * OW + ow] = acc / <floating> (<Py_ssize_t> (he - hs) * (we - ws))


def avg_pool2d_backward(const floating[:, :, ::1] grad_y,  # IN  (N*C, OH, OW)
                        floating[:, :, ::1] grad_x,        # OUT (N*C, H, W)
                        int kh, int kw, int sh, int sw, int ph, int pw, int num_threads,
                        bint vectorised=True):
    """vectorised=False runs every geometry through the generic loop (for tests)."""
    cdef Py_ssize_t planes = grad_y.shape[0]
    cdef int H = grad_x.shape[1], W = grad_x.shape[2], OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef bint two_by_two = (vectorised and kh == 2 and kw == 2 and sh == 2 and sw == 2
                            and ph == 0 and pw == 0)
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, hs, ws, he, we
    cdef floating g
    cdef const floating* gp
    cdef floating* xp
    with nogil, parallel(num_threads=num_threads):
        for q in prange(planes, schedule="static"):
            gp = &grad_y[q, 0, 0]
            xp = &grad_x[q, 0, 0]
            if two_by_two:
                avg_unpool_2x2(gp, OH, OW, H, W, xp)
            else:
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
                        g = gp[oh * OW + ow] / <floating> (<Py_ssize_t> (he - hs) * (we - ws))
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
