"""2-D pooling kernels (max, average, global average): forward and backward, NCHW.

Every (image, channel) plane is independent, so the OpenMP threads split the
N*C planes between them and never write to the same output element.
Semantics follow torch.nn.functional: max pooling treats padding as -inf,
average pooling counts padded zeros in the divisor (count_include_pad).

Inside the parallel loops each plane is reached through plain pointers held in
thread-private locals: memoryview structs are shared across the OpenMP region,
and the compiler would reload their data pointer and strides after every store.

Max pooling windows that lie wholly inside the plane (all of them without
padding), and 2x2 stride-2 average pooling, take vectorised kernels (C below) that
give the same bits as the generic loops: they visit each window's elements in the
same order with the same select or sum, only for a row of windows side by side;
2x2 stride-2 max pooling has its own kernel.  Callers pass vectorised=False to run
the generic loops (the tests compare the two).
"""
from cython cimport floating
from cython.parallel cimport prange, parallel
from libc.string cimport memset


cdef extern from *:
    """
    /* Vectorised pooling of unpadded windows, a row of windows at a time: every
       window is computed on its own, so the compiler runs a row's windows side by
       side (omp simd; restrict: outputs never alias inputs).  On x86-64 it also
       builds AVX2 and AVX-512 versions of each plane kernel and picks one at load
       time.  Pooled rows are short (4 to 16 windows), so vectors are 4 windows wide
       (wider ones measured no faster), and a row's last partial vector is redone as
       its last full one, overlapping the one before and rewriting the same values:
       a scalar remainder costs far more (GCC compiles its selects to branches).
       Window indices are Py_ssize_t: Python builds extensions with -fwrapv, under
       which int arithmetic like 2 * j may wrap and GCC 12 then vectorises nothing. */
    #include <stdint.h>
    #include <string.h>
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define CNNF_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define CNNF_CLONES
    #endif
    #define CNNF_SIMD _Pragma("omp simd simdlen(4)")
    enum { CNNF_VECTOR = 4 };

    /* Span s (0 or 1) of a row of OW windows as [*j0, *j0 + *n); 0 if it has none. */
    static inline int cnnf_span(Py_ssize_t OW, int s, Py_ssize_t* j0, Py_ssize_t* n) {
        Py_ssize_t whole = OW - OW % CNNF_VECTOR;
        if (s == 0) {
            *j0 = 0;
            *n = whole > 0 ? whole : OW;
            return 1;
        }
        *j0 = OW - CNNF_VECTOR;
        *n = CNNF_VECTOR;
        return whole > 0 && whole < OW;
    }
    #define CNNF_FOR_SPANS(OW, j0, n)                                                      \
        for (Py_ssize_t s_ = 0, j0, n; s_ < 2; s_++)                                      \
            if (cnnf_span((OW), (int) s_, &j0, &n))

    /* Max pooling's select, as in the generic loop: v replaces the best so far if
       larger, or if v is the first NaN (a NaN propagates and the first one wins).
       Spelt with != and ^ because GCC 12 vectorises this form, and neither
       (v > b) | (v != v & b == b) nor !(v <= b) & (b == b). */
    #define CNNF_TAKES(v, b) (((v) > (b)) | ((((v) != (v)) ^ ((b) != (b))) & ((v) != (v))))

    /* t ? p : q for t in {0, 1}, without a branch.  */
    static inline float cnnf_select_f(int t, float p, float q) {
        uint32_t bp, bq, m = -(uint32_t) t;
        memcpy(&bp, &p, sizeof bp);
        memcpy(&bq, &q, sizeof bq);
        bp = (bp & m) | (bq & ~m);
        memcpy(&p, &bp, sizeof bp);
        return p;
    }
    static inline double cnnf_select_d(int t, double p, double q) {
        uint64_t bp, bq, m = -(uint64_t) t;
        memcpy(&bp, &p, sizeof bp);
        memcpy(&bq, &q, sizeof bq);
        bp = (bp & m) | (bq & ~m);
        memcpy(&p, &bp, sizeof bp);
        return p;
    }

    #define CNNF_POOL_KERNELS(T, SUF)                                                      \
    /* 2x2 windows, stride 2, windows [j0, j0 + n) of input rows r0, r1 (W: the row     \
       length, i0: r0's index in the plane): the first maximum of each row's pair,       \
       then of the two; the same element as the row-major scan (ties keep the earlier    \
       one).  */                                                                          \
    static inline void max_2x2_span_##SUF(const T* restrict r0, const T* restrict r1,     \
                                          long long i0, long long W, T* restrict yr,     \
                                          long long* restrict ar, Py_ssize_t j0,         \
                                          Py_ssize_t n) {                                \
        CNNF_SIMD                                                                         \
        for (Py_ssize_t j = j0; j < j0 + n; j++) {                                        \
            T v0 = r0[2 * j], v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];     \
            int t1 = CNNF_TAKES(v1, v0), t3 = CNNF_TAKES(v3, v2);                         \
            T m0 = t1 ? v1 : v0, m1 = t3 ? v3 : v2;                                       \
            int tb = CNNF_TAKES(m1, m0);                                                  \
            yr[j] = tb ? m1 : m0;                                                         \
            ar[j] = i0 + 2 * j + (tb ? W + t3 : t1);                                      \
        }                                                                                 \
    }                                                                                     \
    CNNF_CLONES                                                                           \
    static void max_pool_2x2_##SUF(const T* restrict x, int W, T* restrict y,             \
                                   long long* restrict a, int OH, int OW) {              \
        for (Py_ssize_t oh = 0; oh < OH; oh++) {                                          \
            const T* r0 = x + 2 * oh * W;                                                 \
            if (OW >= CNNF_VECTOR) {                                                      \
                CNNF_FOR_SPANS(OW, j0, n)                                                 \
                    max_2x2_span_##SUF(r0, r0 + W, 2 * oh * W, W, y + oh * OW,            \
                                       a + oh * OW, j0, n);                               \
            } else {                                                                      \
                /* A row shorter than a vector: scalar, selecting by bit masks (GCC       \
                   would branch on each select of the vector loop's scalar version).  */  \
                const T* r1 = r0 + W;                                                     \
                for (Py_ssize_t j = 0; j < OW; j++) {                                     \
                    T v0 = r0[2 * j], v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1]; \
                    int t1 = CNNF_TAKES(v1, v0), t3 = CNNF_TAKES(v3, v2);                 \
                    T m0 = cnnf_select_##SUF(t1, v1, v0), m1 = cnnf_select_##SUF(t3, v3, v2); \
                    int tb = CNNF_TAKES(m1, m0);                                          \
                    y[oh * OW + j] = cnnf_select_##SUF(tb, m1, m0);                       \
                    a[oh * OW + j] = 2 * oh * W + 2 * j + t1 + tb * (W + t3 - t1);        \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    /* Windows that lie wholly inside the plane (all of an unpadded pooling, the        \
       interior of a padded one): the OHr x OWr windows whose first starts at input      \
       (h0, w0), written to y and a with row stride ys.  One pass over a span of windows  \
       per window element, in the generic loop's order.  */                              \
    CNNF_CLONES                                                                           \
    static void max_pool_inside_##SUF(const T* restrict x, int W, T* restrict y,          \
                                      long long* restrict a, int ys, int h0, int w0,      \
                                      int OHr, int OWr, int kh, int kw, int sh, int sw) { \
        for (Py_ssize_t r = 0; r < OHr; r++) {                                            \
            T* restrict yr = y + r * ys;                                                  \
            long long* restrict ar = a + r * ys;                                          \
            long long i00 = (h0 + r * sh) * W + w0;                                       \
            CNNF_FOR_SPANS(OWr, j0, n) {                                                  \
                CNNF_SIMD                                                                 \
                for (Py_ssize_t j = j0; j < j0 + n; j++) {                                \
                    yr[j] = x[i00 + j * sw];                                              \
                    ar[j] = i00 + j * sw;                                                 \
                }                                                                         \
                for (int dh = 0; dh < kh; dh++) {                                         \
                    for (int dw = (dh == 0); dw < kw; dw++) {                             \
                        long long i0 = i00 + (long long) dh * W + dw;                     \
                        CNNF_SIMD                                                         \
                        for (Py_ssize_t j = j0; j < j0 + n; j++) {                        \
                            long long i = i0 + j * sw;                                    \
                            T v = x[i], best = yr[j];                                     \
                            int take = CNNF_TAKES(v, best);                               \
                            yr[j] = take ? v : best;                                      \
                            ar[j] = take ? i : ar[j];                                     \
                        }                                                                 \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    /* 2x2 stride-2 average pooling, summed in the generic loop's order.  */             \
    CNNF_CLONES                                                                           \
    static void avg_pool_2x2_##SUF(const T* restrict x, int W, T* restrict y, int OH,     \
                                   int OW) {                                              \
        for (Py_ssize_t oh = 0; oh < OH; oh++) {                                          \
            const T* restrict r0 = x + 2 * oh * W;                                        \
            const T* restrict r1 = r0 + W;                                                \
            T* restrict yr = y + oh * OW;                                                 \
            CNNF_FOR_SPANS(OW, j0, n) {                                                   \
                CNNF_SIMD                                                                 \
                for (Py_ssize_t j = j0; j < j0 + n; j++) {                                \
                    T acc = (T) 0 + r0[2 * j];                                            \
                    acc = acc + r0[2 * j + 1];                                            \
                    acc = acc + r1[2 * j];                                                \
                    acc = acc + r1[2 * j + 1];                                            \
                    yr[j] = acc / 4;                                                      \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    /* Its gradient, each grad_x element written once: g / 4 to the four cells         \
       (as 0 + g / 4, the generic loop's accumulation onto zeros), zeros to a last       \
       odd row or column.  */                                                            \
    CNNF_CLONES                                                                           \
    static void avg_unpool_2x2_##SUF(const T* restrict g, int OH, int OW, int H, int W,   \
                                     T* restrict x) {                                     \
        for (Py_ssize_t oh = 0; oh < OH; oh++) {                                          \
            T* restrict x0 = x + 2 * oh * W;                                              \
            T* restrict x1 = x0 + W;                                                      \
            const T* restrict gr = g + oh * OW;                                           \
            CNNF_FOR_SPANS(OW, j0, n) {                                                   \
                CNNF_SIMD                                                                 \
                for (Py_ssize_t j = j0; j < j0 + n; j++) {                                \
                    T v = (T) 0 + gr[j] / 4;                                              \
                    x0[2 * j] = v;                                                        \
                    x0[2 * j + 1] = v;                                                    \
                    x1[2 * j] = v;                                                        \
                    x1[2 * j + 1] = v;                                                    \
                }                                                                         \
            }                                                                             \
            if (W & 1) {                                                                  \
                x0[W - 1] = 0;                                                            \
                x1[W - 1] = 0;                                                            \
            }                                                                             \
        }                                                                                 \
        if (H & 1)                                                                        \
            memset(x + (Py_ssize_t) (H - 1) * W, 0, (size_t) W * sizeof(T));              \
    }
    CNNF_POOL_KERNELS(float, f)
    CNNF_POOL_KERNELS(double, d)
    """
    float cnnf_select_f(int, float, float) noexcept nogil
    double cnnf_select_d(int, double, double) noexcept nogil
    void max_pool_2x2_f(const float*, int, float*, long long*, int, int) noexcept nogil
    void max_pool_2x2_d(const double*, int, double*, long long*, int, int) noexcept nogil
    void max_pool_inside_f(const float*, int, float*, long long*, int, int, int, int, int, int, int, int, int) noexcept nogil
    void max_pool_inside_d(const double*, int, double*, long long*, int, int, int, int, int, int, int, int, int) noexcept nogil
    void avg_pool_2x2_f(const float*, int, float*, int, int) noexcept nogil
    void avg_pool_2x2_d(const double*, int, double*, int, int) noexcept nogil
    void avg_unpool_2x2_f(const float*, int, int, int, int, float*) noexcept nogil
    void avg_unpool_2x2_d(const double*, int, int, int, int, double*) noexcept nogil


cdef inline floating select(bint t, floating p, floating q) noexcept nogil:
    """t ? p : q without a branch (random data defeats branch prediction)."""
    if floating is float:
        return cnnf_select_f(t, p, q)
    else:
        return cnnf_select_d(t, p, q)


cdef inline void max_pool_2x2(const floating* x, int W, floating* y, long long* a,
                              int OH, int OW) noexcept nogil:
    if floating is float:
        max_pool_2x2_f(x, W, y, a, OH, OW)
    else:
        max_pool_2x2_d(x, W, y, a, OH, OW)


cdef inline void max_pool_inside(const floating* x, int W, floating* y, long long* a, int ys,
                                 int h0, int w0, int OHr, int OWr, int kh, int kw, int sh,
                                 int sw) noexcept nogil:
    if floating is float:
        max_pool_inside_f(x, W, y, a, ys, h0, w0, OHr, OWr, kh, kw, sh, sw)
    else:
        max_pool_inside_d(x, W, y, a, ys, h0, w0, OHr, OWr, kh, kw, sh, sw)


cdef inline void avg_pool_2x2(const floating* x, int W, floating* y, int OH,
                              int OW) noexcept nogil:
    if floating is float:
        avg_pool_2x2_f(x, W, y, OH, OW)
    else:
        avg_pool_2x2_d(x, W, y, OH, OW)


cdef inline void avg_unpool_2x2(const floating* g, int OH, int OW, int H, int W,
                                floating* x) noexcept nogil:
    if floating is float:
        avg_unpool_2x2_f(g, OH, OW, H, W, x)
    else:
        avg_unpool_2x2_d(g, OH, OW, H, W, x)


cdef inline void max_pool_windows(const floating* xp, int H, int W, floating* yp,
                                  long long* ap, int OW, int oh0, int oh1, int ow0, int ow1,
                                  int kh, int kw, int sh, int sw, int ph, int pw) noexcept nogil:
    """Max pooling of windows [oh0, oh1) x [ow0, ow1) of one plane: yp (OH, OW) and its
    argmax ap from xp (H, W), clipping each window to the plane."""
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, best_i, i
    cdef floating best, v
    cdef bint take
    for oh in range(oh0, oh1):
        h0 = oh * sh - ph
        h1 = min(h0 + kh, H)
        h0 = max(h0, 0)
        for ow in range(ow0, ow1):
            w0 = ow * sw - pw
            w1 = min(w0 + kw, W)
            w0 = max(w0, 0)
            # The window always holds at least one real pixel (padding <= kernel/2).
            best_i = h0 * W + w0
            best = xp[best_i]
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    i = ih * W + iw
                    v = xp[i]
                    # NaN propagates as in PyTorch: the first NaN wins and stays.
                    take = (v > best) | ((v != v) & (best == best))
                    best = select(take, v, best)
                    best_i = best_i + take * (i - best_i)
            yp[oh * OW + ow] = best
            ap[oh * OW + ow] = best_i


cdef inline int first_inside(int s, int p) noexcept nogil:
    """The first window (stride s, padding p) that starts inside the plane: ceil(p / s)."""
    return (p + s - 1) // s


cdef inline int end_inside(int n, int k, int s, int p, int out) noexcept nogil:
    """One past the last of `out` windows (size k, stride s, padding p) that ends inside a
    plane side of n pixels."""
    if n + p - k < 0:
        return 0
    return min(out, (n + p - k) // s + 1)


def max_pool2d_forward(const floating[:, :, ::1] x,   # IN  (N*C, H, W)
                       floating[:, :, ::1] y,         # OUT (N*C, OH, OW)
                       long long[:, :, ::1] argmax,   # OUT (N*C, OH, OW) flat h*W+w index in the plane
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads,
                       bint vectorised=True):
    """Windows wholly inside the plane (all of them without padding) run vectorised, 2x2
    stride-2 ones in their own kernel; the rest, a border where padding clips windows, in
    the generic loop.  vectorised=False runs every window through the generic loop."""
    cdef Py_ssize_t planes = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef bint two_by_two = (vectorised and kh == 2 and kw == 2 and sh == 2 and sw == 2
                            and ph == 0 and pw == 0)
    # The windows inside: rows [oh0, oh1), columns [ow0, ow1) (none if not vectorised).
    cdef int oh0 = first_inside(sh, ph), oh1 = end_inside(H, kh, sh, ph, OH)
    cdef int ow0 = first_inside(sw, pw), ow1 = end_inside(W, kw, sw, pw, OW)
    if not vectorised or oh1 <= oh0 or ow1 <= ow0:
        oh0 = oh1 = ow0 = ow1 = 0
    cdef Py_ssize_t q
    cdef const floating* xp
    cdef floating* yp
    cdef long long* ap
    with nogil, parallel(num_threads=num_threads):
        for q in prange(planes, schedule="static"):
            xp = &x[q, 0, 0]
            yp = &y[q, 0, 0]
            ap = &argmax[q, 0, 0]
            if two_by_two:
                max_pool_2x2(xp, W, yp, ap, OH, OW)
            else:
                if oh1 > oh0:
                    max_pool_inside(xp, W, yp + oh0 * OW + ow0, ap + oh0 * OW + ow0, OW,
                                    oh0 * sh - ph, ow0 * sw - pw, oh1 - oh0, ow1 - ow0,
                                    kh, kw, sh, sw)
                # the border: rows above and below the inside, then its left and right
                max_pool_windows(xp, H, W, yp, ap, OW, 0, oh0, 0, OW, kh, kw, sh, sw, ph, pw)
                max_pool_windows(xp, H, W, yp, ap, OW, oh1, OH, 0, OW, kh, kw, sh, sw, ph, pw)
                max_pool_windows(xp, H, W, yp, ap, OW, oh0, oh1, 0, ow0, kh, kw, sh, sw, ph, pw)
                max_pool_windows(xp, H, W, yp, ap, OW, oh0, oh1, ow1, OW, kh, kw, sh, sw, ph, pw)


def max_pool2d_backward(const floating[:, :, ::1] grad_y,   # IN  (N*C, OH, OW)
                        const long long[:, :, ::1] argmax,  # IN  (N*C, OH, OW)
                        floating[:, ::1] grad_x,            # OUT (N*C, H*W)
                        int num_threads):
    """Scatter grad_y onto zeros at argmax; return how many argmaxes lie outside
    [0, H*W) (those are skipped, and the caller raises).

    Checking the indices here, in the loop that reads them anyway, saves the caller
    two passes over argmax (argmax.min() and .max() took as long as this kernel).
    Zeroing a plane and scattering onto it (both in L1) also measured faster than
    writing each grad_x element once from a vectorised 2x2 kernel.
    """
    cdef Py_ssize_t planes = grad_y.shape[0]
    cdef Py_ssize_t P = <Py_ssize_t> grad_y.shape[1] * grad_y.shape[2]
    cdef Py_ssize_t HW = grad_x.shape[1]
    cdef Py_ssize_t q, i, outside = 0
    cdef long long k
    cdef const floating* gp
    cdef const long long* ap
    cdef floating* xp
    with nogil, parallel(num_threads=num_threads):
        for q in prange(planes, schedule="static"):
            gp = &grad_y[q, 0, 0]
            ap = &argmax[q, 0, 0]
            xp = &grad_x[q, 0]
            memset(xp, 0, HW * sizeof(floating))
            for i in range(P):
                k = ap[i]
                if <unsigned long long> k < <unsigned long long> HW:
                    xp[k] += gp[i]
                else:
                    outside += 1
    return outside


def avg_pool2d_forward(const floating[:, :, ::1] x,   # IN  (N*C, H, W)
                       floating[:, :, ::1] y,         # OUT (N*C, OH, OW)
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads,
                       bint vectorised=True):
    """vectorised=False runs every geometry through the generic loop (for tests)."""
    cdef Py_ssize_t planes = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2], OH = y.shape[1], OW = y.shape[2]
    cdef bint two_by_two = (vectorised and kh == 2 and kw == 2 and sh == 2 and sw == 2
                            and ph == 0 and pw == 0)
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, hs, ws, he, we
    cdef floating acc
    cdef const floating* xp
    cdef floating* yp
    with nogil, parallel(num_threads=num_threads):
        for q in prange(planes, schedule="static"):
            xp = &x[q, 0, 0]
            yp = &y[q, 0, 0]
            if two_by_two:
                avg_pool_2x2(xp, W, yp, OH, OW)
            else:
                for oh in range(OH):
                    hs = oh * sh - ph
                    # The divisor counts padded cells but not cells past the padding.
                    he = min(hs + kh, H + ph)
                    h0 = max(hs, 0)
                    h1 = min(hs + kh, H)
                    for ow in range(OW):
                        ws = ow * sw - pw
                        we = min(ws + kw, W + pw)
                        w0 = max(ws, 0)
                        w1 = min(ws + kw, W)
                        acc = 0
                        for ih in range(h0, h1):
                            for iw in range(w0, w1):
                                acc = acc + xp[ih * W + iw]
                        # In 64 bits: a window of 46341 x 46341 overflows an int.
                        yp[oh * OW + ow] = acc / <floating> (<Py_ssize_t> (he - hs) * (we - ws))


def avg_pool2d_backward(const floating[:, :, ::1] grad_y,  # IN  (N*C, OH, OW)
                        floating[:, :, ::1] grad_x,        # OUT (N*C, H, W)
                        int kh, int kw, int sh, int sw, int ph, int pw, int num_threads,
                        bint vectorised=True):
    """vectorised=False runs every geometry through the generic loop (for tests)."""
    cdef Py_ssize_t planes = grad_y.shape[0]
    cdef int H = grad_x.shape[1], W = grad_x.shape[2], OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef bint two_by_two = (vectorised and kh == 2 and kw == 2 and sh == 2 and sw == 2
                            and ph == 0 and pw == 0)
    cdef Py_ssize_t q
    cdef int oh, ow, ih, iw, h0, w0, h1, w1, hs, ws, he, we
    cdef floating g
    cdef const floating* gp
    cdef floating* xp
    with nogil, parallel(num_threads=num_threads):
        for q in prange(planes, schedule="static"):
            gp = &grad_y[q, 0, 0]
            xp = &grad_x[q, 0, 0]
            if two_by_two:
                avg_unpool_2x2(gp, OH, OW, H, W, xp)
            else:
                memset(xp, 0, <size_t> H * W * sizeof(floating))
                for oh in range(OH):
                    hs = oh * sh - ph
                    he = min(hs + kh, H + ph)
                    h0 = max(hs, 0)
                    h1 = min(hs + kh, H)
                    for ow in range(OW):
                        ws = ow * sw - pw
                        we = min(ws + kw, W + pw)
                        w0 = max(ws, 0)
                        w1 = min(ws + kw, W)
                        g = gp[oh * OW + ow] / <floating> (<Py_ssize_t> (he - hs) * (we - ws))
                        for ih in range(h0, h1):
                            for iw in range(w0, w1):
                                xp[ih * W + iw] += g


def global_avg_pool2d_forward(const floating[:, ::1] x,  # IN  (N*C, H*W)
                              floating[::1] y,           # OUT (N*C,)
                              int num_threads):
    cdef Py_ssize_t planes = x.shape[0], HW = x.shape[1], q, i
    cdef floating acc
    cdef const floating* xp
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        xp = &x[q, 0]
        acc = 0
        for i in range(HW):
            acc = acc + xp[i]
        y[q] = acc / HW


def global_avg_pool2d_backward(const floating[::1] grad_y,  # IN  (N*C,)
                               floating[:, ::1] grad_x,     # OUT (N*C, H*W)
                               int num_threads):
    cdef Py_ssize_t planes = grad_x.shape[0], HW = grad_x.shape[1], q, i
    cdef floating g
    cdef floating* xp
    for q in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        xp = &grad_x[q, 0]
        g = grad_y[q] / HW
        for i in range(HW):
            xp[i] = g
