"""The activation kernels' own exp, expm1, tanh and erf (cnnframe_ext/src/activation.h)
against accurate references, on every instruction-set path and in the plain-C build.

Errors are counted in ulps of the exactly rounded result, over dense grids that include
large arguments, subnormal arguments and results, infinities and NaN.
"""
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from cnnframe_ext import activation as K

SRC = Path(__file__).resolve().parents[2] / "cnnframe_ext" / "src"
FUNCTIONS = sorted(K.FUNCTIONS)
# The most ulps any result may be off by (measured: 2.4, tanh in float64 near |x| = 0.2).
MAX_ULPS = 3.0
# numpy's long double: 64-bit mantissa on x86-64 Linux, else just double.
LONG = np.longdouble
EXTENDED = np.finfo(LONG).nmant > 52


def reference(name, x):
    """The exact function of x (float32 or float64 values), in long double (float64 where
    long double is double: then float64 results get a looser bound).  erf: scipy's in
    float64 for float32 values; for float64 values the kernels call libm's erf, and the
    reference is libm's erf (math.erf) too: scipy's is up to 3 ulps off."""
    v = x.astype(LONG if x.dtype == np.float64 else np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "exp":
            return np.exp(v)
        if name == "expm1":   # defined for x <= 0: a positive x counts as 0
            return np.expm1(np.minimum(v, 0))
        if name == "tanh":
            return np.tanh(v)
    if x.dtype == np.float64:
        return np.vectorize(math.erf, otypes=[np.float64])(x)
    return special.erf(v)


def grid(dtype):
    """Dense values over the ranges where each function changes, plus a spread of bit
    patterns over every exponent (subnormals included) and the special values."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(7)
    itype = np.uint32 if dtype == np.float32 else np.uint64
    patterns = rng.integers(0, np.iinfo(itype).max, 200_000, dtype=itype, endpoint=True)
    spread = patterns.view(dtype)
    spread = spread[np.isfinite(spread)]
    tiny = info.smallest_subnormal
    parts = [np.linspace(-12, 12, 400_001), np.linspace(-110, 95, 50_001),
             np.linspace(-800, 720, 20_001), spread,
             np.array([0.0, -0.0, tiny, -tiny, 2 * tiny, info.tiny, -info.tiny, info.max,
                       -info.max, info.eps, 0.921875, -0.921875, 0.625, -0.625, 4.0, -4.0])]
    return np.concatenate([p.astype(dtype) for p in parts])


def rounded(ref, dtype):
    """ref rounded to dtype (inf where it overflows)."""
    with np.errstate(over="ignore"):
        return ref.astype(dtype)


def ulp_errors(y, ref, dtype):
    """|y - ref| in ulps of ref rounded to dtype (the subnormal spacing below tiny)."""
    spacing = np.spacing(np.abs(rounded(ref, dtype))).astype(ref.dtype)
    with np.errstate(invalid="ignore"):
        return np.abs(y.astype(ref.dtype) - ref) / spacing


def check(name, x, y, ref, dtype, where):
    """Every finite result within the bound; results that round to inf (exp of a large x)
    are inf; NaN where the exact value is NaN."""
    finite = np.isfinite(rounded(ref, dtype))
    err = ulp_errors(y[finite], ref[finite], dtype)
    bound = MAX_ULPS if EXTENDED or dtype == np.float32 or name == "erf" else 2 * MAX_ULPS
    worst = int(np.argmax(err))
    assert err[worst] <= bound, (f"{name} {np.dtype(dtype).name} {where}: {err[worst]:.2f} "
                                 f"ulps at x = {x[finite][worst]!r}: {y[finite][worst]!r}, "
                                 f"exact {ref[finite][worst]!r}")
    np.testing.assert_array_equal(y[~finite], rounded(ref[~finite], dtype))


def run(name, x):
    y = np.full_like(x, np.nan)
    K.elementary(K.FUNCTIONS[name], x, y)
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_within_a_few_ulps_of_exact(isa, name, dtype):
    x = grid(dtype)
    check(name, x, run(name, x), reference(name, x), dtype, f"on {isa}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(isa, dtype):
    inf, nan = math.inf, math.nan
    x = np.array([inf, -inf, nan, -nan, 0.0], dtype)
    expected = {"exp": [inf, 0, nan, nan, 1], "expm1": [0, -1, nan, nan, 0],
                "tanh": [1, -1, nan, nan, 0], "erf": [1, -1, nan, nan, 0]}
    for name, want in expected.items():
        np.testing.assert_array_equal(run(name, x), np.array(want, dtype), err_msg=name)
    # odd functions keep the sign of a zero
    for name in ("tanh", "erf"):
        assert np.signbit(run(name, np.array([-0.0], dtype))[0]), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_does_not_depend_on_position(isa, dtype):
    # the last partial vector is computed in a padded copy: same values as in full vectors
    x = np.random.default_rng(3).standard_normal(61).astype(dtype) * 5
    for name in FUNCTIONS:
        whole = run(name, x)
        for start in range(1, 20):
            np.testing.assert_array_equal(run(name, x[start:].copy()), whole[start:],
                                          err_msg=f"{name} from {start}")


def test_bad_length_is_refused():
    with pytest.raises(ValueError, match="x has 3 values, y 2"):
        K.elementary(0, np.zeros(3), np.zeros(2))


# ---- the plain-C build (no vector extensions): the same code on scalars ----

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "activation.h"
/* argv: function, float|double, count; values on stdin, results on stdout (binary) */
int main(int argc, char** argv) {
    int which = atoi(argv[1]), dbl = argv[2][0] == 'd';
    long n = atol(argv[3]);
    size_t size = dbl ? sizeof(double) : sizeof(float);
    void* x = malloc(n * size); void* y = malloc(n * size);
    if (fread(x, size, n, stdin) != (size_t) n) return 2;
    if (dbl) act_math_d(which, x, y, n); else act_math_f(which, x, y, n);
    fwrite(y, size, n, stdout);
    return 0;
}
"""

CC = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("gcc") or shutil.which("clang")


@pytest.fixture(scope="module")
def plain_c_binary(tmp_path_factory):
    if CC is None:
        pytest.skip("needs a C compiler (gcc or clang)")
    tmp = tmp_path_factory.mktemp("activation_plain_c")
    (tmp / "harness.c").write_text(HARNESS)
    result = subprocess.run([CC, "-O2", "-std=c11", "-DCNNF_NO_VECTOR_EXTENSIONS", f"-I{SRC}",
                             str(tmp / "harness.c"), "-o", str(tmp / "harness"), "-lm"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return tmp / "harness"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_plain_c_build_is_as_accurate(plain_c_binary, name, dtype):
    x = grid(dtype)[::7].copy()
    out = subprocess.run([str(plain_c_binary), str(K.FUNCTIONS[name]),
                          "double" if dtype == np.float64 else "float", str(x.size)],
                         input=x.tobytes(), capture_output=True, check=True).stdout
    check(name, x, np.frombuffer(out, dtype), reference(name, x), dtype, "in plain C")
