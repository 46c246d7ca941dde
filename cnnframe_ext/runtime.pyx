"""What the compiled kernels were built with, the instruction set they use, and OpenMP's
default thread count.

The kernels exist in up to three versions (src/simd.h): "avx512" (x86-64 with
AVX-512F), "avx2" (x86-64 with AVX2 and FMA) and "generic" (any CPU).  They use the
best one the CPU runs, capped by the environment variable CNNFRAME_ISA, read once, when
this module is first imported:

- CNNFRAME_ISA=avx512|avx2|generic caps the level (case-insensitive; unset or empty: no
  cap).  A level above the CPU's gives a RuntimeWarning and the CPU's best.
- Any other value raises ValueError naming the valid ones (so `import cnnframe` fails).

Every kernel module registers itself here when imported (`_register`); `set_isa`
switches all of them at run time, for tests and benchmarks (cnnframe.use_isa).
"""
import os
import warnings

cimport cnnframe_ext._simd as _simd


cdef extern from "src/runtime.h":
    int cnnframe_max_threads() noexcept nogil
    int CNNFRAME_HAVE_OPENMP
    const char* CNNFRAME_COMPILER
    const char* CNNFRAME_COMPILE_FLAGS
    const char* CNNFRAME_CC

OPENMP = bool(CNNFRAME_HAVE_OPENMP)
# The compiler (name and version), its command and the flags the kernels were built with.
COMPILER = CNNFRAME_COMPILER.decode()
CC = CNNFRAME_CC.decode()
COMPILE_FLAGS = CNNFRAME_COMPILE_FLAGS.decode()
# Whether the compiler had GCC/clang vector extensions (the kernels are written on them).
VECTOR_EXTENSIONS = bool(_simd.CNNF_VECTOR_EXTENSIONS)
# The instruction-set levels, lowest first (index = the level in src/simd.h).
ISAS = ("generic", "avx2", "avx512")


def max_threads():
    """The number of threads OpenMP would use by default (1 in a serial build)."""
    return cnnframe_max_threads()


def detected_isa():
    """The best instruction-set level this CPU runs: "avx512", "avx2" or "generic"."""
    return ISAS[_simd.cnnf_cpu_isa()]


def _level(value, source):
    """The level for the name `value` (from `source`), capped at the CPU's."""
    name = str(value).strip().lower()
    if name not in ISAS:
        raise ValueError(f"{source}={value!r} is not an instruction set cnnframe knows; "
                         f"valid values: {', '.join(reversed(ISAS))}")
    best = _simd.cnnf_cpu_isa()
    if ISAS.index(name) > best:
        warnings.warn(f"{source}={value!r}: this CPU has no {name}; cnnframe uses its best, "
                      f"{ISAS[best]}", RuntimeWarning, stacklevel=3)
        return best
    return ISAS.index(name)


_active = _level(os.environ.get("CNNFRAME_ISA") or ISAS[_simd.cnnf_cpu_isa()], "CNNFRAME_ISA")
_setters = {}        # kernel module name: its level setter
_module_levels = {}  # kernel module name: the level it reported using


def active_isa():
    """The instruction-set level the kernels use now ("avx512", "avx2" or "generic")."""
    return ISAS[_active]


def set_isa(name):
    """Make every kernel module use the level `name`; return the previous level's name.

    For tests and benchmarks (normally CNNFRAME_ISA decides, once).  As there, a level
    above the CPU's warns and takes the CPU's best; an unknown name raises ValueError.
    Not thread-safe: call it while no kernel runs.
    """
    global _active
    previous = ISAS[_active]
    _active = _level(name, "set_isa: name")
    for module, setter in _setters.items():
        _module_levels[module] = setter(_active)
    return previous


def module_isas():
    """{kernel module: the instruction-set level its kernels use} for the modules loaded."""
    return {name: ISAS[level] for name, level in _module_levels.items()}


def _register(name, setter):
    """Called by each kernel module `name` at import with its level setter, which takes an
    int level and returns the level the module then uses."""
    _setters[name] = setter
    _module_levels[name] = setter(_active)
