"""Batch normalisation and ReLU kernels: forward and backward over (N, C, L) views.

An (N, C, L) array is N*C rows of L values, row q = n*C + c holding channel
c = q % C.  Every pass walks the rows in memory order, cut into fixed blocks of
whole rows that the OpenMP threads share (writing a channel at a time, rows C*L
apart, measured 2x slower than streaming).  A pass that reduces writes one
result per row; after a barrier each thread combines the rows of every channel
itself, over n = 0, 1, ... in that order, so results do not depend on the
thread count, and goes on without a second synchronisation.

Sums are accumulated in double (8-lane vectors in a fixed order, independent of
the data's address).  Statistics are numerically sound for channels whose mean
is far from 0: each row's mean, then its squared deviations from that mean
(a second sweep over the row, from cache), merged across rows with Chan et
al.'s pairwise update; 131072 float32 values per channel lose nothing.

The row helpers are C with restrict pointers (src/batchnorm.h), built for AVX-512,
AVX2 and the baseline target and picked by the active instruction set (src/simd.h);
inside the parallel loops arrays are reached through plain pointers.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport sqrt

cimport cnnframe_ext._simd as _simd
from cnnframe_ext import runtime as _runtime


cdef extern from "src/batchnorm.h":
    void bnk_row_stats_f(const float*, Py_ssize_t, Py_ssize_t, double*, double*) noexcept nogil
    void bnk_row_stats_d(const double*, Py_ssize_t, Py_ssize_t, double*, double*) noexcept nogil
    void bnk_affine_f(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                      const double*, const double*, const float*, int, float*) noexcept nogil
    void bnk_affine_d(const double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                      const double*, const double*, const double*, const double*, int,
                      double*) noexcept nogil
    void bnk_grad_sums_f(const float*, const float*, const float*, Py_ssize_t, Py_ssize_t,
                         Py_ssize_t, Py_ssize_t, const double*, double*, double*) noexcept nogil
    void bnk_grad_sums_d(const double*, const double*, const double*, Py_ssize_t, Py_ssize_t,
                         Py_ssize_t, Py_ssize_t, const double*, double*, double*) noexcept nogil
    void bnk_grad_x_f(const float*, const float*, const float*, Py_ssize_t, Py_ssize_t,
                      Py_ssize_t, Py_ssize_t, const double*, const double*, const double*,
                      const double*, float*) noexcept nogil
    void bnk_grad_x_d(const double*, const double*, const double*, Py_ssize_t, Py_ssize_t,
                      Py_ssize_t, Py_ssize_t, const double*, const double*, const double*,
                      const double*, double*) noexcept nogil
    void bnk_relu_f(const float*, Py_ssize_t, float*) noexcept nogil
    void bnk_relu_d(const double*, Py_ssize_t, double*) noexcept nogil
    void bnk_relu_grad_f(const float*, const float*, Py_ssize_t, float*) noexcept nogil
    void bnk_relu_grad_d(const double*, const double*, Py_ssize_t, double*) noexcept nogil
    void bnk_barrier() noexcept nogil


def _set_isa(int level):
    """Use instruction-set level `level` in this module's kernels, capped at the CPU's;
    return the level now used (see cnnframe_ext.runtime)."""
    _simd.cnnf_set_isa(level)
    return _simd.cnnf_isa()


_runtime._register(__name__, _set_isa)


cdef enum:
    # Threads share the work in blocks of about this many values (whole rows for batch norm).
    BLOCK_VALUES = 1 << 14


cdef inline Py_ssize_t rows_per_block(Py_ssize_t L) noexcept nogil:
    return max(1, BLOCK_VALUES // max(L, 1))


def batch_norm_train_forward(const floating[:, :, ::1] x,   # IN  (N, C, L), N*L >= 1
                             const double[::1] weight,      # IN  (C,)
                             const double[::1] bias,        # IN  (C,)
                             double eps,
                             floating[:, :, ::1] y,         # OUT (N, C, L), not overlapping x
                             double[::1] mean,              # OUT (C,) batch mean
                             double[::1] var,               # OUT (C,) biased batch variance
                             double[::1] invstd,            # OUT (C,) 1 / sqrt(var + eps)
                             double[:, ::1] part,           # scratch (2, N*C)
                             double[:, ::1] stats,          # scratch (num_threads, 3*C)
                             bint relu, int num_threads):
    """Batch statistics per channel and y = (x - mean) * weight * invstd + bias
    (y = max(that, 0) with relu: batch norm fused with the ReLU after it).

    One pass computes each row's mean and squared deviations (the row is re-read
    from cache); after a barrier every thread merges the rows of all channels
    itself (Chan et al.'s pairwise update, rows in order n = 0, 1, ...) into its
    own copy of the constants, then a second pass writes y.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], rows = N * C, c, n
    cdef Py_ssize_t R = rows_per_block(L), blocks = (rows + R - 1) // R, b, q0
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0]
    cdef double* row_mean = &part[0, 0]
    cdef double* row_m2 = &part[1, 0]
    cdef const double* wp = &weight[0]
    cdef const double* bp = &bias[0]
    cdef double* mean_out = &mean[0]
    cdef double* var_out = &var[0]
    cdef double* invstd_out = &invstd[0]
    cdef double* own = NULL
    cdef double d = 0, f = 0
    cdef int tid = 0
    c = n = 0  # (private copies of the parallel block start initialised)
    with nogil, parallel(num_threads=num_threads):
        for b in prange(blocks, schedule="static"):
            q0 = b * R
            if floating is float:
                bnk_row_stats_f(xp + q0 * L, min(R, rows - q0), L, row_mean + q0, row_m2 + q0)
            else:
                bnk_row_stats_d(xp + q0 * L, min(R, rows - q0), L, row_mean + q0, row_m2 + q0)
        bnk_barrier()
        tid = threadid()
        own = &stats[tid, 0]  # this thread's mean | M2, then invstd | scale
        for c in range(C):
            own[c] = row_mean[c]
            own[C + c] = row_m2[c]
        for n in range(1, N):
            # merge row n (L values) into rows 0..n-1 (n*L values): the new mean moves by
            # d / (n + 1), M2 gains the row's own plus d^2 * n*L / (n + 1)
            f = 1.0 / (n + 1)
            for c in range(C):
                d = row_mean[n * C + c] - own[c]
                own[c] = own[c] + d * f
                own[C + c] = own[C + c] + row_m2[n * C + c] + d * d * (L * n * f)
        for c in range(C):
            own[C + c] = own[C + c] / (<double> N * L)          # biased variance
            if tid == 0:
                mean_out[c] = own[c]
                var_out[c] = own[C + c]
            own[C + c] = 1.0 / sqrt(own[C + c] + eps)            # invstd
            if tid == 0:
                invstd_out[c] = own[C + c]
            own[2 * C + c] = wp[c] * own[C + c]                  # scale
        for b in prange(blocks, schedule="static"):
            q0 = b * R
            if floating is float:
                bnk_affine_f(xp + q0 * L, min(R, rows - q0), L, C, q0, own, own + 2 * C,
                             bp, NULL, relu, yp + q0 * L)
            else:
                bnk_affine_d(xp + q0 * L, min(R, rows - q0), L, C, q0, own, own + 2 * C,
                             bp, NULL, relu, yp + q0 * L)


def batch_norm_affine(const floating[:, :, ::1] x,   # IN  (N, C, L)
                      const double[::1] mean,        # IN  (C,)
                      const double[::1] scale,       # IN  (C,)
                      const double[::1] shift,       # IN  (C,)
                      floating[:, :, ::1] y,         # OUT (N, C, L), not overlapping x
                      bint relu, int num_threads):
    """y = (x - mean) * scale + shift per channel (eval-mode batch norm); max(y, 0) with relu."""
    cdef Py_ssize_t L = x.shape[2], C = x.shape[1], rows = x.shape[0] * C
    cdef Py_ssize_t R = rows_per_block(L), blocks = (rows + R - 1) // R, b, q0
    cdef const floating* xp = &x[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0]
    cdef const double* mp = &mean[0]
    cdef const double* sp = &scale[0]
    cdef const double* hp = &shift[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        q0 = b * R
        if floating is float:
            bnk_affine_f(xp + q0 * L, min(R, rows - q0), L, C, q0, mp, sp, hp, NULL, relu,
                         yp + q0 * L)
        else:
            bnk_affine_d(xp + q0 * L, min(R, rows - q0), L, C, q0, mp, sp, hp, NULL, relu,
                         yp + q0 * L)


def batch_norm_backward(const floating[:, :, ::1] grad_y,  # IN  (N, C, L)
                        const floating[:, :, ::1] x,       # IN  (N, C, L) forward input
                        const floating[:, :, ::1] relu_y,  # IN  (N, C, L) fused ReLU's output, or empty
                        const double[::1] weight,          # IN  (C,)
                        const double[::1] mean,            # IN  (C,) batch or running mean
                        const double[::1] invstd,          # IN  (C,) 1 / sqrt(var + eps)
                        double[::1] grad_weight,           # OUT (C,)
                        double[::1] grad_bias,             # OUT (C,)
                        floating[:, :, ::1] grad_x,        # OUT (N, C, L) if input_grad, else unused
                        double[:, ::1] part,               # scratch (2, N*C)
                        double[:, ::1] coef,               # scratch (num_threads, 5*C)
                        bint training, bint input_grad, int num_threads):
    """Parameter gradients (a pass over grad_y and x) and grad_x (a second pass).

    With xhat = (x - mean) * invstd and a = weight * invstd: grad_bias = sum(g),
    grad_weight = sum(g * xhat); in training (mean and invstd depend on x)
    grad_x = a * (g - grad_bias / m - xhat * grad_weight / m), m = N*L, computed as
    g * a + (x - mean) * k1 + k0; in eval (constants) grad_x = g * a.  Between the
    passes every thread adds up the per-row sums of all channels (in order n = 0,
    1, ...) into its own copy of the constants.  With a non-empty relu_y (batch norm fused
    with the ReLU after it), grad_y is the gradient of relu_y and g is grad_y where
    relu_y > 0, else 0.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2], rows = N * C, c, n
    cdef Py_ssize_t R = rows_per_block(L), blocks = (rows + R - 1) // R, b, q0
    cdef double m = <double> N * L
    cdef const floating* gp = &grad_y[0, 0, 0]
    cdef const floating* xp = &x[0, 0, 0]
    cdef const floating* kp = &relu_y[0, 0, 0] if relu_y.shape[0] > 0 else NULL
    cdef floating* gxp = &grad_x[0, 0, 0] if input_grad else NULL
    cdef const double* mp = &mean[0]
    cdef double* row_g = &part[0, 0]
    cdef double* row_gd = &part[1, 0]
    cdef const double* wp = &weight[0]
    cdef const double* ip = &invstd[0]
    cdef double* gw_out = &grad_weight[0]
    cdef double* gb_out = &grad_bias[0]
    cdef double* own = NULL
    cdef int tid = 0
    c = n = 0  # (private copies of the parallel block start initialised)
    with nogil, parallel(num_threads=num_threads):
        for b in prange(blocks, schedule="static"):
            q0 = b * R
            if floating is float:
                bnk_grad_sums_f(gp + q0 * L, xp + q0 * L, kp + q0 * L if kp else NULL,
                                min(R, rows - q0), L, C, q0, mp, row_g + q0, row_gd + q0)
            else:
                bnk_grad_sums_d(gp + q0 * L, xp + q0 * L, kp + q0 * L if kp else NULL,
                                min(R, rows - q0), L, C, q0, mp, row_g + q0, row_gd + q0)
        bnk_barrier()
        tid = threadid()
        own = &coef[tid, 0]  # this thread's grad_bias | sum g*(x - mean) | a | k1 | k0
        for c in range(2 * C):
            own[c] = 0
        for n in range(N):
            for c in range(C):
                own[c] = own[c] + row_g[n * C + c]
                own[C + c] = own[C + c] + row_gd[n * C + c]
        for c in range(C):
            own[C + c] = own[C + c] * ip[c]                          # grad_weight
            own[2 * C + c] = wp[c] * ip[c]                           # a
            own[3 * C + c] = -own[2 * C + c] * ip[c] * own[C + c] / m  # k1
            own[4 * C + c] = -own[2 * C + c] * own[c] / m            # k0
            if tid == 0:
                gb_out[c] = own[c]
                gw_out[c] = own[C + c]
        if input_grad:
            for b in prange(blocks, schedule="static"):
                q0 = b * R
                if training:
                    if floating is float:
                        bnk_grad_x_f(gp + q0 * L, xp + q0 * L, kp + q0 * L if kp else NULL,
                                     min(R, rows - q0), L, C, q0, mp, own + 2 * C, own + 3 * C,
                                     own + 4 * C, gxp + q0 * L)
                    else:
                        bnk_grad_x_d(gp + q0 * L, xp + q0 * L, kp + q0 * L if kp else NULL,
                                     min(R, rows - q0), L, C, q0, mp, own + 2 * C, own + 3 * C,
                                     own + 4 * C, gxp + q0 * L)
                else:  # constants: grad_x = (g - 0) * a + 0, x is not read again
                    if floating is float:
                        bnk_affine_f(gp + q0 * L, min(R, rows - q0), L, C, q0, NULL, own + 2 * C,
                                     NULL, kp + q0 * L if kp else NULL, 0, gxp + q0 * L)
                    else:
                        bnk_affine_d(gp + q0 * L, min(R, rows - q0), L, C, q0, NULL, own + 2 * C,
                                     NULL, kp + q0 * L if kp else NULL, 0, gxp + q0 * L)


def relu_forward(const floating[::1] x,   # IN  (n,)
                 floating[::1] y,         # OUT (n,), not overlapping x
                 int num_threads):
    cdef Py_ssize_t n = x.shape[0], blocks = (n + BLOCK_VALUES - 1) // BLOCK_VALUES, b, lo
    cdef const floating* xp = &x[0]
    cdef floating* yp = &y[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        lo = b * BLOCK_VALUES
        if floating is float:
            bnk_relu_f(xp + lo, min(BLOCK_VALUES, n - lo), yp + lo)
        else:
            bnk_relu_d(xp + lo, min(BLOCK_VALUES, n - lo), yp + lo)


def relu_backward(const floating[::1] grad_y,  # IN  (n,)
                  const floating[::1] y,       # IN  (n,) the forward output
                  floating[::1] grad_x,        # OUT (n,), not overlapping the inputs
                  int num_threads):
    cdef Py_ssize_t n = y.shape[0], blocks = (n + BLOCK_VALUES - 1) // BLOCK_VALUES, b, lo
    cdef const floating* gp = &grad_y[0]
    cdef const floating* yp = &y[0]
    cdef floating* xp = &grad_x[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        lo = b * BLOCK_VALUES
        if floating is float:
            bnk_relu_grad_f(gp + lo, yp + lo, min(BLOCK_VALUES, n - lo), xp + lo)
        else:
            bnk_relu_grad_d(gp + lo, yp + lo, min(BLOCK_VALUES, n - lo), xp + lo)
