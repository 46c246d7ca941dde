"""Element-wise activation kernels: GELU (exact and tanh), SiLU, Hardswish, ELU, PReLU.

Each forward reads x once and writes y; each backward reads grad_y and x once and
writes grad_x (the derivative is recomputed from x, as PyTorch does, instead of
keeping extra arrays from the forward pass).  Formulas follow PyTorch's CPU
kernels, evaluated in the input's precision (libm's float functions for float32).  The OpenMP threads split the flat
arrays into fixed chunks.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport erf, erff, exp, expf, expm1, expm1f, fabs, fabsf, tanh, tanhf

cdef enum:
    GELU = 0
    GELU_TANH = 1
    SILU = 2
    HARDSWISH = 3
    ELU = 4

# The `kind` argument of the kernels, by name.
KINDS = {"gelu": GELU, "gelu_tanh": GELU_TANH, "silu": SILU, "hardswish": HARDSWISH, "elu": ELU}

cdef double SQRT1_2 = 0.70710678118654752440       # 1 / sqrt(2)
cdef double INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi)
cdef double SQRT_2_PI = 0.79788456080286535588     # sqrt(2 / pi)
cdef double KAPPA = 0.044715

# Elements per chunk handed to a thread.
cdef Py_ssize_t CHUNK = 16384


cdef inline floating f_exp(floating v) noexcept nogil:
    if floating is float:
        return expf(v)
    else:
        return exp(v)


cdef inline floating f_abs(floating v) noexcept nogil:
    if floating is float:
        return fabsf(v)
    else:
        return fabs(v)


cdef inline floating f_expm1(floating v) noexcept nogil:
    if floating is float:
        return expm1f(v)
    else:
        return expm1(v)


cdef inline floating f_erf(floating v) noexcept nogil:
    if floating is float:
        return erff(v)
    else:
        return erf(v)


cdef inline floating f_tanh(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)


cdef inline floating forward_one(int kind, floating v, floating alpha) noexcept nogil:
    cdef floating t
    if kind == GELU:
        return <floating> 0.5 * v * (1 + f_erf(v * <floating> SQRT1_2))
    if kind == GELU_TANH:
        return <floating> 0.5 * v * (1 + f_tanh(<floating> SQRT_2_PI * (v + <floating> KAPPA * v * v * v)))
    if kind == SILU:
        return v / (1 + f_exp(-v))
    if kind == HARDSWISH:
        t = v + 3
        t = 0 if t < 0 else (6 if t > 6 else t)
        return v * t / 6
    # ELU
    return v if v > 0 else alpha * f_expm1(v)


cdef inline floating derivative(int kind, floating v, floating alpha) noexcept nogil:
    cdef floating s, t
    if kind == GELU:
        return (<floating> 0.5 * (1 + f_erf(v * <floating> SQRT1_2))
                + v * <floating> INV_SQRT_2PI * f_exp(<floating> -0.5 * v * v))
    if kind == GELU_TANH:
        t = f_tanh(<floating> SQRT_2_PI * (v + <floating> KAPPA * v * v * v))
        return (<floating> 0.5 * (1 + t) + <floating> 0.5 * v * (1 - t * t) * <floating> SQRT_2_PI
                * (1 + 3 * <floating> KAPPA * v * v))
    if kind == SILU:
        s = 1 / (1 + f_exp(-v))
        return s * (1 + v * (1 - s))
    if kind == HARDSWISH:
        if v < -3:
            return 0
        if v <= 3:
            return v / 3 + <floating> 0.5
        return 1
    # ELU (at 0 the left derivative, alpha, as PyTorch)
    return 1 if v > 0 else alpha * f_exp(v)


cdef inline void forward_span(int kind, const floating* x, floating* y, Py_ssize_t n,
                              floating alpha) noexcept nogil:
    """y = f(x) over n values: one loop per kind, so no loop tests `kind` per value."""
    cdef Py_ssize_t i
    if kind == GELU:
        for i in range(n):
            y[i] = forward_one(GELU, x[i], alpha)
    elif kind == GELU_TANH:
        for i in range(n):
            y[i] = forward_one(GELU_TANH, x[i], alpha)
    elif kind == SILU:
        for i in range(n):
            y[i] = forward_one(SILU, x[i], alpha)
    elif kind == HARDSWISH:
        for i in range(n):
            y[i] = forward_one(HARDSWISH, x[i], alpha)
    else:
        for i in range(n):
            y[i] = forward_one(ELU, x[i], alpha)


cdef inline void backward_span(int kind, const floating* g, const floating* x, floating* gx,
                               Py_ssize_t n, floating alpha) noexcept nogil:
    """gx = g * f'(x) over n values, one loop per kind."""
    cdef Py_ssize_t i
    if kind == GELU:
        for i in range(n):
            gx[i] = g[i] * derivative(GELU, x[i], alpha)
    elif kind == GELU_TANH:
        for i in range(n):
            gx[i] = g[i] * derivative(GELU_TANH, x[i], alpha)
    elif kind == SILU:
        for i in range(n):
            gx[i] = g[i] * derivative(SILU, x[i], alpha)
    elif kind == HARDSWISH:
        for i in range(n):
            gx[i] = g[i] * derivative(HARDSWISH, x[i], alpha)
    else:
        for i in range(n):
            gx[i] = g[i] * derivative(ELU, x[i], alpha)


def activation_forward(int kind, const floating[::1] x, floating[::1] y, double alpha,
                       int num_threads):
    """y = f(x) element-wise for activation `kind` (alpha: ELU's)."""
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t ch, start
    cdef floating a = <floating> alpha
    if n == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        for ch in prange(chunks, schedule="static"):
            start = ch * CHUNK
            forward_span(kind, &x[start], &y[start], min(CHUNK, n - start), a)


def activation_backward(int kind, const floating[::1] grad_y, const floating[::1] x,
                        floating[::1] grad_x, double alpha, int num_threads):
    """grad_x = grad_y * f'(x) element-wise."""
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t ch, start
    cdef floating a = <floating> alpha
    if n == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        for ch in prange(chunks, schedule="static"):
            start = ch * CHUNK
            backward_span(kind, &grad_y[start], &x[start], &grad_x[start],
                          min(CHUNK, n - start), a)


cdef inline void prelu_plane(const floating* x, floating* y, Py_ssize_t n,
                             floating w) noexcept nogil:
    """y = x where x > 0, else w * x, over n values, as max(x, 0) + w * min(x, 0).

    Without branches: GCC keeps `x if x > 0 else w * x` a branch (it does not if-convert
    a floating-point multiply, which may trap under the default -ftrapping-math),
    mispredicted half the time on random data: 11 ms instead of 1 ms for 2M values.
    `a if a > b else b` and `b if b < a else a` compile to maxss and minss.  The same
    values for every finite x; a NaN x gives NaN (from the min), as PyTorch's.
    """
    cdef Py_ssize_t i
    cdef floating v, pos, neg
    for i in range(n):
        v = x[i]
        pos = v if v > 0 else 0
        neg = 0 if 0 < v else v
        y[i] = pos + w * neg


cdef inline double prelu_plane_grad(const floating* g, const floating* x, floating* gx,
                                    Py_ssize_t n, floating w, bint want_x) noexcept nogil:
    """gx = g where x > 0, else w * g (if want_x); returns the sum of g * x where x <= 0.

    Branch-free as prelu_plane.  This loop's double sum keeps it from being vectorised,
    and scalar code keeps every select a branch (even g * x * (x <= 0)), so the sum adds
    g * min(x, 0) with min(x, 0) = (x - |x|) / 2: exact for finite x (short of
    overflow), NaN for a NaN x (as in PyTorch).  The vectorised gx loop selects with
    k = (x > 0) as 0 or 1: gx = k * g + (1 - k) * (w * g), exact for finite gradients
    (an infinite one gives NaN where PyTorch keeps inf).
    """
    cdef Py_ssize_t i
    cdef double s0 = 0, s1 = 0
    cdef floating k
    i = 0
    while i + 2 <= n:   # two add chains
        s0 += g[i] * ((x[i] - f_abs(x[i])) * <floating> 0.5)
        s1 += g[i + 1] * ((x[i + 1] - f_abs(x[i + 1])) * <floating> 0.5)
        i += 2
    if i < n:
        s0 += g[i] * ((x[i] - f_abs(x[i])) * <floating> 0.5)
    if want_x:
        for i in range(n):
            k = <floating> (x[i] > 0)
            gx[i] = k * g[i] + (1 - k) * (w * g[i])
    return s0 + s1


def prelu_forward(const floating[:, :, ::1] x,   # IN  (N, C, L); C = 1 for one shared slope
                  const floating[::1] weight,    # IN  (C,) the slopes
                  floating[:, :, ::1] y,         # OUT (N, C, L)
                  int num_threads):
    """y = x where x > 0, else weight[c] * x (NaN stays NaN)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t q
    with nogil, parallel(num_threads=num_threads):
        for q in prange(N * C, schedule="static"):
            prelu_plane(&x[q // C, q % C, 0], &y[q // C, q % C, 0], L, weight[q % C])


def prelu_backward(const floating[:, :, ::1] grad_y,  # IN  (N, C, L)
                   const floating[:, :, ::1] x,       # IN  (N, C, L) the forward input
                   const floating[::1] weight,        # IN  (C,)
                   floating[:, :, ::1] grad_x,        # OUT (N, C, L), or 0 rows to skip it
                   double[:, ::1] part_gw,            # OUT (parts, C) partial weight gradients
                   int num_threads):
    """grad_x = grad_y where x > 0, else weight[c] * grad_y; the weight gradient (the sum
    of grad_y * x where x <= 0) is summed per fixed partition of the N*C planes, in
    plane order, so it does not depend on the thread count."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t parts = part_gw.shape[0], planes = N * C
    cdef bint want_x = grad_x.shape[0] > 0
    cdef Py_ssize_t part, q
    cdef floating* op
    part_gw[:, :] = 0
    with nogil, parallel(num_threads=num_threads):
        for part in prange(parts, schedule="static"):
            for q in range(part * planes // parts, (part + 1) * planes // parts):
                op = &grad_x[q // C, q % C, 0] if want_x else NULL
                part_gw[part, q % C] += prelu_plane_grad(
                    &grad_y[q // C, q % C, 0], &x[q // C, q % C, 0], op, L, weight[q % C],
                    want_x)
