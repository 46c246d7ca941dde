"""benchmarks/compare_losses_torch.py: every case agrees with PyTorch to 1e-10 in float64
(skipped without PyTorch), and without PyTorch the script says so and exits 0."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_losses_torch.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_losses_torch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# PyTorch is never a dependency, not even of the tests (the losses' own tests check them
# against plain formulas); where it is installed, as on the benchmark machines, this runs.
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed (benchmarks only)")


@needs_torch
@pytest.mark.parametrize("seed", [0, 1])
def test_losses_agree_with_pytorch_in_float64(seed):
    script = load_script()
    for name, cfg, builder, kind, scale, torch_target in script.CASES:
        e_loss, e_grad = script.compare(name, cfg, builder, kind, scale, torch_target, seed)
        assert e_loss <= 1e-10 and e_grad <= 1e-10, (name, cfg, kind, scale)


def test_without_pytorch_the_script_skips_cleanly():
    code = ("import sys, runpy; sys.modules['torch'] = None; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "PyTorch is not installed" in proc.stdout
