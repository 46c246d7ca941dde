"""Element-wise activation kernels: GELU (exact and tanh), SiLU, Hardswish, ELU, PReLU.

GELU, SiLU, Hardswish and ELU are computed by src/activation.h: vectorised, with its own
exp, expm1, tanh and erf (within a few ulp of the exact values), one version per
instruction-set level.  Each forward reads x once and writes y; each backward reads
grad_y and x once and writes grad_x (the derivative is recomputed from x, as PyTorch
does, instead of keeping extra arrays from the forward pass).  Formulas follow PyTorch's
CPU kernels, evaluated in the input's precision.  The OpenMP threads take fixed chunks
of the flat arrays as they come free (a dynamic schedule: on a busy machine a thread the
OS holds back leaves less work for the others to wait on); every element's result
depends only on its value, so results do not depend on the thread count.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport fabs, fabsf

cimport cnnframe_ext._simd as _simd
from cnnframe_ext import runtime as _runtime


cdef extern from "src/activation.h":
    enum:
        ACT_GELU
        ACT_GELU_TANH
        ACT_SILU
        ACT_HARDSWISH
        ACT_ELU
        ACT_EXP
        ACT_EXPM1
        ACT_TANH
        ACT_ERF
    void act_forward_f(int, const float*, float*, Py_ssize_t, float) noexcept nogil
    void act_forward_d(int, const double*, double*, Py_ssize_t, double) noexcept nogil
    void act_backward_f(int, const float*, const float*, float*, Py_ssize_t, float) noexcept nogil
    void act_backward_d(int, const double*, const double*, double*, Py_ssize_t,
                        double) noexcept nogil
    void act_math_f(int, const float*, float*, Py_ssize_t) noexcept nogil
    void act_math_d(int, const double*, double*, Py_ssize_t) noexcept nogil


def _set_isa(int level):
    """Use instruction-set level `level` in this module's kernels, capped at the CPU's;
    return the level now used (see cnnframe_ext.runtime)."""
    _simd.cnnf_set_isa(level)
    return _simd.cnnf_isa()


_runtime._register(__name__, _set_isa)

# The `kind` argument of the kernels, by name.
KINDS = {"gelu": ACT_GELU, "gelu_tanh": ACT_GELU_TANH, "silu": ACT_SILU,
         "hardswish": ACT_HARDSWISH, "elu": ACT_ELU}
# The elementary functions of `elementary`, by name ("expm1" for x <= 0 only).
FUNCTIONS = {"exp": ACT_EXP, "expm1": ACT_EXPM1, "tanh": ACT_TANH, "erf": ACT_ERF}

# Elements per chunk handed to a thread.
cdef Py_ssize_t CHUNK = 16384


cdef inline floating f_abs(floating v) noexcept nogil:
    if floating is float:
        return fabsf(v)
    else:
        return fabs(v)


cdef inline void forward_span(int kind, const floating* x, floating* y, Py_ssize_t n,
                              floating alpha) noexcept nogil:
    if floating is float:
        act_forward_f(kind, x, y, n, alpha)
    else:
        act_forward_d(kind, x, y, n, alpha)


cdef inline void backward_span(int kind, const floating* g, const floating* x, floating* gx,
                               Py_ssize_t n, floating alpha) noexcept nogil:
    if floating is float:
        act_backward_f(kind, g, x, gx, n, alpha)
    else:
        act_backward_d(kind, g, x, gx, n, alpha)


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
        for ch in prange(chunks, schedule="dynamic"):
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
        for ch in prange(chunks, schedule="dynamic"):
            start = ch * CHUNK
            backward_span(kind, &grad_y[start], &x[start], &grad_x[start],
                          min(CHUNK, n - start), a)


def elementary(int which, const floating[::1] x, floating[::1] y):
    """y = the elementary function `which` (FUNCTIONS) of x, as the activations compute it:
    for the tests, which check it against float64."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"elementary: x has {x.shape[0]} values, y {y.shape[0]}")
    if x.shape[0] == 0:
        return
    if floating is float:
        act_math_f(which, &x[0], &y[0], x.shape[0])
    else:
        act_math_d(which, &x[0], &y[0], x.shape[0])


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
        for q in prange(N * C, schedule="dynamic", chunksize=4):
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
        for part in prange(parts, schedule="dynamic"):
            for q in range(part * planes // parts, (part + 1) * planes // parts):
                op = &grad_x[q // C, q % C, 0] if want_x else NULL
                part_gw[part, q % C] += prelu_plane_grad(
                    &grad_y[q // C, q % C, 0], &x[q // C, q % C, 0], op, L, weight[q % C],
                    want_x)


cdef inline void scale_plane(const floating* x, floating* y, Py_ssize_t n,
                             floating s) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):   # vectorised by the compiler (no dependence between values)
        y[i] = x[i] * s


def scale_planes(const floating[:, ::1] x,      # IN  (P, L)
                 const floating[::1] scale,     # IN  (P,)
                 floating[:, ::1] y,            # OUT (P, L)
                 int num_threads):
    """y[p] = x[p] * scale[p] for every plane p (channel dropout's mask and its gradient)."""
    cdef Py_ssize_t P = x.shape[0], L = x.shape[1]
    cdef Py_ssize_t q
    if P == 0 or L == 0:
        return
    with nogil, parallel(num_threads=num_threads):
        for q in prange(P, schedule="dynamic", chunksize=8):
            scale_plane(&x[q, 0], &y[q, 0], L, scale[q])
