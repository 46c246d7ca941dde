# The instruction-set level of the kernels (src/simd.h), shared by the kernel modules.
# Each module keeps its own level; cnnframe_ext.runtime sets them all (see runtime.pyx).
cdef extern from "src/simd.h":
    enum:
        CNNF_ISA_GENERIC
        CNNF_ISA_AVX2
        CNNF_ISA_AVX512
        CNNF_VECTOR_EXTENSIONS
    int cnnf_cpu_isa() noexcept nogil
    int cnnf_isa() noexcept nogil
    void cnnf_set_isa(int level) noexcept nogil
