"""How cnnframe was built and what it runs on: `show_config()`, and the instruction set
the kernels use.

The compiled kernels exist per instruction set ("avx512", "avx2", "generic"; see
cnnframe_ext/src/simd.h).  They run the best one the CPU has, capped by the
environment variable CNNFRAME_ISA (read once, at import; an unknown value is an
error, a level the CPU lacks a warning).  `use_isa` switches them for a block, for
tests and benchmarks.
"""
import contextlib
import os

from cnnframe_ext import runtime as _runtime


def available_isas():
    """The instruction sets this CPU runs, best first: e.g. ("avx2", "generic")."""
    best = _runtime.ISAS.index(_runtime.detected_isa())
    return tuple(reversed(_runtime.ISAS[:best + 1]))


def active_isa():
    """The instruction set the kernels use now: "avx512", "avx2" or "generic"."""
    return _runtime.active_isa()


@contextlib.contextmanager
def use_isa(name):
    """Run the kernels on the instruction set `name` inside the block (for testing).

    Parameters
    ----------
    name : {"avx512", "avx2", "generic"}
        A level above the CPU's warns (RuntimeWarning) and takes the CPU's best.

    Yields
    ------
    str
        The level in use.

    Raises
    ------
    ValueError
        For an unknown name.

    Not thread-safe: switch only while no kernel runs.  Examples::

        for isa in cnnframe.available_isas():
            with cnnframe.use_isa(isa):
                ...  # every kernel on this path
    """
    previous = _runtime.set_isa(name)
    try:
        yield _runtime.active_isa()
    finally:
        _runtime.set_isa(previous)


def _blas_lines():
    """One line per BLAS library loaded, from threadpoolctl, and whom it serves."""
    from cnnframe import _threads
    lines = []
    for role, libs in (("kernels (scipy)", _threads._kernel_blas),
                       ("numpy", _threads._numpy_blas)):
        for lib in libs:
            info = lib.info()
            extra = ", ".join(f"{key} {info[key]}" for key in ("threading_layer", "architecture")
                              if info.get(key))
            lines.append(f"{role}: {info.get('internal_api')} {info.get('version')}"
                         f"{' (' + extra + ')' if extra else ''}, "
                         f"{info.get('num_threads')} threads, {info.get('filepath')}")
    return lines or ["none found by threadpoolctl"]


def config():
    """What `show_config` prints, as a dict of strings (and a list for "blas")."""
    from cnnframe import __version__, get_num_threads
    isa = os.environ.get("CNNFRAME_ISA")
    return {
        "version": __version__,
        "isa detected": _runtime.detected_isa(),
        "isa active": _runtime.active_isa() + (f" (CNNFRAME_ISA={isa})" if isa else ""),
        "openmp": (f"yes, {get_num_threads()} kernel threads (OpenMP default "
                   f"{_runtime.max_threads()})" if _runtime.OPENMP
                   else "no: the kernels run on one thread"),
        "blas": _blas_lines(),
        "compiler": f"{_runtime.COMPILER} (command: {_runtime.CC})",
        "compile flags": _runtime.COMPILE_FLAGS,
        "vector extensions": ("yes" if _runtime.VECTOR_EXTENSIONS else
                              "no: plain-C kernels at the generic level, no direct "
                              "convolution (conv2d takes im2col or Winograd)"),
    }


def show_config():
    """Print how cnnframe was built and what it runs on, like numpy.show_config().

    The instruction set detected on this CPU and the one the kernels use (capped by
    CNNFRAME_ISA), OpenMP and its threads, the BLAS libraries in use (threadpoolctl),
    the compiler and compile flags of the kernels, and whether the compiler had GCC
    vector extensions.
    """
    entries = config()
    width = max(len(key) for key in entries)
    print("cnnframe configuration")
    for key, value in entries.items():
        values = value if isinstance(value, list) else [value]
        for i, line in enumerate(values):
            print(f"  {key if i == 0 else '':<{width}}  {line}")
