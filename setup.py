"""Build script: compiles the Cython kernels in cnnframe_ext/ into extension modules.

Compiler directives are set once here for every kernel module.  OpenMP is used
when the compiler accepts -fopenmp; otherwise the kernels are built serially
and a warning says so.  CNNFRAME_DEBUG_BUILD=1 turns bounds checks on (for
debugging and sanitizer runs); CNNFRAME_SANITIZE=address adds AddressSanitizer;
CNNFRAME_EXTENSIONS=conv,pool builds only the modules named.

The kernels' C lives in headers under cnnframe_ext/src/ (included by the .pyx files);
they ship in the sdist and the wheel (package_data, MANIFEST.in), and every module is
rebuilt when one of them changes (depends).  The compiler command and flags are
compiled into cnnframe_ext.runtime for cnnframe.show_config().
"""
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
DEBUG = os.environ.get("CNNFRAME_DEBUG_BUILD", "") not in ("", "0")
SANITIZE = os.environ.get("CNNFRAME_SANITIZE", "")
# A comma-separated subset of kernel modules to build (e.g. "conv,winograd"), for quick
# rebuilds while working on one of them; unset builds them all.
ONLY = {name for name in os.environ.get("CNNFRAME_EXTENSIONS", "").split(",") if name}


def compiler_accepts(flag):
    """True if the C compiler used for extensions compiles and links with `flag`."""
    # $CC overrides Python's compiler for the extensions (setuptools honours it): probe
    # that one, e.g. clang without libomp must give a serial build, not a failed one.
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
        cmd = [*cc, flag, str(src), "-o", str(Path(tmp, "probe"))]
        try:
            return subprocess.run(cmd, capture_output=True).returncode == 0
        except OSError:
            return False


openmp = compiler_accepts("-fopenmp")
if not openmp:
    print("WARNING: the compiler does not accept -fopenmp; cnnframe's kernels are built "
          "serially and will use one core.", file=sys.stderr)

compile_args = ["-O1", "-g"] if DEBUG else ["-O3"]
link_args = []
if openmp:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
if SANITIZE:
    compile_args += [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer"]
    link_args += [f"-fsanitize={SANITIZE}"]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "embedsignature": True,
}


def c_string(text):
    """`text` as a C string literal, the value of a -D macro."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


build_info = [("CNNFRAME_COMPILE_FLAGS", c_string(" ".join(compile_args))),
              ("CNNFRAME_CC", c_string(os.environ.get("CC") or sysconfig.get_config_var("CC")
                                       or "cc"))]
headers = sorted(str(h.relative_to(HERE)) for h in (HERE / "cnnframe_ext" / "src").glob("*.h"))
extensions = [
    Extension(
        f"cnnframe_ext.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[np.get_include(), str(HERE / "cnnframe_ext")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + (build_info if pyx.stem == "runtime" else []),
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        depends=headers,
    )
    for pyx in sorted((HERE / "cnnframe_ext").glob("*.pyx"))
    if not ONLY or pyx.stem in ONLY
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives),
    packages=find_packages(include=["cnnframe", "cnnframe.*"]) + ["cnnframe_ext"],
    package_data={"cnnframe_ext": ["*.pxd", "*.pyx", "src/*.h"]},
)
