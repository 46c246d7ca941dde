"""Direct (no im2col) convolution for stride-1, undilated, ungrouped convs, NCHW.

Work items are bands of R output rows of one image.  For its band a thread
builds KW shifted, zero-padded copies of the input rows the band reads,
    xs[c, kw, r, j] = xpad[c, oh0 + r, j + kw]     (r < R + KH - 1, j < OW)
so that for every tap (c, kh, kw) the inputs of the band's output pixels,
flattened as p = (oh - oh0) * OW + ow, are one contiguous run:
    y[f, oh0*OW + p] = bias[f] + sum_{c, kw, kh} w[f, c, kh, kw] * xs[c, kw, kh*OW + p]
Any width works the same way (8x8 maps fill whole vectors, rows need no edge
cases), and the copies move about 1/(F*KH) as many elements as there are
multiply-adds.  In "same" convs (OW == W) each (c, kw) block is one shifted run
of the input plane.  (Reading x through AVX-512 masked loads instead, without
copies, measured 2-24% slower: misaligned loads, a mask per tap.)

A micro-kernel keeps FB output channels x V*64 bytes of consecutive pixels in
registers (at most 24 vectors with AVX-512, 12 with AVX2), loads the input
vectors of a tap, broadcasts FB weights and FMAs; the caller packs the weights as
(F/FB, C, KW, KH, FB) so each tap's FB weights are adjacent.  Every output pixel
is summed in the same order (bias, then c, kw, kh) whatever its band, strip or
thread, so results do not depend on the thread count.  The micro-kernels exist
per instruction-set level (src/direct.h lists them); has_tile() says which the
active level (cnnframe_ext.runtime) has.  The caller validates every argument.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset

cimport cnnframe_ext._simd as _simd
from cnnframe_ext import runtime as _runtime


cdef extern from "src/direct.h":
    void dc_band_float(const float* x, int C, int H, int W, const float* w, const float* bias,
                       int F, int KH, int KW, int ph, int pw, int sh, int sw, int dh, int dw,
                       int oh0, int R, int OH, int OW, int FB, int V, float* buf,
                       float* y) noexcept nogil
    void dc_band_double(const double* x, int C, int H, int W, const double* w,
                        const double* bias, int F, int KH, int KW, int ph, int pw, int sh,
                        int sw, int dh, int dw, int oh0, int R, int OH, int OW, int FB, int V,
                        double* buf, double* y) noexcept nogil
    int dc_has_tile(int FB, int V) noexcept nogil
    void dc_dw_band_float(const float* x, int C, int H, int W, const float* gy, Py_ssize_t gys,
                          int F, int KH, int KW, int ph, int pw, int sh, int sw, int dh, int dw,
                          int oh0, int R, int OW, float* buf, float* gw, float* gb) noexcept nogil
    int dc_has_grad_weight() noexcept nogil
    Py_ssize_t dc_band_scratch(int itemsize, int C, int KH, int KW, int R, int OW, int V) noexcept nogil
    Py_ssize_t dc_band_scratch_taps(int itemsize, int C, int KH, int KW, int R, int OW, int V) noexcept nogil
    Py_ssize_t dc_dw_band_scratch(int itemsize, int C, int F, int KH, int KW, int R, int OW,
                                  int taps) noexcept nogil


def _set_isa(int level):
    """Use instruction-set level `level` in this module's kernels, capped at the CPU's;
    return the level now used (see cnnframe_ext.runtime)."""
    _simd.cnnf_set_isa(level)
    return _simd.cnnf_isa()


_runtime._register(__name__, _set_isa)


def has_tile(int fb, int v):
    """True if the active instruction set has an (FB channels x V*64 bytes) micro-kernel."""
    return dc_has_tile(fb, v) != 0


def band_scratch(int itemsize, int C, int KH, int KW, int R, int OW, int V, bint taps=False,
                 int grad_channels=0):
    """Scratch elements one thread needs for bands of R rows with V-vector strips (taps:
    of a strided or dilated conv, whose bands hold one copy per tap); grad_channels=F:
    for the weight gradient's bands instead (V is then 1), which also copy F channels of
    grad_y."""
    if grad_channels:
        return dc_dw_band_scratch(itemsize, C, grad_channels, KH, KW, R, OW, taps)
    if taps:
        return dc_band_scratch_taps(itemsize, C, KH, KW, R, OW, V)
    return dc_band_scratch(itemsize, C, KH, KW, R, OW, V)


def pack_weight(const floating[:, :, :, ::1] weight,   # IN  (F, C, KH, KW)
                floating[:, :, :, :, ::1] packed,      # OUT (ceil(Fo/FB), Ci, KW, KH, FB)
                bint transposed):
    """Pack a conv's weights for the micro-kernels, zero-padding the last channel block.

    transposed=False packs weight itself (Fo = F out, Ci = C in).  transposed=True
    packs the kernel of the input gradient, w'[c, f, kh, kw] = weight[f, c, KH-1-kh,
    KW-1-kw] (Fo = C, Ci = F), without building it first.
    """
    cdef int NB = packed.shape[0], Ci = packed.shape[1], KW = packed.shape[2]
    cdef int KH = packed.shape[3], FB = packed.shape[4]
    cdef int Fo = weight.shape[1] if transposed else weight.shape[0]
    cdef int fb, c, kw, kh, j, f
    with nogil:
        for fb in range(NB):
            for c in range(Ci):
                for kw in range(KW):
                    for kh in range(KH):
                        for j in range(FB):
                            f = fb * FB + j
                            if f >= Fo:
                                packed[fb, c, kw, kh, j] = 0
                            elif transposed:
                                packed[fb, c, kw, kh, j] = weight[c, f, KH - 1 - kh, KW - 1 - kw]
                            else:
                                packed[fb, c, kw, kh, j] = weight[f, c, kh, kw]


def direct_conv2d(const floating[:, :, :, ::1] x,         # IN  (N, C, H, W)
                  const floating[:, :, :, :, ::1] w,      # IN  (F/FB, C, KW, KH, FB) packed, zero-padded
                  const floating[::1] bias,               # IN  (F/FB * FB,) zero-padded (zeros: no bias)
                  floating[:, :, :, ::1] y,               # OUT (N, F, OH, OW)
                  floating[:, ::1] buf,                   # scratch (threads, band_scratch(...))
                  int ph, int pw, int R, int V, int num_threads, int sh=1, int sw=1, int dh=1,
                  int dw=1):
    """y = conv2d(x, weight, bias, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw)) in
    bands of R output rows."""
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef int FB = w.shape[4], KW = w.shape[2], KH = w.shape[3]
    cdef int nbands = (OH + R - 1) // R
    cdef Py_ssize_t item, items = <Py_ssize_t> N * nbands
    cdef int n, oh0
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t = 0
    cdef floating* b = NULL
    if items == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        b = &buf[t, 0]
        for item in prange(items, schedule="guided"):
            n = item // nbands
            oh0 = (item % nbands) * R
            if floating is float:
                dc_band_float(&x[n, 0, 0, 0], C, H, W, &w[0, 0, 0, 0, 0], &bias[0], F, KH, KW,
                              ph, pw, sh, sw, dh, dw, oh0, min(R, OH - oh0), OH, OW, FB, V, b,
                              &y[n, 0, 0, 0])
            else:
                dc_band_double(&x[n, 0, 0, 0], C, H, W, &w[0, 0, 0, 0, 0], &bias[0], F, KH, KW,
                               ph, pw, sh, sw, dh, dw, oh0, min(R, OH - oh0), OH, OW, FB, V, b,
                               &y[n, 0, 0, 0])


def has_grad_weight():
    """True if the direct weight-gradient kernel (float32) is built (on every instruction set)."""
    return dc_has_grad_weight() != 0


def direct_conv2d_grad_weight(const float[:, :, :, ::1] x,       # IN  (N, C, H, W)
                              const float[:, :, :, ::1] grad_y,  # IN  (N, F, OH, OW)
                              float[:, ::1] grad_w,              # OUT (parts, F*C*KH*KW) partial sums
                              float[:, ::1] grad_b,              # OUT (parts, F) partial sums
                              float[:, ::1] buf,                 # scratch (threads, band_scratch(..., grad_channels=F))
                              int KH, int KW, int ph, int pw, int R, int num_threads,
                              int sh=1, int sw=1, int dh=1, int dw=1):
    """Partial sums of grad_weight and grad_bias of a conv with stride (sh, sw) and
    dilation (dh, dw), in bands of R rows.

    The images are cut into grad_w.shape[0] fixed partitions, each summed in image and
    band order into its own row, so the result does not depend on the thread count.
    Call only when has_grad_weight() is True.
    """
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = grad_y.shape[1], OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef int nparts = grad_w.shape[0]
    cdef Py_ssize_t P = <Py_ssize_t> OH * OW
    cdef bint taps = sh != 1 or sw != 1 or dh != 1 or dw != 1
    cdef Py_ssize_t need = dc_dw_band_scratch(4, C, F, KH, KW, min(R, OH), OW, taps)
    if buf.shape[1] < need:  # the kernel would write past the scratch rows
        raise ValueError(f"direct_conv2d_grad_weight: buf rows hold {buf.shape[1]} elements, "
                         f"fewer than band_scratch(..., grad_channels={F}) = {need}")
    cdef int part, n, oh0
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t = 0
    cdef float* b = NULL
    memset(&grad_w[0, 0], 0, grad_w.shape[0] * grad_w.shape[1] * sizeof(float))
    memset(&grad_b[0, 0], 0, grad_b.shape[0] * grad_b.shape[1] * sizeof(float))
    if N == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        b = &buf[t, 0]
        for part in prange(nparts, schedule="static"):
            for n in range(part * N // nparts, (part + 1) * N // nparts):
                oh0 = 0
                while oh0 < OH:
                    dc_dw_band_float(&x[n, 0, 0, 0], C, H, W, &grad_y[n, 0, oh0, 0], P, F,
                                     KH, KW, ph, pw, sh, sw, dh, dw, oh0, min(R, OH - oh0), OW, b,
                                     &grad_w[part, 0], &grad_b[part, 0])
                    oh0 = oh0 + R
