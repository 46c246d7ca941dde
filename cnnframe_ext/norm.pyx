"""Group, layer and instance normalisation kernels over (R, K, L) views.

A normalisation row r is K*L contiguous values, normalised with its own mean and
variance: one (sample, group) of group norm (K = channels per group, L = H*W),
one (sample, channel) of instance norm (K = 1), one sample of layer norm
(K = the normalised size, L = 1).  The affine scale and shift of value (k, l) of
row r are weight[(r % G) * K + k] and bias[...]: per channel for group and
instance norm (G = groups, or channels), per element for layer norm (G = 1).

Every row is independent in the forward pass, so the OpenMP threads split the
rows.  The backward pass also sums the weight and bias gradients over the rows:
the rows are cut into a fixed number of partitions (parts) that the threads
share, each summed in row order into its own row of the partial sums, which
the caller adds up in order, so results do not depend on the thread count.
Threads take rows (parts, column blocks) as they come free (a dynamic schedule): on
a busy machine a thread the OS holds back leaves less work for the others to wait on.

The row helpers are C (src/norm.h), one version per instruction set: sums run in
double over vectors with four accumulators, in a fixed order (independent of the
data's address).  Row statistics take two sweeps: the
mean, then the squared deviations from it (the second sweep reads the row from
cache), which stays accurate for rows whose mean is far from zero.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt

cimport cnnframe_ext._simd as _simd
from cnnframe_ext import runtime as _runtime


cdef extern from "src/norm.h":
    void nrm_stats_f(const float*, Py_ssize_t, double*, double*) noexcept nogil
    void nrm_stats_d(const double*, Py_ssize_t, double*, double*) noexcept nogil
    void nrm_slot_affine_f(const float*, Py_ssize_t, double, double, double, float*) noexcept nogil
    void nrm_slot_affine_d(const double*, Py_ssize_t, double, double, double,
                           double*) noexcept nogil
    void nrm_slot_sums_f(const float*, const float*, Py_ssize_t, double, double*,
                         double*) noexcept nogil
    void nrm_slot_sums_d(const double*, const double*, Py_ssize_t, double, double*,
                         double*) noexcept nogil
    void nrm_slot_grad_x_f(const float*, const float*, Py_ssize_t, double, double, double,
                           double, float*) noexcept nogil
    void nrm_slot_grad_x_d(const double*, const double*, Py_ssize_t, double, double, double,
                           double, double*) noexcept nogil
    void nrm_affine_f(const float*, Py_ssize_t, double, double, const float*, const float*,
                      float*) noexcept nogil
    void nrm_affine_d(const double*, Py_ssize_t, double, double, const double*, const double*,
                      double*) noexcept nogil
    void nrm_sums_f(const float*, const float*, Py_ssize_t, double, const float*, double*,
                    double*) noexcept nogil
    void nrm_sums_d(const double*, const double*, Py_ssize_t, double, const double*, double*,
                    double*) noexcept nogil
    void nrm_grads_f(const float*, const float*, Py_ssize_t, double, double, const float*,
                     double, double, double*, double*, float*) noexcept nogil
    void nrm_grads_d(const double*, const double*, Py_ssize_t, double, double, const double*,
                     double, double, double*, double*, double*) noexcept nogil


def _set_isa(int level):
    """Use instruction-set level `level` in this module's kernels, capped at the CPU's;
    return the level now used (see cnnframe_ext.runtime)."""
    _simd.cnnf_set_isa(level)
    return _simd.cnnf_isa()


_runtime._register(__name__, _set_isa)


cdef inline void row_stats(const floating* x, Py_ssize_t n, double* mean,
                           double* m2) noexcept nogil:
    """The mean of x[0:n] and the sum of squared deviations from it."""
    if floating is float:
        nrm_stats_f(x, n, mean, m2)
    else:
        nrm_stats_d(x, n, mean, m2)


cdef inline void slot_affine(const floating* x, Py_ssize_t L, double mu, double scale,
                             double shift, floating* y) noexcept nogil:
    """y = (x - mu) * scale + shift over L values (each constant rounded to floating)."""
    if floating is float:
        nrm_slot_affine_f(x, L, mu, scale, shift, y)
    else:
        nrm_slot_affine_d(x, L, mu, scale, shift, y)


cdef inline void slot_grad_sums(const floating* g, const floating* x, Py_ssize_t L, double mu,
                                double* sum_g, double* sum_gd) noexcept nogil:
    """The sums of g and of g * (x - mu) over L values."""
    if floating is float:
        nrm_slot_sums_f(g, x, L, mu, sum_g, sum_gd)
    else:
        nrm_slot_sums_d(g, x, L, mu, sum_g, sum_gd)


cdef inline void slot_grad_x(const floating* g, const floating* x, Py_ssize_t L, double mu,
                             double a, double k1, double k0, floating* gx) noexcept nogil:
    """gx = g * a + ((x - mu) * k1 + k0) over L values."""
    if floating is float:
        nrm_slot_grad_x_f(g, x, L, mu, a, k1, k0, gx)
    else:
        nrm_slot_grad_x_d(g, x, L, mu, a, k1, k0, gx)


cdef inline void value_affine(const floating* x, Py_ssize_t K, double mu, double istd,
                              const floating* w, const floating* b, floating* y) noexcept nogil:
    if floating is float:
        nrm_affine_f(x, K, mu, istd, w, b, y)
    else:
        nrm_affine_d(x, K, mu, istd, w, b, y)


cdef inline void value_sums(const floating* g, const floating* x, Py_ssize_t K, double mu,
                            const floating* w, double* A, double* B) noexcept nogil:
    if floating is float:
        nrm_sums_f(g, x, K, mu, w, A, B)
    else:
        nrm_sums_d(g, x, K, mu, w, A, B)


cdef inline void value_grads(const floating* g, const floating* x, Py_ssize_t n, double mu,
                             double istd, const floating* w, double c1, double c0, double* gw,
                             double* gb, floating* gx) noexcept nogil:
    if floating is float:
        nrm_grads_f(g, x, n, mu, istd, w, c1, c0, gw, gb, gx)
    else:
        nrm_grads_d(g, x, n, mu, istd, w, c1, c0, gw, gb, gx)


def norm_forward(const floating[:, :, ::1] x,   # IN  (R, K, L)
                 const double[::1] weight,      # IN  (G*K,) affine scale
                 const double[::1] bias,        # IN  (G*K,) affine shift
                 int G, double eps,
                 floating[:, :, ::1] y,         # OUT (R, K, L)
                 double[::1] mean,              # OUT (R,) row means
                 double[::1] var,               # OUT (R,) biased row variances
                 double[::1] invstd,            # OUT (R,) 1 / sqrt(var + eps)
                 int num_threads):
    """y = (x - mean) * invstd * weight + bias, with each row's own statistics, for rows of
    slots of L values with one affine pair each (norm_forward_values takes L = 1)."""
    cdef Py_ssize_t R = x.shape[0], K = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t M = K * L
    cdef Py_ssize_t r, k, p0
    cdef double mu, m2, istd, scale, shift
    cdef const floating* xp
    cdef floating* yp
    if R == 0 or M == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        for r in prange(R, schedule="dynamic"):
            xp = &x[r, 0, 0]
            yp = &y[r, 0, 0]
            mu = 0   # assigned here, so private to the thread (Cython's rule), then by pointer
            m2 = 0
            row_stats(xp, M, &mu, &m2)
            istd = 1.0 / sqrt(m2 / M + eps)
            mean[r] = mu
            var[r] = m2 / M
            invstd[r] = istd
            p0 = (r % G) * K
            for k in range(K):   # an affine pair per slot of L values
                scale = istd * weight[p0 + k]
                shift = bias[p0 + k]
                slot_affine(xp + k * L, L, mu, scale, shift, yp + k * L)


def norm_backward(const floating[:, :, ::1] grad_y,  # IN  (R, K, L)
                  const floating[:, :, ::1] x,       # IN  (R, K, L) the forward input
                  const double[::1] weight,          # IN  (G*K,)
                  int G,
                  const double[::1] mean,            # IN  (R,) from norm_forward
                  const double[::1] invstd,          # IN  (R,) from norm_forward
                  floating[:, :, ::1] grad_x,        # OUT (R, K, L), or 0 rows to skip it
                  double[:, ::1] part_gw,            # OUT (parts, G*K) partial weight grads
                  double[:, ::1] part_gb,            # OUT (parts, G*K) partial bias grads
                  int num_threads):
    """Gradients of norm_forward, the statistics depending on x, for rows of slots of L > 1
    values (norm_backward_values takes L = 1).

    With xhat = (x - mean) * invstd and M = K*L values per row, gw[p] = sum of
    grad_y * xhat and gb[p] = sum of grad_y over the values using parameter p; and
    grad_x = invstd * (g - mean(g) - xhat * mean(g * xhat)) per row, g = grad_y * w.
    """
    cdef Py_ssize_t R = x.shape[0], K = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t M = K * L
    cdef Py_ssize_t parts = part_gw.shape[0], P = part_gw.shape[1]
    cdef bint want_x = grad_x.shape[0] > 0
    cdef Py_ssize_t part, r, k, p0
    cdef double mu, istd, A, B, c1, c0, a, sum_g, sum_gd
    cdef const floating* gp
    cdef const floating* xp
    cdef floating* op
    cdef double* gw
    cdef double* gb
    part_gw[:, :] = 0
    part_gb[:, :] = 0
    if R == 0 or M == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        for part in prange(parts, schedule="dynamic"):
            gw = &part_gw[part, 0]
            gb = &part_gb[part, 0]
            for r in range(part * R // parts, (part + 1) * R // parts):
                gp = &grad_y[r, 0, 0]
                xp = &x[r, 0, 0]
                mu = mean[r]
                istd = invstd[r]
                p0 = (r % G) * K
                # A = sum of g = grad_y * w, B = sum of g * (x - mean); every variable set
                # through a pointer is assigned here first, so private to the thread
                A = 0
                B = 0
                for k in range(K):
                    sum_g = 0
                    sum_gd = 0
                    slot_grad_sums(gp + k * L, xp + k * L, L, mu, &sum_g, &sum_gd)
                    A = A + sum_g * weight[p0 + k]
                    B = B + sum_gd * weight[p0 + k]
                    gw[p0 + k] += sum_gd * istd
                    gb[p0 + k] += sum_g
                if not want_x:
                    continue
                # grad_x = grad_y * w * invstd + (x - mean) * c1 + c0
                op = &grad_x[r, 0, 0]
                c1 = -istd * istd * istd * B / M
                c0 = -istd * A / M
                for k in range(K):
                    a = weight[p0 + k] * istd
                    slot_grad_x(gp + k * L, xp + k * L, L, mu, a, c1, c0, op + k * L)


def norm_forward_values(const floating[:, :, ::1] x,   # IN  (R, K, 1)
                        const floating[::1] weight,     # IN  (G*K,) affine scale, per value
                        const floating[::1] bias,       # IN  (G*K,) affine shift
                        int G, double eps,
                        floating[:, :, ::1] y,          # OUT (R, K, 1)
                        double[::1] mean,               # OUT (R,) row means
                        double[::1] var,                # OUT (R,) biased row variances
                        double[::1] invstd,             # OUT (R,) 1 / sqrt(var + eps)
                        int num_threads):
    """norm_forward for rows with a weight and bias per value (L = 1: layer norm), given in
    x's dtype: y = (x - mean) * invstd * weight + bias."""
    cdef Py_ssize_t R = x.shape[0], K = x.shape[1]
    cdef Py_ssize_t r
    cdef double mu, m2, istd
    if R == 0 or K == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        for r in prange(R, schedule="dynamic"):
            mu = 0   # assigned here, so private to the thread (Cython's rule), then by pointer
            m2 = 0
            row_stats(&x[r, 0, 0], K, &mu, &m2)
            istd = 1.0 / sqrt(m2 / K + eps)
            mean[r] = mu
            var[r] = m2 / K
            invstd[r] = istd
            value_affine(&x[r, 0, 0], K, mu, istd, &weight[(r % G) * K], &bias[(r % G) * K],
                         &y[r, 0, 0])


# Values per column block of norm_backward_values (fixed: the blocks' sums do not depend on
# the thread count).
cdef Py_ssize_t COLUMN_BLOCK = 2048


def norm_backward_values(const floating[:, :, ::1] grad_y,  # IN  (R, K, 1)
                         const floating[:, :, ::1] x,       # IN  (R, K, 1) the forward input
                         const floating[::1] weight,        # IN  (G*K,) in x's dtype
                         int G,
                         const double[::1] mean,            # IN  (R,) from norm_forward
                         const double[::1] invstd,          # IN  (R,) from norm_forward
                         floating[:, :, ::1] grad_x,        # OUT (R, K, 1), or 0 rows to skip it
                         double[::1] grad_w,                # OUT (G*K,) weight gradient
                         double[::1] grad_b,                # OUT (G*K,) bias gradient
                         int num_threads):
    """norm_backward for rows with a weight and bias per value (L = 1: layer norm).

    Two passes: the rows' sums and grad_x (row by row, the row read again from cache),
    then the parameter gradients, a block of columns at a time, every row in order: each
    thread owns whole columns, so the sums need no partial copies (a copy of every
    parameter per partition would not stay in cache) and do not depend on the thread
    count.
    """
    cdef Py_ssize_t R = x.shape[0], K = x.shape[1]
    cdef Py_ssize_t blocks = (K + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    cdef bint want_x = grad_x.shape[0] > 0
    cdef Py_ssize_t r, blk, k0, n, p0
    cdef double mu, istd, A, B, c1, c0
    grad_w[:] = 0
    grad_b[:] = 0
    if R == 0 or K == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        for r in prange(R if want_x else 0, schedule="dynamic"):
            mu = mean[r]
            istd = invstd[r]
            A = 0   # sum of g = grad_y * w (assigned here: private to the thread)
            B = 0   # sum of g * (x - mean)
            p0 = (r % G) * K
            value_sums(&grad_y[r, 0, 0], &x[r, 0, 0], K, mu, &weight[p0], &A, &B)
            c1 = -istd * istd * istd * B / K   # grad_x = grad_y w invstd + (x - mean) c1 + c0
            c0 = -istd * A / K
            value_grads(&grad_y[r, 0, 0], &x[r, 0, 0], K, mu, istd, &weight[p0], c1, c0,
                        NULL, NULL, &grad_x[r, 0, 0])
        # (no barrier: this loop reads only inputs, and writes what the one above does not)
        for blk in prange(blocks, schedule="dynamic"):
            k0 = blk * COLUMN_BLOCK
            n = min(COLUMN_BLOCK, K - k0)
            for r in range(R):
                p0 = (r % G) * K + k0
                value_grads(&grad_y[r, k0, 0], &x[r, k0, 0], n, mean[r], invstd[r],
                            &weight[p0], 0, 0, &grad_w[p0], &grad_b[p0], NULL)
