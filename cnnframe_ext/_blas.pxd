# Fused-type wrapper over scipy's Cython BLAS, shared by the kernel modules.
# BLAS is column-major: a row-major (R, C) array is a column-major C x R matrix.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm(char transa, char transb, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) op(B) + beta * C, all column-major."""
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*> a, &lda,
              <float*> b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*> a, &lda,
              <double*> b, &ldb, &beta, c, &ldc)
