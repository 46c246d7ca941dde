/* Kernels whose code is written once for any vector width and compiled at each
   instruction-set level's own width: 16 floats or 8 doubles (one zmm register) for
   avx512, 8 or 4 (one ymm) for avx2, 4 or 2 (one xmm) for generic, one value in a
   plain-C build.  GCC compiles comparisons of vectors wider than the target's registers
   a lane at a time, and keeps wider vectors of doubles in memory between operations
   (a 2x slowdown measured for 8-double sums at the avx2 level), so each level gets the
   width of its registers.

   CNNF_MULTIWIDTH(name, body, params, args, w512, w256, w128) defines name##_avx512,
   name##_avx2 (with FMA) and name##_generic, which run body##_##w512, ..._w256 and
   ..._w128 (the body instantiated at that width: f16, f8, f4 for floats, ...), and
   `name`, which calls the one cnnf_isa() selects, as CNNF_MULTIVERSION (simd.h) does.
   Off x86-64 only the generic version exists.  CNNF_F128 and CNNF_D128 are the generic
   level's suffixes (f4 and d2, or f1 and d1 in plain C). */
#ifndef CNNFRAME_MULTIWIDTH_H
#define CNNFRAME_MULTIWIDTH_H

#include "simd.h"

#define CNNF_CAT2(a, b) a##_##b
#define CNNF_CAT(a, b) CNNF_CAT2(a, b)

#if CNNF_X86
#define CNNF_MULTIWIDTH(name, body, params, args, w512, w256, w128)                         \
    CNNF_AVX512 static void name##_avx512 params { CNNF_CAT(body, w512) args; }            \
    CNNF_AVX2_FMA static void name##_avx2 params { CNNF_CAT(body, w256) args; }            \
    static void name##_generic params { CNNF_CAT(body, w128) args; }                       \
    static inline void name params {                                                        \
        switch (cnnf_isa()) {                                                               \
            case CNNF_ISA_AVX512: name##_avx512 args; break;                                \
            case CNNF_ISA_AVX2: name##_avx2 args; break;                                    \
            default: name##_generic args;                                                   \
        }                                                                                   \
    }
#else
#define CNNF_MULTIWIDTH(name, body, params, args, w512, w256, w128)                         \
    static void name##_generic params { CNNF_CAT(body, w128) args; }                       \
    static inline void name params { name##_generic args; }
#endif

#if CNNF_VECTOR_EXTENSIONS
#define CNNF_F128 f4
#define CNNF_D128 d2
#else
#define CNNF_F128 f1
#define CNNF_D128 d1
#endif

#endif /* CNNFRAME_MULTIWIDTH_H */
