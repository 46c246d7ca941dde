"""The package refuses to import without its compiled kernels, and says how to build them."""
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
