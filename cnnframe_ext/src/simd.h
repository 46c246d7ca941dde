/* What every kernel family shares: vector types, target attributes, CPU-feature detection
   and the instruction set the kernels may use.

   cnnframe's kernels come in up to three versions, one per instruction-set level:
     CNNF_ISA_AVX512   x86-64 with AVX-512F (32 zmm registers),
     CNNF_ISA_AVX2     x86-64 with AVX2 and FMA (16 ymm registers),
     CNNF_ISA_GENERIC  any CPU: the compiler's baseline target (SSE2 on x86-64, NEON on
                       aarch64), written on GCC/clang vector extensions.
   Each extension module keeps the level its kernels use in cnnf_isa_level (one copy per
   module: every module includes this header).  cnnframe_ext.runtime sets it when the
   module is imported, from CNNFRAME_ISA capped at what the CPU has (cnnf_cpu_isa()), and
   again when a test forces a level.  Until then the kernels run the generic versions.

   Plain C (no Python.h), so that the kernels compile on their own, e.g. for a C test. */
#ifndef CNNFRAME_SIMD_H
#define CNNFRAME_SIMD_H

#include <stddef.h>

/* CNNF_VECTOR_EXTENSIONS: 1 where the compiler has GCC/clang vector extensions.  Without
   them (MSVC, or a build with -DCNNF_NO_VECTOR_EXTENSIONS, which is how the tests check
   this path) the kernels compile as plain C at the generic level only: no vector types,
   no per-instruction-set versions, no direct convolution (direct.h: dc_has_tile is 0, so
   conv2d takes im2col or Winograd); batch norm sums one element at a time (batchnorm.h).
   cnnframe.show_config() says which. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(CNNF_NO_VECTOR_EXTENSIONS)
#define CNNF_VECTOR_EXTENSIONS 1
#else
#define CNNF_VECTOR_EXTENSIONS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CNNF_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define CNNF_INLINE static __forceinline
#else
#define CNNF_INLINE static inline
#endif

#if CNNF_VECTOR_EXTENSIONS
/* Vectors wider than the baseline target only cross always-inline helpers, never a real
   call: the ABI notes GCC and clang print for them (-Wpsabi) do not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

/* GCC vector extensions: f32xN holds N floats, f64xN N doubles.  The ...u types are
   unaligned, may-alias views, for loads and stores anywhere in a row. */
typedef float cnnf_f32x4 __attribute__((vector_size(16)));
typedef float cnnf_f32x8 __attribute__((vector_size(32)));
typedef float cnnf_f32x16 __attribute__((vector_size(64)));
typedef double cnnf_f64x2 __attribute__((vector_size(16)));
typedef double cnnf_f64x4 __attribute__((vector_size(32)));
typedef double cnnf_f64x8 __attribute__((vector_size(64)));
typedef float cnnf_f32x4u __attribute__((vector_size(16), aligned(4), may_alias));
typedef float cnnf_f32x8u __attribute__((vector_size(32), aligned(4), may_alias));
typedef float cnnf_f32x16u __attribute__((vector_size(64), aligned(4), may_alias));
typedef double cnnf_f64x2u __attribute__((vector_size(16), aligned(8), may_alias));
typedef double cnnf_f64x4u __attribute__((vector_size(32), aligned(8), may_alias));
typedef double cnnf_f64x8u __attribute__((vector_size(64), aligned(8), may_alias));
#endif /* CNNF_VECTOR_EXTENSIONS */

enum { CNNF_ISA_GENERIC = 0, CNNF_ISA_AVX2 = 1, CNNF_ISA_AVX512 = 2 };

/* Target attributes of the x86-64 versions (GCC and clang; a plain-C build has none).  CNNF_AVX2 (no FMA) is what the pooling,
   batch-norm and Winograd kernels were always built with for AVX2 CPUs: their results
   stay as they were.  The direct convolution's AVX2 kernels fuse multiply-adds. */
#if defined(__x86_64__) && CNNF_VECTOR_EXTENSIONS
#define CNNF_X86 1
#define CNNF_AVX512 __attribute__((target("avx512f")))
#define CNNF_AVX2 __attribute__((target("avx2")))
#define CNNF_AVX2_FMA __attribute__((target("avx2,fma")))
#else
#define CNNF_X86 0
#endif

/* The best level this CPU runs: AVX-512F; else AVX2 with FMA; else generic. */
static inline int cnnf_cpu_isa(void) {
#if CNNF_X86
    if (__builtin_cpu_supports("avx512f")) return CNNF_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CNNF_ISA_AVX2;
#endif
    return CNNF_ISA_GENERIC;
}

/* The level this module's kernels use (see the top of this file). */
static int cnnf_isa_level = CNNF_ISA_GENERIC;

/* Use `level`, or the CPU's best if that is lower: never an illegal instruction. */
static inline void cnnf_set_isa(int level) {
    int best = cnnf_cpu_isa();
    cnnf_isa_level = level < CNNF_ISA_GENERIC ? CNNF_ISA_GENERIC : level > best ? best : level;
}

static inline int cnnf_isa(void) { return cnnf_isa_level; }

/* CNNF_MULTIVERSION(name, params, args) defines, for a kernel whose code is the
   always-inline function name##_body:
     name##_avx512  the body compiled for AVX-512F,
     name##_avx2    the body compiled for AVX2 (CNNF_AVX2),
     name##_generic the body compiled for the baseline target,
   and `name`, which calls the one cnnf_isa() selects.  `params` is the parenthesised
   parameter list, `args` the same names as arguments.  Off x86-64 only the generic
   version exists and `name` calls it.  (The one name generator of the kernel sources;
   each use is commented with the names it defines.) */
#if CNNF_X86
/* CNNF_MULTIVERSION_OF: the same with a body per level (e.g. a kernel whose avx2 version
   needs another formulation: batchnorm.h's BNK_SUMMING). */
#define CNNF_MULTIVERSION_OF(name, params, args, body512, body256, body128)                  \
    CNNF_AVX512 static void name##_avx512 params { body512 args; }                          \
    CNNF_AVX2 static void name##_avx2 params { body256 args; }                              \
    static void name##_generic params { body128 args; }                                    \
    static inline void name params {                                                        \
        switch (cnnf_isa()) {                                                                \
            case CNNF_ISA_AVX512: name##_avx512 args; break;                                 \
            case CNNF_ISA_AVX2: name##_avx2 args; break;                                     \
            default: name##_generic args;                                                    \
        }                                                                                    \
    }
#else
#define CNNF_MULTIVERSION_OF(name, params, args, body512, body256, body128)                  \
    static void name##_generic params { body128 args; }                                     \
    static inline void name params { name##_generic args; }
#endif
#define CNNF_MULTIVERSION(name, params, args)                                                \
    CNNF_MULTIVERSION_OF(name, params, args, name##_body, name##_body, name##_body)

#endif /* CNNFRAME_SIMD_H */
