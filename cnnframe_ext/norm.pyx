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

Sums run in double over several interleaved partial sums (independent add
chains; the order is fixed, so a result depends only on the values).  Row
statistics take two sweeps: the mean, then the squared deviations from it
(the second sweep reads the row from cache), which stays accurate for rows
whose mean is far from zero.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt


cdef inline double row_sum(const floating* p, Py_ssize_t n) noexcept nogil:
    """The sum of p[0:n] in double."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        s0 += p[i]
        s1 += p[i + 1]
        s2 += p[i + 2]
        s3 += p[i + 3]
        s4 += p[i + 4]
        s5 += p[i + 5]
        s6 += p[i + 6]
        s7 += p[i + 7]
        i += 8
    while i < n:
        s0 += p[i]
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


cdef inline double row_sqdev(const floating* p, Py_ssize_t n, double mu) noexcept nogil:
    """The sum of (p[i] - mu)**2 over p[0:n] in double."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, d0, d1, d2, d3
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        d0 = p[i] - mu
        d1 = p[i + 1] - mu
        d2 = p[i + 2] - mu
        d3 = p[i + 3] - mu
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        i += 4
    while i < n:
        d0 = p[i] - mu
        s0 += d0 * d0
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef struct GradSums:
    double g    # sum of grad_y
    double gd   # sum of grad_y * (x - mean)


cdef inline GradSums grad_sums(const floating* g, const floating* x, Py_ssize_t n,
                               double mu) noexcept nogil:
    """The sums of g[0:n] and of g[i] * (x[i] - mu).  (A struct, not pointer arguments:
    Cython keeps variables private to a prange iteration only when assigned there.)"""
    cdef GradSums sums
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        a0 += g[i]
        a1 += g[i + 1]
        a2 += g[i + 2]
        a3 += g[i + 3]
        b0 += g[i] * (x[i] - mu)
        b1 += g[i + 1] * (x[i + 1] - mu)
        b2 += g[i + 2] * (x[i + 2] - mu)
        b3 += g[i + 3] * (x[i + 3] - mu)
        i += 4
    while i < n:
        a0 += g[i]
        b0 += g[i] * (x[i] - mu)
        i += 1
    sums.g = (a0 + a1) + (a2 + a3)
    sums.gd = (b0 + b1) + (b2 + b3)
    return sums


def norm_forward(const floating[:, :, ::1] x,   # IN  (R, K, L)
                 const double[::1] weight,      # IN  (G*K,) affine scale
                 const double[::1] bias,        # IN  (G*K,) affine shift
                 int G, double eps,
                 floating[:, :, ::1] y,         # OUT (R, K, L)
                 double[::1] mean,              # OUT (R,) row means
                 double[::1] var,               # OUT (R,) biased row variances
                 double[::1] invstd,            # OUT (R,) 1 / sqrt(var + eps)
                 int num_threads):
    """y = (x - mean) * invstd * weight + bias, with each row's own statistics."""
    cdef Py_ssize_t R = x.shape[0], K = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t M = K * L
    cdef Py_ssize_t r, k, l, p0
    cdef double mu, v, istd
    cdef floating af, bf, muf
    cdef const floating* xp
    cdef floating* yp
    if R == 0 or M == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        for r in prange(R, schedule="static"):
            xp = &x[r, 0, 0]
            yp = &y[r, 0, 0]
            mu = row_sum(xp, M) / M
            v = row_sqdev(xp, M, mu) / M
            istd = 1.0 / sqrt(v + eps)
            mean[r] = mu
            var[r] = v
            invstd[r] = istd
            p0 = (r % G) * K
            if L == 1:  # an affine pair per value: y = (x - mean) * (invstd * w) + b
                muf = <floating> mu
                for k in range(K):
                    yp[k] = (xp[k] - muf) * <floating> (istd * weight[p0 + k]) + \
                        <floating> bias[p0 + k]
            else:       # an affine pair per slot of L values
                muf = <floating> mu
                for k in range(K):
                    af = <floating> (istd * weight[p0 + k])
                    bf = <floating> bias[p0 + k]
                    for l in range(L):
                        yp[k * L + l] = (xp[k * L + l] - muf) * af + bf


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
    """Gradients of norm_forward, the statistics depending on x.

    With xhat = (x - mean) * invstd and M = K*L values per row, gw[p] = sum of
    grad_y * xhat and gb[p] = sum of grad_y over the values using parameter p; and
    grad_x = invstd * (g - mean(g) - xhat * mean(g * xhat)) per row, g = grad_y * w.
    """
    cdef Py_ssize_t R = x.shape[0], K = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t M = K * L
    cdef Py_ssize_t parts = part_gw.shape[0], P = part_gw.shape[1]
    cdef bint want_x = grad_x.shape[0] > 0
    cdef Py_ssize_t part, r, k, l, p0, i
    cdef double mu, istd, A, B, c1, c0, gd, w
    cdef GradSums sums
    cdef floating c1f, c0f, muf
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
        for part in prange(parts, schedule="static"):
            gw = &part_gw[part, 0]
            gb = &part_gb[part, 0]
            for r in range(part * R // parts, (part + 1) * R // parts):
                gp = &grad_y[r, 0, 0]
                xp = &x[r, 0, 0]
                mu = mean[r]
                istd = invstd[r]
                p0 = (r % G) * K
                A = 0    # sum of g = grad_y * w
                B = 0    # sum of g * (x - mean)
                if L == 1:
                    for k in range(K):
                        w = weight[p0 + k]
                        gd = gp[k] * (xp[k] - mu)
                        A = A + gp[k] * w
                        B = B + gd * w
                        gw[p0 + k] += gd * istd
                        gb[p0 + k] += gp[k]
                else:
                    for k in range(K):
                        sums = grad_sums(gp + k * L, xp + k * L, L, mu)
                        w = weight[p0 + k]
                        A = A + sums.g * w
                        B = B + sums.gd * w
                        gw[p0 + k] += sums.gd * istd
                        gb[p0 + k] += sums.g
                if not want_x:
                    continue
                # grad_x = grad_y * w * invstd + (x - mean) * c1 + c0
                op = &grad_x[r, 0, 0]
                c1 = -istd * istd * istd * B / M
                c0 = -istd * A / M
                c1f = <floating> c1
                c0f = <floating> c0
                muf = <floating> mu
                if L == 1:
                    for k in range(K):
                        op[k] = (gp[k] * <floating> (weight[p0 + k] * istd)
                                 + ((xp[k] - muf) * c1f + c0f))
                else:
                    for k in range(K):
                        w = weight[p0 + k] * istd
                        for l in range(L):
                            i = k * L + l
                            op[i] = gp[i] * <floating> w + ((xp[i] - muf) * c1f + c0f)
