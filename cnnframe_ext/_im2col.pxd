# im2col / col2im for one image, shared by the convolution kernels.
#
# The column matrix of one image is row-major (C*KH*KW, OH*OW): row
# k = (c*KH + i)*KW + j holds input pixel (c, oh*sh - ph + i*dh, ow*sw - pw + j*dw)
# for every output position, zero where that pixel falls in the padding.
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
                        int KH, int KW, int OH, int OW,
                        int sh, int sw, int ph, int pw, int dh, int dw,
                        floating* col) noexcept nogil:
    """x: IN (C, H, W) one image; col: OUT (C*KH*KW, OH*OW)."""
    cdef int c, i, j, oh, ow, ih, iw, oh_lo, oh_hi, ow_lo, ow_hi
    cdef floating* row
    cdef const floating* xrow
    cdef Py_ssize_t P = <Py_ssize_t> OH * OW
    for c in range(C):
        for i in range(KH):
            _valid_range(OH, H, sh, ph, i * dh, &oh_lo, &oh_hi)
            for j in range(KW):
                _valid_range(OW, W, sw, pw, j * dw, &ow_lo, &ow_hi)
                row = col + ((<Py_ssize_t> c * KH + i) * KW + j) * P
                if oh_lo > 0:
                    memset(row, 0, <size_t> oh_lo * OW * sizeof(floating))
                for oh in range(oh_lo, oh_hi):
                    ih = oh * sh - ph + i * dh
                    xrow = x + (<Py_ssize_t> c * H + ih) * W
                    if ow_lo > 0:
                        memset(row + oh * OW, 0, <size_t> ow_lo * sizeof(floating))
                    if sw == 1:
                        if ow_hi > ow_lo:
                            memcpy(row + oh * OW + ow_lo, xrow + ow_lo - pw + j * dw,
                                   <size_t> (ow_hi - ow_lo) * sizeof(floating))
                    else:
                        iw = ow_lo * sw - pw + j * dw
                        for ow in range(ow_lo, ow_hi):
                            row[oh * OW + ow] = xrow[iw]
                            iw = iw + sw
                    if ow_hi < OW:
                        memset(row + oh * OW + ow_hi, 0, <size_t> (OW - ow_hi) * sizeof(floating))
                if oh_hi < OH:
                    memset(row + <Py_ssize_t> oh_hi * OW, 0,
                           <size_t> (OH - oh_hi) * OW * sizeof(floating))


cdef inline void col2im(const floating* col, int C, int H, int W,
                        int KH, int KW, int OH, int OW,
                        int sh, int sw, int ph, int pw, int dh, int dw,
                        floating* x) noexcept nogil:
    """col: IN (C*KH*KW, OH*OW); x: OUT (C, H, W), zeroed here, then summed into."""
    cdef int c, i, j, oh, ow, ih, iw, oh_lo, oh_hi, ow_lo, ow_hi
    cdef const floating* row
    cdef floating* xrow
    cdef Py_ssize_t P = <Py_ssize_t> OH * OW
    memset(x, 0, <size_t> C * H * W * sizeof(floating))
    for c in range(C):
        for i in range(KH):
            _valid_range(OH, H, sh, ph, i * dh, &oh_lo, &oh_hi)
            for j in range(KW):
                _valid_range(OW, W, sw, pw, j * dw, &ow_lo, &ow_hi)
                row = col + ((<Py_ssize_t> c * KH + i) * KW + j) * P
                for oh in range(oh_lo, oh_hi):
                    ih = oh * sh - ph + i * dh
                    xrow = x + (<Py_ssize_t> c * H + ih) * W
                    iw = ow_lo * sw - pw + j * dw
                    for ow in range(ow_lo, ow_hi):
                        xrow[iw] += row[oh * OW + ow]
                        iw = iw + sw
