"""The source distribution carries everything the extension build needs, and installs.

test_sdist_holds_every_build_source builds the sdist (setup.py sdist, with the test
environment's setuptools, Cython and numpy) from a copy of the source tree and checks
that each C header, .pyx and .pxd under cnnframe_ext/ is in it.

test_sdist_installs_in_fresh_venv then pip-installs that sdist into a fresh venv (pip's
build isolation fetches the build requirements from PyPI: it needs the network), checks the
wheel pip built carries them too, and runs one convolution with the installed package.  It
compiles every kernel (minutes), so it runs only in CI (CI=true) or with
CNNFRAME_SLOW_TESTS=1.
"""
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLOW = os.environ.get("CI") == "true" or os.environ.get("CNNFRAME_SLOW_TESTS") == "1"


def build_sources():
    """Paths (relative to the repository) the extension build reads besides setup.py."""
    ext = REPO / "cnnframe_ext"
    paths = [*ext.glob("src/*.h"), *ext.glob("src/*.c"), *ext.glob("*.pyx"), *ext.glob("*.pxd")]
    return sorted(p.relative_to(REPO).as_posix() for p in paths)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The sdist built from a copy of the tree (nothing is written into the checkout)."""
    work = tmp_path_factory.mktemp("sdist")
    src = work / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__", "build")
    for name in ("cnnframe", "cnnframe_ext"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    # C sources of our own (src/*.c), if any, are sources, not build output: copy them back.
    for path in (REPO / "cnnframe_ext" / "src").glob("*.c"):
        shutil.copy2(path, src / "cnnframe_ext" / "src" / path.name)
    dist = work / "dist"
    # setup.py sdist needs nothing beyond the test environment (python -m build would
    # need the `build` package); the sdist is the same.
    result = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(dist)],
                            cwd=src, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"setup.py sdist failed:\n{result.stdout}\n{result.stderr}"
    (archive,) = dist.glob("cnnframe-*.tar.gz")
    return archive


def test_sdist_holds_every_build_source(sdist):
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    sources = build_sources()
    assert any(s.endswith(".h") for s in sources)
    missing = [s for s in sources + ["setup.py", "pyproject.toml"] if s not in names]
    assert not missing, f"{sdist.name} lacks {missing}"


CONV_CHECK = textwrap.dedent("""
    import sys
    import numpy as np
    import cnnframe
    from cnnframe.functional import conv2d
    assert "site-packages" in cnnframe.__file__, cnnframe.__file__
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y = conv2d(x, w, b, padding=1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    ref = np.einsum("nchwab,fcab->nfhw", windows, w) + b[None, :, None, None]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    cnnframe.show_config()
""")


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="compiles every kernel (minutes) and needs PyPI: runs "
                    "in CI (CI=true) or with CNNFRAME_SLOW_TESTS=1")
def test_sdist_installs_in_fresh_venv(sdist, tmp_path):
    # The fresh venv must see only what it installed: not the checkout via PYTHONPATH.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    wheels = tmp_path / "wheels"
    # Build the wheel from the sdist (isolated: build requirements from PyPI), then install it.
    result = subprocess.run([str(py), "-m", "pip", "wheel", "--no-deps", "-w", str(wheels),
                             str(sdist)], capture_output=True, text=True, timeout=3600, env=env)
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    (wheel,) = wheels.glob("cnnframe-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    missing = [s for s in build_sources() if s not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    assert any(n.startswith("cnnframe_ext/conv.") and n.endswith(".so") for n in names), names
    result = subprocess.run([str(py), "-m", "pip", "install", str(wheel)],
                            capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    # Run from an empty directory so that the checkout is not on sys.path.
    run = subprocess.run([str(py), "-c", CONV_CHECK], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300, env=env)
    assert run.returncode == 0, f"the installed cnnframe failed:\n{run.stdout}\n{run.stderr}"
    assert "vector extensions" in run.stdout
