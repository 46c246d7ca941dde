"""Element-wise activation kernels: GELU (exact and tanh), SiLU, Hardswish, ELU.

Each forward reads x once and writes y; each backward reads grad_y and x once and
writes grad_x (the derivative is recomputed from x, as PyTorch does, instead of
keeping extra arrays from the forward pass).  Formulas follow PyTorch's CPU
kernels, evaluated in double for both dtypes.  The OpenMP threads split the flat
arrays into fixed chunks.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport erf, exp, expm1, tanh

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


cdef inline double forward_one(int kind, double v, double alpha) noexcept nogil:
    cdef double t
    if kind == GELU:
        return 0.5 * v * (1.0 + erf(v * SQRT1_2))
    if kind == GELU_TANH:
        return 0.5 * v * (1.0 + tanh(SQRT_2_PI * (v + KAPPA * v * v * v)))
    if kind == SILU:
        return v / (1.0 + exp(-v))
    if kind == HARDSWISH:
        t = v + 3.0
        t = 0.0 if t < 0.0 else (6.0 if t > 6.0 else t)
        return v * t / 6.0
    # ELU
    return v if v > 0.0 else alpha * expm1(v)


cdef inline double derivative(int kind, double v, double alpha) noexcept nogil:
    cdef double s, t
    if kind == GELU:
        return 0.5 * (1.0 + erf(v * SQRT1_2)) + v * INV_SQRT_2PI * exp(-0.5 * v * v)
    if kind == GELU_TANH:
        t = tanh(SQRT_2_PI * (v + KAPPA * v * v * v))
        return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * SQRT_2_PI * (1.0 + 3.0 * KAPPA * v * v)
    if kind == SILU:
        s = 1.0 / (1.0 + exp(-v))
        return s * (1.0 + v * (1.0 - s))
    if kind == HARDSWISH:
        if v < -3.0:
            return 0.0
        if v <= 3.0:
            return v / 3.0 + 0.5
        return 1.0
    # ELU (at 0 the left derivative, alpha, as PyTorch)
    return 1.0 if v > 0.0 else alpha * exp(v)


def activation_forward(int kind, const floating[::1] x, floating[::1] y, double alpha,
                       int num_threads):
    """y = f(x) element-wise for activation `kind` (alpha: ELU's)."""
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t ch, i, end
    with nogil, parallel(num_threads=num_threads):
        for ch in prange(chunks, schedule="static"):
            end = min(n, (ch + 1) * CHUNK)
            for i in range(ch * CHUNK, end):
                y[i] = <floating> forward_one(kind, x[i], alpha)


def activation_backward(int kind, const floating[::1] grad_y, const floating[::1] x,
                        floating[::1] grad_x, double alpha, int num_threads):
    """grad_x = grad_y * f'(x) element-wise."""
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t ch, i, end
    with nogil, parallel(num_threads=num_threads):
        for ch in prange(chunks, schedule="static"):
            end = min(n, (ch + 1) * CHUNK)
            for i in range(ch * CHUNK, end):
                grad_x[i] = <floating> (grad_y[i] * derivative(kind, x[i], alpha))
