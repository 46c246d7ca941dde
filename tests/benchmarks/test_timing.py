"""The benchmarks share one timer (benchmarks/_timing.py) and each of them still starts.

Only the timer's bookkeeping is tested (which calls are made, in which order, what is
returned), never a speed.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py"))


def load_timing():
    spec = importlib.util.spec_from_file_location("_timing", BENCHMARKS / "_timing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recorder(calls, name, seconds=None):
    def fn():
        calls.append(name)
        return seconds
    return fn


@pytest.mark.parametrize("warm_each_repeat", [True, False])
def test_interleaved_ms_calls_in_turn_with_warm_up(warm_each_repeat):
    timing = load_timing()
    calls = []
    impls = {"a": recorder(calls, "a"),
             "b": (recorder(calls, "b.fwd"), recorder(calls, "b.bwd"))}
    ms = timing.interleaved_ms(impls, 3, settle_s=0, warm_each_repeat=warm_each_repeat)
    repeat = ["a", "a", "b.fwd", "b.bwd", "b.fwd", "b.bwd"]  # warm-up, then timed, per impl
    expected = repeat * 3 if warm_each_repeat else repeat + (["a", "b.fwd", "b.bwd"] * 2)
    assert calls == expected
    assert len(ms["a"]) == 3 and isinstance(ms["b"], tuple) and [len(t) for t in ms["b"]] == [3, 3]
    assert all(t >= 0 for t in ms["a"] + ms["b"][0] + ms["b"][1])


def test_a_function_may_report_its_own_seconds():
    timing = load_timing()
    assert timing.call_ms(lambda: 0.25) == 250.0
    medians = timing.median_ms({"x": lambda: 0.002, "y": (lambda: 0.001, lambda: 0.003)}, 5,
                               settle_s=0)
    assert medians == {"x": 2.0, "y": (1.0, 3.0)}


def test_the_benchmarks_share_the_timer():
    """No benchmark keeps a private copy of the interleaved timer (four did)."""
    for name in SCRIPTS:
        source = (BENCHMARKS / name).read_text()
        assert "time.sleep(" not in source, f"{name} pauses by itself: use _timing"
    users = [n for n in SCRIPTS if "from _timing import" in (BENCHMARKS / n).read_text()]
    assert {"bench_conv_algos.py", "bench_direct.py", "bench_kernels.py",
            "bench_layers.py"} <= set(users)
    assert "NumpyBatchNorm2d" not in (BENCHMARKS / "bench_layers.py").read_text()


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_benchmark_starts(name):
    """--help imports everything the benchmark needs (PyTorch stays optional)."""
    proc = subprocess.run([sys.executable, str(BENCHMARKS / name), "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
