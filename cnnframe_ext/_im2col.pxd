# im2col / col2im over a block of output rows of one image, shared by the conv kernels.
#
# The column matrix is row-major with leading dimension `ld`: row
# k = (c*KH + i)*KW + j, column (oh - oh0)*OW + ow holds input pixel
# (c, oh*sh - ph + i*dh, ow*sw - pw + j*dw), zero where that falls in the padding.
# Several images can share one matrix side by side (the caller offsets `col`).
from cython cimport floating
from libc.string cimport memset, memcpy


cdef inline void _valid_range(int out_size, int in_size, int stride, int pad,
                              int offset, int* lo, int* hi) noexcept nogil:
    """Output positions o in [lo, hi) for which o*stride - pad + offset lies in [0, in_size)."""
    cdef int start = pad - offset  # need o*stride >= start
    cdef int a = 0
    if start > 0:
        a = (start + stride - 1) // stride
    cdef int stop = in_size + pad - offset  # need o*stride < stop
    cdef int b = 0
    if stop > 0:
        b = (stop + stride - 1) // stride
    if b > out_size:
        b = out_size
    if a > b:
        a = b
    lo[0] = a
    hi[0] = b


cdef inline void im2col(const floating* x, int C, int H, int W,
                        int KH, int KW, int OW,
                        int sh, int sw, int ph, int pw, int dh, int dw,
                        int oh0, int oh1, floating* col, Py_ssize_t ld) noexcept nogil:
    """x: IN (C, H, W) one image; col: OUT rows C*KH*KW, columns (oh1-oh0)*OW, leading dim ld."""
    cdef int c, i, j, oh, ow, ih, iw, lo, hi, ow_lo, ow_hi
    cdef floating* row
    cdef floating* dst
    cdef const floating* xrow
    cdef Py_ssize_t ncols = <Py_ssize_t> (oh1 - oh0) * OW
    for c in range(C):
        for i in range(KH):
            _valid_range(oh1, H, sh, ph, i * dh, &lo, &hi)
            if lo < oh0:
                lo = oh0
            if hi < lo:
                hi = lo
            for j in range(KW):
                _valid_range(OW, W, sw, pw, j * dw, &ow_lo, &ow_hi)
                row = col + ((<Py_ssize_t> c * KH + i) * KW + j) * ld
                if lo > oh0:
                    memset(row, 0, <size_t> (lo - oh0) * OW * sizeof(floating))
                for oh in range(lo, hi):
                    ih = oh * sh - ph + i * dh
                    xrow = x + (<Py_ssize_t> c * H + ih) * W
                    dst = row + <Py_ssize_t> (oh - oh0) * OW
                    if ow_lo > 0:
                        memset(dst, 0, <size_t> ow_lo * sizeof(floating))
                    if sw == 1:
                        if ow_hi > ow_lo:
                            memcpy(dst + ow_lo, xrow + ow_lo - pw + j * dw,
                                   <size_t> (ow_hi - ow_lo) * sizeof(floating))
                    else:
                        iw = ow_lo * sw - pw + j * dw
                        for ow in range(ow_lo, ow_hi):
                            dst[ow] = xrow[iw]
                            iw = iw + sw
                    if ow_hi < OW:
                        memset(dst + ow_hi, 0, <size_t> (OW - ow_hi) * sizeof(floating))
                if hi < oh1:
                    memset(row + <Py_ssize_t> (hi - oh0) * OW, 0,
                           <size_t> (oh1 - hi) * OW * sizeof(floating))


cdef inline void col2im(const floating* col, int C, int H, int W,
                        int KH, int KW, int OW,
                        int sh, int sw, int ph, int pw, int dh, int dw,
                        int oh0, int oh1, Py_ssize_t ld, floating* x) noexcept nogil:
    """Adjoint of im2col: col IN (layout as im2col); x INOUT (C, H, W), summed into."""
    cdef int c, i, j, oh, ow, ih, iw, lo, hi, ow_lo, ow_hi
    cdef const floating* row
    cdef const floating* src
    cdef floating* xrow
    for c in range(C):
        for i in range(KH):
            _valid_range(oh1, H, sh, ph, i * dh, &lo, &hi)
            if lo < oh0:
                lo = oh0
            for j in range(KW):
                _valid_range(OW, W, sw, pw, j * dw, &ow_lo, &ow_hi)
                row = col + ((<Py_ssize_t> c * KH + i) * KW + j) * ld
                for oh in range(lo, hi):
                    ih = oh * sh - ph + i * dh
                    # first valid pixel of this row; later ones every sw pixels
                    xrow = x + (<Py_ssize_t> c * H + ih) * W + (ow_lo * sw - pw + j * dw)
                    src = row + <Py_ssize_t> (oh - oh0) * OW + ow_lo
                    if sw == 1:
                        for ow in range(ow_hi - ow_lo):
                            xrow[ow] += src[ow]
                    else:
                        for ow in range(ow_hi - ow_lo):
                            xrow[ow * sw] += src[ow]
