"""`make build` recompiles only kernel modules whose sources changed (issue 25: `make setup`
compiled every module twice, once in `pip install -e` and again in `make build`).

Runs the real Makefile in a scratch tree with a stand-in venv python that records the
setup.py calls; file ages are set with os.utime, so nothing is compiled.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = ("conv", "pool")

# Prints ".so" as EXT_SUFFIX; for setup.py, records the call and "builds" the modules named.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-c" ]; then echo ".so"; exit 0; fi
echo "CNNFRAME_EXTENSIONS=$CNNFRAME_EXTENSIONS $*" >> calls.log
for m in $(echo "$CNNFRAME_EXTENSIONS" | tr , ' '); do touch "cnnframe_ext/$m.so"; done
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def tree(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path)
    (tmp_path / "cnnframe_ext").mkdir()
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    sources = [tmp_path / "setup.py", tmp_path / "pyproject.toml",
               tmp_path / "cnnframe_ext" / "_blas.pxd"]
    sources += [tmp_path / "cnnframe_ext" / f"{m}.pyx" for m in MODULES]
    for age, paths in ((300, sources),
                       (200, [tmp_path / ".venv" / ".setup-done"]),
                       (100, [tmp_path / "cnnframe_ext" / f"{m}.so" for m in MODULES])):
        for path in paths:  # sources, then setup, then the modules pip install -e built
            path.touch()
            t = path.stat().st_mtime - age
            os.utime(path, (t, t))
    return tmp_path


def make_build(tree):
    proc = subprocess.run(["make", "build"], cwd=tree, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = tree / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return proc.stdout, calls


def test_nothing_is_compiled_after_setup(tree):
    out, calls = make_build(tree)
    assert calls == [] and "kernels up to date" in out


@pytest.mark.parametrize("changed, rebuilt", [
    ("cnnframe_ext/pool.pyx", "pool"),
    ("cnnframe_ext/_blas.pxd", "conv,pool"),
    ("cnnframe_ext/conv.so", "conv"),  # deleted
])
def test_only_stale_modules_are_rebuilt(tree, changed, rebuilt):
    path = tree / changed
    if path.suffix == ".so":
        path.unlink()
    else:
        path.touch()
    _, calls = make_build(tree)
    assert calls == [f"CNNFRAME_EXTENSIONS={rebuilt} setup.py build_ext --inplace"]
    _, calls = make_build(tree)  # and then they are up to date
    assert calls == []
