"""The package refuses to import without its compiled kernels, and says how to build them."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cnnframe
from cnnframe_ext import runtime


def test_import_without_extension_names_build_command(tmp_path):
    # A copy of the pure-Python package with no cnnframe_ext beside it; -S keeps the
    # installed (editable) build off sys.path.
    shutil.copytree(Path(cnnframe.__file__).parent, tmp_path / "cnnframe")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import cnnframe"
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "pip install -e ." in result.stderr and "make build" in result.stderr


def test_runtime_reports_openmp_and_threads():
    assert isinstance(runtime.OPENMP, bool)
    assert runtime.max_threads() >= 1
    assert cnnframe.get_num_threads() >= 1


def test_set_num_threads_pins_blas_and_validates():
    from threadpoolctl import threadpool_info
    import cnnframe._threads as threads
    try:
        cnnframe.set_num_threads(1, blas_threads=2)
        assert cnnframe.get_num_threads() == 1
        numpy_libs = {lib.filepath for lib in threads._numpy_blas}
        for info in threadpool_info():
            if info["filepath"] in numpy_libs:
                assert info["num_threads"] == 2
            elif info["internal_api"] == "openblas":
                assert info["num_threads"] == 1  # the kernels' BLAS: one per kernel thread
    finally:
        cnnframe.set_num_threads(2)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            cnnframe.set_num_threads(bad)
    with pytest.raises(ValueError, match="blas_threads must be an integer >= 1"):
        cnnframe.set_num_threads(2, blas_threads=0)


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_is_accepted_by_glibc():
    from cnnframe._alloc import keep_freed_memory
    assert keep_freed_memory() is True


def _parallel_blocks(source):
    """(text of the function before the block, names the block assigns at its own level)
    for every `with ... parallel(...)` block of a .pyx source."""
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if not re.match(r"\s*with\b.*\bparallel\(", line):
            continue
        start = max(j for j in range(i + 1) if re.match(r"\s*(c?p?def)\s+\w+.*\(", lines[j])
                    and not lines[j].lstrip().startswith("cdef extern"))
        indent = len(line) - len(line.lstrip()) + 4
        names = set()
        for body in lines[i + 1:]:
            if body.strip() and len(body) - len(body.lstrip()) < indent:
                break
            m = re.match(r" {%d}(\w+)\s*=[^=]" % indent, body)
            if m:
                names.add(m.group(1))
        yield "\n".join(lines[start:i]), names


def test_parallel_blocks_start_from_initialised_variables():
    """Cython copies every variable a `parallel()` block assigns into each thread
    (firstprivate): each must be set before the block, or gcc warns that it is used
    uninitialised (16 such warnings in winograd.c, 8 in conv.c and 6 in direct.c before)."""
    checked = 0
    for pyx in sorted(Path(runtime.__file__).parent.glob("*.pyx")):
        for before, names in _parallel_blocks(pyx.read_text()):
            for name in names:
                assert re.search(r"\b%s\b\s*=[^=]" % name, before), (
                    f"{pyx.name}: {name!r} is assigned in a parallel() block but never set "
                    "before it")
                checked += 1
    assert checked >= 10
