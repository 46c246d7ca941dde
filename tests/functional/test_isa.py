"""CNNFRAME_ISA caps the instruction set of every kernel module, cnnframe.use_isa switches
it for tests, and cnnframe.show_config() reports it with the build's other facts."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnframe
from cnnframe_ext import runtime

KERNEL_MODULES = {"cnnframe_ext.direct", "cnnframe_ext.pool", "cnnframe_ext.batchnorm",
                  "cnnframe_ext.winograd"}
ABOVE_CPU = runtime.ISAS[runtime.ISAS.index(runtime.detected_isa()) + 1:]


def run_python(code, isa):
    """(returncode, stdout, stderr) of `code` in a fresh interpreter with CNNFRAME_ISA=isa."""
    env = dict(os.environ, CNNFRAME_ISA=isa,
               PYTHONPATH=str(Path(cnnframe.__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    return result.returncode, result.stdout, result.stderr


REPORT = ("import cnnframe, cnnframe_ext.direct, cnnframe_ext.pool, cnnframe_ext.batchnorm, "
          "cnnframe_ext.winograd; from cnnframe_ext import runtime; "
          "print(runtime.active_isa(), sorted(set(runtime.module_isas().values())), "
          "sorted(runtime.module_isas()))")


def test_available_isas_run_on_this_cpu():
    isas = cnnframe.available_isas()
    assert isas[0] == runtime.detected_isa() and isas[-1] == "generic"
    assert list(isas) == sorted(isas, key=runtime.ISAS.index, reverse=True)


@pytest.mark.parametrize("isa", cnnframe.available_isas())
def test_environment_caps_every_kernel_module(isa):
    code, out, err = run_python(REPORT, isa.upper() if isa == "generic" else isa)
    assert code == 0, err
    assert out.split(maxsplit=1)[0] == isa
    assert f"['{isa}']" in out
    for module in KERNEL_MODULES:
        assert module in out


def test_unknown_isa_is_an_error_at_import():
    code, _, err = run_python("import cnnframe", "avx9")
    assert code != 0
    assert "ValueError" in err and "CNNFRAME_ISA='avx9'" in err
    assert "valid values: avx512, avx2, generic" in err


@pytest.mark.skipif(not ABOVE_CPU, reason="no instruction set above this CPU's (AVX-512)")
@pytest.mark.parametrize("isa", ABOVE_CPU)
def test_isa_above_the_cpu_warns_and_takes_the_best(isa):
    code, out, err = run_python(REPORT, isa)
    assert code == 0, err
    assert "RuntimeWarning" in err and f"this CPU has no {isa}" in err
    assert out.split(maxsplit=1)[0] == runtime.detected_isa()
    assert f"['{runtime.detected_isa()}']" in out


def test_use_isa_switches_every_loaded_module_and_restores():
    import cnnframe_ext.direct, cnnframe_ext.winograd  # noqa: F401  (all four loaded)
    outer = runtime.active_isa()
    for level in cnnframe.available_isas():
        with cnnframe.use_isa(level) as active:
            assert active == level == runtime.active_isa()
            assert set(runtime.module_isas()) >= KERNEL_MODULES
            assert set(runtime.module_isas().values()) == {level}
    assert runtime.active_isa() == outer
    assert set(runtime.module_isas().values()) == {outer}


@pytest.mark.skipif(not ABOVE_CPU, reason="no instruction set above this CPU's (AVX-512)")
def test_use_isa_above_the_cpu_warns():
    with pytest.warns(RuntimeWarning, match=f"this CPU has no {ABOVE_CPU[-1]}"):
        with cnnframe.use_isa(ABOVE_CPU[-1]) as active:
            assert active == runtime.detected_isa()
            assert set(runtime.module_isas().values()) == {runtime.detected_isa()}


def test_use_isa_refuses_unknown_names():
    before = runtime.active_isa()
    for bad in ("sse9", "", None, 2):
        with pytest.raises(ValueError, match="valid values: avx512, avx2, generic"):
            with cnnframe.use_isa(bad):
                pass
    assert runtime.active_isa() == before


def test_show_config_reports_isa_threads_blas_and_build(capsys):
    cnnframe.show_config()
    out = capsys.readouterr().out
    config = cnnframe._config.config()
    assert config["isa detected"] == runtime.detected_isa()
    assert config["isa active"].split()[0] == runtime.active_isa()
    for key in ("isa detected", "isa active", "openmp", "blas", "compiler", "compile flags",
                "vector extensions"):
        assert key in out
    assert f"{cnnframe.get_num_threads()} kernel threads" in config["openmp"]
    assert "-O" in config["compile flags"] and runtime.COMPILE_FLAGS in out
    assert config["vector extensions"] == "yes"
    assert any("kernels (scipy)" in line and "threads" in line for line in config["blas"])


def test_results_differ_only_in_rounding_between_paths(rng):
    """Every path computes the same convolution: within float32 rounding of each other."""
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 5, 5)).astype(np.float32)
    results = {}
    for level in cnnframe.available_isas():
        with cnnframe.use_isa(level):
            results[level] = cnnframe.functional.conv2d(x, w, padding=2)
    for y in results.values():
        np.testing.assert_allclose(y, results["generic"], rtol=1e-4, atol=1e-4)
