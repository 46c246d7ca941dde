"""2-D convolution (cross-correlation) kernels: forward and backward, NCHW.

Each image of the batch is handled by one OpenMP thread: it unfolds the image
into its own column buffer (im2col) and multiplies by the weights with a
single-threaded BLAS GEMM, one GEMM per group.  Images are independent, so the
threads never write to the same output; weight and bias gradients are summed
per thread and reduced at the end.  The caller (cnnframe.functional.conv)
validates every argument and owns the scratch buffers, which it reuses.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset

from cnnframe_ext._blas cimport gemm
from cnnframe_ext._im2col cimport im2col, col2im


def conv2d_forward(const floating[:, :, :, ::1] x,        # IN  (N, C, H, W)
                   const floating[:, :, :, ::1] weight,   # IN  (F, C/groups, KH, KW)
                   const floating[::1] bias,              # IN  (F,) or empty for no bias
                   floating[:, :, :, ::1] y,              # OUT (N, F, OH, OW)
                   floating[:, ::1] col,                  # scratch (threads, C*KH*KW*OH*OW)
                   int sh, int sw, int ph, int pw, int dh, int dw,
                   int groups, int num_threads):
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef int OH = y.shape[2], OW = y.shape[3]
    cdef int P = OH * OW
    cdef int Cg = C // groups, Fg = F // groups
    cdef int Kg = Cg * KH * KW
    cdef bint has_bias = bias.shape[0] > 0
    # A 1x1, stride-1, unpadded conv needs no unfolding: the image is its own column matrix.
    cdef bint direct = KH == 1 and KW == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
    cdef int n, g, f, t, p
    cdef const floating* cols
    cdef floating* out
    cdef floating beta
    if N == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        for n in prange(N, schedule="static"):
            if direct:
                cols = &x[n, 0, 0, 0]
            else:
                im2col(&x[n, 0, 0, 0], C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, &col[t, 0])
                cols = &col[t, 0]
            out = &y[n, 0, 0, 0]
            beta = 0
            if has_bias:
                beta = 1
                for f in range(F):
                    for p in range(P):
                        out[<Py_ssize_t> f * P + p] = bias[f]
            for g in range(groups):
                # y_g (P x Fg, col-major) = cols_g (P x Kg) @ W_g^T (Kg x Fg)
                gemm(c'N', c'N', P, Fg, Kg, 1, cols + <Py_ssize_t> g * Kg * P, P,
                     &weight[g * Fg, 0, 0, 0], Kg, beta, out + <Py_ssize_t> g * Fg * P, P)


def conv2d_backward(const floating[:, :, :, ::1] x,       # IN  (N, C, H, W)
                    const floating[:, :, :, ::1] weight,  # IN  (F, C/groups, KH, KW)
                    const floating[:, :, :, ::1] grad_y,  # IN  (N, F, OH, OW)
                    floating[:, :, :, ::1] grad_x,        # OUT (N, C, H, W), or 0-size to skip
                    floating[:, ::1] grad_w,              # OUT (threads, F*C/groups*KH*KW) per-thread sums
                    floating[:, ::1] grad_b,              # OUT (threads, F) per-thread sums
                    floating[:, ::1] col,                 # scratch (threads, C*KH*KW*OH*OW)
                    int sh, int sw, int ph, int pw, int dh, int dw,
                    int groups, int num_threads):
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef int OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef int P = OH * OW
    cdef int Cg = C // groups, Fg = F // groups
    cdef int Kg = Cg * KH * KW
    cdef bint want_x = grad_x.shape[0] > 0
    cdef bint direct = KH == 1 and KW == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0
    cdef int n, g, f, t, p
    cdef const floating* cols
    cdef const floating* gy
    cdef floating* gw
    cdef floating* dcol
    cdef floating acc
    memset(&grad_w[0, 0], 0, grad_w.shape[0] * grad_w.shape[1] * sizeof(floating))
    memset(&grad_b[0, 0], 0, grad_b.shape[0] * grad_b.shape[1] * sizeof(floating))
    if N == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        for n in prange(N, schedule="static"):
            gy = &grad_y[n, 0, 0, 0]
            gw = &grad_w[t, 0]
            for f in range(F):
                acc = 0
                for p in range(P):
                    acc = acc + gy[<Py_ssize_t> f * P + p]
                grad_b[t, f] += acc
            if direct:
                cols = &x[n, 0, 0, 0]
            else:
                im2col(&x[n, 0, 0, 0], C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, &col[t, 0])
                cols = &col[t, 0]
            for g in range(groups):
                # dW_g (Kg x Fg, col-major) += cols_g^T (Kg x P) @ gy_g (P x Fg)
                gemm(c'T', c'N', Kg, Fg, P, 1, cols + <Py_ssize_t> g * Kg * P, P,
                     gy + <Py_ssize_t> g * Fg * P, P, 1, gw + <Py_ssize_t> g * Fg * Kg, Kg)
            if want_x:
                # The column buffer is free again: reuse it for d(cols).
                dcol = &col[t, 0] if not direct else &grad_x[n, 0, 0, 0]
                for g in range(groups):
                    # dcols_g (P x Kg) = gy_g (P x Fg) @ W_g (Fg x Kg)
                    gemm(c'N', c'T', P, Kg, Fg, 1, gy + <Py_ssize_t> g * Fg * P, P,
                         &weight[g * Fg, 0, 0, 0], Kg, 0, dcol + <Py_ssize_t> g * Kg * P, P)
                if not direct:
                    col2im(dcol, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, &grad_x[n, 0, 0, 0])
