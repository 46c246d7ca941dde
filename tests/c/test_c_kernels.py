"""The direct convolution kernels' C, built for aarch64 and run there under emulation.

tests/c/run_arm.sh cross-compiles tests/c/test_direct_arm.c (the kernels of
cnnframe_ext/src/direct.h checked against a plain-loop double reference: forward, input
gradient and weight gradient, float32 and float64) with Debian's gcc-aarch64-linux-gnu,
runs it under qemu-user, then builds and runs it natively.  Without the cross tools these
tests fail when $CI or $CNNFRAME_REQUIRE_ARM is set (CI installs them: a missing toolchain
must not pass silently there) and are skipped, with the reason shown, elsewhere.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64", "gcc")
TIMEOUT = 600  # seconds; the builds take about half a minute


@pytest.fixture(scope="module")
def run_arm(tmp_path_factory):
    """The finished run_arm.sh: (exit status, output)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        msg = (f"the aarch64 C test needs {', '.join(missing)}: "
               "apt-get install -y gcc-aarch64-linux-gnu qemu-user gcc")
        if os.environ.get("CI") or os.environ.get("CNNFRAME_REQUIRE_ARM"):
            pytest.fail(msg)
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("c_kernels")
    try:
        proc = subprocess.run(["sh", str(HERE / "run_arm.sh")], capture_output=True, text=True,
                              timeout=TIMEOUT, env=dict(os.environ, OUT=str(out)))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"run_arm.sh did not end within {TIMEOUT} s; output:\n{exc.stdout}\n"
                    f"{exc.stderr}")
    return proc.returncode, proc.stdout + proc.stderr


def _section(output, heading):
    """The lines run_arm.sh printed after the line starting with `heading`."""
    part = output.split(heading, 1)
    assert len(part) == 2, f"no '{heading}' section in run_arm.sh's output:\n{output}"
    return part[1].split("\n== ", 1)[0]


@pytest.mark.slow
@pytest.mark.parametrize("heading, arch", [("== aarch64", "aarch64"), ("== native", None)])
def test_direct_kernels_match_reference(run_arm, heading, arch):
    status, output = run_arm
    section = _section(output, heading)
    summary = re.search(r"^(\d+) passed, (\d+) failed$", section, re.M)
    assert summary, f"run_arm.sh ({heading}) did not finish its cases:\n{output}"
    failures = [line for line in section.splitlines() if line.startswith("FAIL")]
    assert not failures and summary.group(2) == "0", "\n".join(failures) or section
    if arch:
        assert f"C test: {arch}," in section, section
    # every level runs the three passes: forward and input gradient in both types, and
    # the weight gradient in float32
    for what in ("forward     float", "forward     double", "grad_input  float",
                 "grad_input  double", "grad_weight float"):
        assert re.search(rf"^ok   {what}", section, re.M), f"no '{what}' case:\n{section}"
    assert status == 0, output
