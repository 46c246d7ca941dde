"""Element-wise activation kernels: GELU (exact and tanh), SiLU, Hardswish, ELU, PReLU.

Each forward reads x once and writes y; each backward reads grad_y and x once and
writes grad_x (the derivative is recomputed from x, as PyTorch does, instead of
keeping extra arrays from the forward pass).  Formulas follow PyTorch's CPU
kernels, evaluated in the input's precision (libm's float functions for float32).  The OpenMP threads split the flat
arrays into fixed chunks.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport erf, erff, exp, expf, expm1, expm1f, tanh, tanhf

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


def prelu_forward(const floating[:, :, ::1] x,   # IN  (N, C, L); C = 1 for one shared slope
                  const floating[::1] weight,    # IN  (C,) the slopes
                  floating[:, :, ::1] y,         # OUT (N, C, L)
                  int num_threads):
    """y = x where x > 0, else weight[c] * x (NaN stays NaN)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    cdef Py_ssize_t q, l
    cdef floating w, v
    cdef const floating* xp
    cdef floating* yp
    with nogil, parallel(num_threads=num_threads):
        for q in prange(N * C, schedule="static"):
            xp = &x[q // C, q % C, 0]
            yp = &y[q // C, q % C, 0]
            w = weight[q % C]
            for l in range(L):
                v = xp[l]
                yp[l] = v if v > 0 else w * v


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
    cdef Py_ssize_t part, q, l
    cdef floating w, v, t
    cdef double s0, s1
    cdef const floating* gp
    cdef const floating* xp
    cdef floating* op
    part_gw[:, :] = 0
    with nogil, parallel(num_threads=num_threads):
        for part in prange(parts, schedule="static"):
            for q in range(part * planes // parts, (part + 1) * planes // parts):
                gp = &grad_y[q // C, q % C, 0]
                xp = &x[q // C, q % C, 0]
                w = weight[q % C]
                s0 = 0
                s1 = 0
                l = 0
                while l + 2 <= L:   # two add chains
                    t = gp[l] * xp[l]
                    s0 = s0 + (t if xp[l] <= 0 else 0)
                    t = gp[l + 1] * xp[l + 1]
                    s1 = s1 + (t if xp[l + 1] <= 0 else 0)
                    l = l + 2
                if l < L:
                    t = gp[l] * xp[l]
                    s0 = s0 + (t if xp[l] <= 0 else 0)
                part_gw[part, q % C] += s0 + s1
                if want_x:
                    op = &grad_x[q // C, q % C, 0]
                    for l in range(L):
                        v = gp[l]
                        op[l] = v if xp[l] > 0 else w * v
