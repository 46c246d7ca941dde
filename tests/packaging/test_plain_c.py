"""Without GCC/clang vector extensions (MSVC) the kernels' C must still compile: as plain C.

A compiler without GNU extensions is simulated by undefining __GNUC__ and __clang__ (so
src/simd.h takes its plain-C branch); each header must then compile in strict C11 and none
of our code may use a GNU extension (__attribute__, __builtin_*, __asm__) that such a
compiler lacks.  The whole plain-C build, and show_config() saying so, is checked by
tests/packaging/build_with_clang.sh with CFLAGS=-DCNNF_NO_VECTOR_EXTENSIONS.
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "cnnframe_ext" / "src"
# The *_typed.h bodies are not standalone: each is compiled through the header including it.
HEADERS = sorted(p.name for p in SRC.glob("*.h") if not p.stem.endswith("_typed"))
# Needs a compiler that accepts -U for its own predefined macros: gcc and clang do.
CC = shutil.which("clang") or shutil.which("gcc")
NOT_GNU = ["-U__GNUC__", "-U__clang__", "-Wno-builtin-macro-redefined"]
GNU_ONLY = re.compile(r"__attribute__|__builtin_\w+|__asm__|vector_size")

pytestmark = pytest.mark.skipif(CC is None, reason="needs gcc or clang")


def our_lines(preprocessed):
    """The lines of the preprocessed text that come from cnnframe_ext/src/ (not libc)."""
    source = None
    for line in preprocessed.splitlines():
        marker = re.match(r'# \d+ "([^"]+)"', line)
        if marker:
            source = Path(marker.group(1))
        elif source is not None and source.parent.resolve() == SRC:
            yield source.name, line


@pytest.mark.parametrize("header", HEADERS)
def test_header_compiles_as_plain_c(header):
    result = subprocess.run([CC, *NOT_GNU, "-std=c11", "-pedantic-errors", "-fsyntax-only",
                             "-x", "c", str(SRC / header)], capture_output=True, text=True)
    assert result.returncode == 0, f"{header} without GNU extensions:\n{result.stderr}"


@pytest.mark.parametrize("header", HEADERS)
def test_header_uses_no_gnu_extension_as_plain_c(header):
    result = subprocess.run([CC, *NOT_GNU, "-std=c11", "-E", "-x", "c", str(SRC / header)],
                            capture_output=True, text=True, check=True)
    used = [f"{name}: {line.strip()[:100]}" for name, line in our_lines(result.stdout)
            if GNU_ONLY.search(line)]
    assert not used, f"{header} uses GNU extensions without __GNUC__:\n" + "\n".join(used)


def test_plain_c_has_no_vector_extensions():
    probe = '#include "simd.h"\n' \
            "#if CNNF_VECTOR_EXTENSIONS || CNNF_X86\n#error vector path taken\n#endif\n"
    result = subprocess.run([CC, *NOT_GNU, "-std=c11", "-fsyntax-only", f"-I{SRC}", "-x", "c",
                             "-"], input=probe, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
