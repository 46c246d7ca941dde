"""2-D convolution (cross-correlation) kernels: forward and backward, NCHW.

Work is split into blocks sized to stay in a core's cache: a block is either
`B` whole small images laid side by side (B > 1, R == OH) or `R` output rows
of one large image (B == 1).  Each OpenMP thread takes whole image blocks: it
unfolds a block into its own column buffer (im2col) and multiplies it by the
weights with a single-threaded BLAS GEMM per group.  Threads never write to
the same output; weight and bias gradients are summed per thread and reduced
by the caller.  The caller (cnnframe.functional.conv) validates every argument,
picks B and R, and owns the scratch buffers, which it reuses across calls.

BLAS is column-major: the row-major (K, Pb) column matrix is a Pb x K matrix.
"""
from cython cimport floating
from cython.parallel cimport prange, parallel, threadid
from libc.string cimport memset, memcpy

from cnnframe_ext._blas cimport gemm
from cnnframe_ext._im2col cimport im2col, col2im


def conv2d_forward(const floating[:, :, :, ::1] x,        # IN  (N, C, H, W)
                   const floating[:, :, :, ::1] weight,   # IN  (F, C/groups, KH, KW)
                   const floating[::1] bias,              # IN  (F,) or empty for no bias
                   floating[:, :, :, ::1] y,              # OUT (N, F, OH, OW)
                   floating[:, ::1] col,                  # scratch (threads, C*KH*KW * Pb)
                   floating[:, ::1] tmp,                  # scratch (threads, F * Pb) when B > 1
                   int sh, int sw, int ph, int pw, int dh, int dw,
                   int groups, int B, int R, int num_threads):
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef int OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t P = <Py_ssize_t> OH * OW
    cdef int Fg = F // groups, Kg = (C // groups) * KH * KW
    cdef bint has_bias = bias.shape[0] > 0
    cdef int nblocks = (N + B - 1) // B
    cdef int blk, n0, nb, b, oh0, oh1, g, f
    cdef Py_ssize_t Pb, ldc, p
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t = 0
    cdef floating* cols = NULL
    cdef floating* out
    cdef floating* dst
    cdef floating beta
    if N == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        cols = &col[t, 0]
        for blk in prange(nblocks, schedule="static"):
            n0 = blk * B
            nb = min(B, N - n0)
            oh0 = 0
            while oh0 < OH:
                oh1 = min(oh0 + R, OH)
                Pb = <Py_ssize_t> nb * (oh1 - oh0) * OW
                for b in range(nb):
                    im2col(&x[n0 + b, 0, 0, 0], C, H, W, KH, KW, OW, sh, sw, ph, pw, dh, dw,
                           oh0, oh1, cols + b * P, Pb)
                if nb == 1:  # write straight into y: column f of the product is y[n0, f, oh0:oh1]
                    out = &y[n0, 0, oh0, 0]
                    ldc = P
                    beta = 0
                    if has_bias:
                        beta = 1
                        for f in range(F):
                            for p in range(Pb):
                                out[f * P + p] = bias[f]
                else:        # B images side by side: multiply into tmp, then scatter
                    out = &tmp[t, 0]
                    ldc = Pb
                    beta = 0
                for g in range(groups):
                    # out_g (Pb x Fg) = cols_g (Pb x Kg) @ W_g^T (Kg x Fg)
                    gemm(c'N', c'N', <int> Pb, Fg, Kg, 1, cols + g * Kg * Pb, <int> Pb,
                         &weight[g * Fg, 0, 0, 0], Kg, beta, out + g * Fg * ldc, <int> ldc)
                if nb > 1:
                    for b in range(nb):
                        for f in range(F):
                            if has_bias:
                                dst = &y[n0 + b, f, 0, 0]
                                for p in range(P):
                                    dst[p] = out[f * Pb + b * P + p] + bias[f]
                            else:
                                memcpy(&y[n0 + b, f, 0, 0], out + f * Pb + b * P,
                                       P * sizeof(floating))
                oh0 = oh1


def conv2d_backward(const floating[:, :, :, ::1] x,       # IN  (N, C, H, W)
                    const floating[:, :, :, ::1] weight,  # IN  (F, C/groups, KH, KW)
                    const floating[:, :, :, ::1] grad_y,  # IN  (N, F, OH, OW)
                    floating[:, :, :, ::1] grad_x,        # OUT (N, C, H, W), or 0-size to skip
                    floating[:, ::1] grad_w,              # OUT (parts, F*C/groups*KH*KW) partial sums
                    floating[:, ::1] grad_b,              # OUT (parts, F) partial sums
                    floating[:, ::1] col,                 # scratch (threads, C*KH*KW * Pb)
                    floating[:, ::1] tmp,                 # scratch (threads, F * Pb) when B > 1
                    int sh, int sw, int ph, int pw, int dh, int dw,
                    int groups, int B, int R, int num_threads):
    # The image blocks are cut into grad_w.shape[0] fixed partitions, each summed in
    # block order into its own row, so the result does not depend on the thread count.
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef int OH = grad_y.shape[2], OW = grad_y.shape[3]
    cdef Py_ssize_t P = <Py_ssize_t> OH * OW
    cdef int Fg = F // groups, Kg = (C // groups) * KH * KW
    cdef bint want_x = grad_x.shape[0] > 0
    cdef int nblocks = (N + B - 1) // B
    cdef int nparts = grad_w.shape[0]
    cdef int part, blk, n0, nb, b, oh0, oh1, g, f
    cdef Py_ssize_t Pb, ldg, p
    # Set before the parallel block too: Cython copies each variable the block assigns into
    # every thread (firstprivate), which read them uninitialised (gcc -Wuninitialized).
    cdef int t = 0
    cdef floating* cols = NULL
    cdef const floating* gy
    cdef floating* gw
    cdef floating acc
    memset(&grad_w[0, 0], 0, grad_w.shape[0] * grad_w.shape[1] * sizeof(floating))
    memset(&grad_b[0, 0], 0, grad_b.shape[0] * grad_b.shape[1] * sizeof(floating))
    if N == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        t = threadid()
        cols = &col[t, 0]
        for part in prange(nparts, schedule="static"):
            gw = &grad_w[part, 0]
            for blk in range(part * nblocks // nparts, (part + 1) * nblocks // nparts):
                n0 = blk * B
                nb = min(B, N - n0)
                for b in range(nb):
                    gy = &grad_y[n0 + b, 0, 0, 0]
                    for f in range(F):
                        acc = 0
                        for p in range(P):
                            acc = acc + gy[f * P + p]
                        grad_b[part, f] += acc
                    if want_x:
                        memset(&grad_x[n0 + b, 0, 0, 0], 0, <size_t> C * H * W * sizeof(floating))
                oh0 = 0
                while oh0 < OH:
                    oh1 = min(oh0 + R, OH)
                    Pb = <Py_ssize_t> nb * (oh1 - oh0) * OW
                    for b in range(nb):
                        im2col(&x[n0 + b, 0, 0, 0], C, H, W, KH, KW, OW, sh, sw, ph, pw, dh, dw,
                               oh0, oh1, cols + b * P, Pb)
                    if nb == 1:  # grad_y rows oh0:oh1 of every channel, read in place
                        gy = &grad_y[n0, 0, oh0, 0]
                        ldg = P
                    else:        # gather the block's grad_y side by side, as the columns are
                        for b in range(nb):
                            for f in range(F):
                                memcpy(&tmp[t, f * Pb + b * P], &grad_y[n0 + b, f, 0, 0],
                                       P * sizeof(floating))
                        gy = &tmp[t, 0]
                        ldg = Pb
                    for g in range(groups):
                        # dW_g (Kg x Fg) += cols_g^T (Kg x Pb) @ gy_g (Pb x Fg)
                        gemm(c'T', c'N', Kg, Fg, <int> Pb, 1, cols + g * Kg * Pb, <int> Pb,
                             gy + g * Fg * ldg, <int> ldg, 1, gw + g * Fg * Kg, Kg)
                    if want_x:
                        # The column buffer is free again: reuse it for d(cols).
                        for g in range(groups):
                            # dcols_g (Pb x Kg) = gy_g (Pb x Fg) @ W_g (Fg x Kg)
                            gemm(c'N', c'T', <int> Pb, Kg, Fg, 1, gy + g * Fg * ldg, <int> ldg,
                                 &weight[g * Fg, 0, 0, 0], Kg, 0, cols + g * Kg * Pb, <int> Pb)
                        for b in range(nb):
                            col2im(cols + b * P, C, H, W, KH, KW, OW, sh, sw, ph, pw, dh, dw,
                                   oh0, oh1, Pb, &grad_x[n0 + b, 0, 0, 0])
                    oh0 = oh1
