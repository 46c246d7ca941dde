"""Kernel speed: cnnframe vs the numpy reference vs PyTorch CPU, in one run.

Prints one row per case: forward and backward milliseconds (median of
repeats) for cnnframe, the numpy reference (im2col + matmul) and PyTorch when
it is importable, and the ratio cnnframe / PyTorch.  float32, batch 64,
2 threads unless --batch / --threads say otherwise.  cnnframe and PyTorch are
timed back to back, each call after a short pause and an untimed call
(benchmarks/_timing.py).

    python benchmarks/bench_kernels.py [--threads 2] [--repeats 15] [--no-reference]
                                       [--only 5x5,1x1]

The first line names the instruction set cnnframe's kernels run on (CNNFRAME_ISA caps
it, e.g. CNNFRAME_ISA=avx2 on an AVX-512 CPU) and PyTorch's.  PyTorch is capped at the
same level, like for like: unless they are set already, ATEN_CPU_CAPABILITY and
ONEDNN_MAX_CPU_ISA are set from cnnframe's level before torch is imported (avx2:
ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2).

Freed memory is kept in the process for both libraries (cnnframe/_alloc.py), so
fresh outputs do not pay page faults; cnnframe's layers reuse their output buffers.
"""
import argparse
import os
import statistics
import time

import numpy as np
from _timing import interleaved_ms, median_ms

import cnnframe
import cnnframe.functional as F
import cnnframe.reference as R
from cnnframe_ext import runtime

# PyTorch's caps for each of cnnframe's levels: (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA).
# Both are read when torch loads (oneDNN's at its first kernel), so they are set before
# the import below.
TORCH_CAPS = {"avx512": ("avx512", "AVX512_CORE"), "avx2": ("avx2", "AVX2"),
              "generic": ("default", "SSE41")}
for _var, _value in zip(("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"),
                        TORCH_CAPS[runtime.active_isa()]):
    os.environ.setdefault(_var, _value)

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # PyTorch is optional: the comparison column is then empty
    torch = None

from cnnframe._alloc import keep_freed_memory

CONVS = [  # (label, C_in, C_out, kernel, padding, H)
    ("conv 3->32 3x3 p1 32x32", 3, 32, 3, 1, 32),
    ("conv 32->64 3x3 p1 16x16", 32, 64, 3, 1, 16),
    ("conv 64->128 3x3 p1 8x8", 64, 128, 3, 1, 8),
    ("conv 32->32 5x5 p2 32x32", 32, 32, 5, 2, 32),
    ("conv 64->128 1x1 16x16", 64, 128, 1, 0, 16),
    ("conv 128->64 1x1 8x8", 128, 64, 1, 0, 8),
]
POOLS = [("max_pool 2x2 (N,32,32,32)", "max"), ("avg_pool 2x2 (N,32,32,32)", "avg")]


def interleaved(ours, theirs, repeats):
    """Median ms of each, and the median of per-repeat ratios ours/theirs (theirs may be None).

    Calls alternate so that both see the same machine load: on a noisy
    machine the ratio within a repeat is steadier than either time alone.
    """
    if theirs is None:
        return median_ms({"ours": ours}, repeats)["ours"], float("nan"), float("nan")
    ms = interleaved_ms({"ours": ours, "theirs": theirs}, repeats)
    ratios = [a / b for a, b in zip(ms["ours"], ms["theirs"])]
    return statistics.median(ms["ours"]), statistics.median(ms["theirs"]), statistics.median(ratios)


def conv_case(cin, cout, k, pad, size, batch, rng, stride=1, groups=1):
    """A conv with a bias (weight (cout, cin / groups, k, k)), cnnframe's, the numpy
    reference's and PyTorch's forward and backward."""
    geo = dict(stride=stride, padding=pad, groups=groups)
    x = rng.standard_normal((batch, cin, size, size), dtype=np.float32)
    w = rng.standard_normal((cout, cin // groups, k, k), dtype=np.float32) * 0.1
    b = rng.standard_normal(cout, dtype=np.float32)
    gy = rng.standard_normal(F.conv2d(x, w, b, **geo).shape, dtype=np.float32)
    ours = (lambda: F.conv2d(x, w, b, **geo), lambda: F.conv2d_backward(x, w, gy, **geo))
    ref = (lambda: R.conv2d(x, w, b, **geo), lambda: R.conv2d_backward(x, w, gy, **geo))
    theirs = None
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_()
        tgy = torch.from_numpy(gy)

        def t_fwd():
            with torch.no_grad():
                TF.conv2d(tx, tw, tb, **geo)

        def t_bwd():  # backward only: the graph is built outside the timed part
            out = TF.conv2d(tx, tw, tb, **geo)
            t0 = time.perf_counter()
            torch.autograd.grad(out, (tx, tw, tb), tgy)
            return time.perf_counter() - t0
        theirs = (t_fwd, t_bwd)
    return ours, ref, theirs


def pool_case(kind, batch, rng):
    x = rng.standard_normal((batch, 32, 32, 32), dtype=np.float32)
    gy = rng.standard_normal((batch, 32, 16, 16), dtype=np.float32)
    if kind == "max":
        _, argmax = F.max_pool2d(x, 2)
        _, ref_argmax = R.max_pool2d(x, 2)
        ours = (lambda: F.max_pool2d(x, 2), lambda: F.max_pool2d_backward(gy, argmax, x.shape))
        ref = (lambda: R.max_pool2d(x, 2), lambda: R.max_pool2d_backward(gy, ref_argmax, x.shape))
    else:
        ours = (lambda: F.avg_pool2d(x, 2), lambda: F.avg_pool2d_backward(gy, x.shape, 2))
        ref = (lambda: R.avg_pool2d(x, 2), lambda: R.avg_pool2d_backward(gy, x.shape, 2))
    theirs = None
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        tgy = torch.from_numpy(gy)
        op = (lambda t: TF.max_pool2d(t, 2)) if kind == "max" else (lambda t: TF.avg_pool2d(t, 2))

        def t_fwd():
            with torch.no_grad():
                op(tx)

        def t_bwd():
            out = op(tx)
            t0 = time.perf_counter()
            torch.autograd.grad(out, (tx,), tgy)
            return time.perf_counter() - t0
        theirs = (t_fwd, t_bwd)
    return ours, ref, theirs


# ---- depthwise (groups == C): (label, channels, kernel, stride, H, batch); own batch sizes
# (the cases, at batch 64 and batch 1 whatever --batch says; --only dw selects them)
DEPTHWISE = [
    ("dw 64 ch 3x3 s1 32x32 b64", 64, 3, 1, 32, 64),
    ("dw 128 ch 3x3 s2 16x16 b64", 128, 3, 2, 16, 64),
    ("dw 32 ch 5x5 s1 32x32 b64", 32, 5, 1, 32, 64),
    ("dw 64 ch 3x3 s1 32x32 b1", 64, 3, 1, 32, 1),
    ("dw 128 ch 3x3 s2 16x16 b1", 128, 3, 2, 16, 1),
    ("dw 32 ch 5x5 s1 32x32 b1", 32, 5, 1, 32, 1),
]


def depthwise_case(c, k, stride, size, batch, rng):
    """A depthwise conv (padding k // 2, bias), cnnframe's and PyTorch's."""
    return conv_case(c, c, k, k // 2, size, batch, rng, stride=stride, groups=c)
# ---- end of depthwise


def main():
    keep_freed_memory()  # page faults would otherwise swamp both sides (cnnframe/_alloc.py)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-reference", action="store_true", help="skip the slow numpy column")
    ap.add_argument("--only", default="",
                    help="comma-separated parts of case labels, e.g. '5x5,1x1' (default: all)")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    cnnframe.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    def wanted(label):
        return not only or any(part in label for part in only)
    cases = [(label, conv_case(*spec, args.batch, rng)) for label, *spec in CONVS if wanted(label)]
    cases += [(label, pool_case(kind, args.batch, rng)) for label, kind in POOLS if wanted(label)]
    torch_isa = ("not installed" if torch is None else
                 f"{torch.backends.cpu.get_cpu_capability()} (ATEN_CPU_CAPABILITY="
                 f"{os.environ['ATEN_CPU_CAPABILITY']}, ONEDNN_MAX_CPU_ISA="
                 f"{os.environ['ONEDNN_MAX_CPU_ISA']})")
    print(f"instruction set: cnnframe {runtime.active_isa()} (CPU: {runtime.detected_isa()}); "
          f"PyTorch {torch_isa}")
    if hasattr(os, "getloadavg"):  # a loaded machine's times say little alone: say how loaded
        print(f"load average {' / '.join(f'{a:.1f}' for a in os.getloadavg())} (1 / 5 / 15 min) "
              f"on {os.cpu_count()} CPUs")
    ref_repeats = max(3, args.repeats // 5)
    header = (f"{'case (float32, batch %d, %d threads)' % (args.batch, args.threads):<40} {'pass':<4} "
              f"{'cnnframe ms':>11} {'numpy ref ms':>12} {'torch ms':>9} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    cases += [(label, depthwise_case(*spec, rng))  # depthwise rows: own batch sizes
              for label, *spec in DEPTHWISE if wanted(label)]
    for label, (ours, ref, theirs) in cases:
        for i, phase in enumerate(("fwd", "bwd")):
            ms, t_ms, ratio = interleaved(ours[i], theirs and theirs[i], args.repeats)
            ref_ms = float("nan")
            if not args.no_reference:  # slow numpy code timed alone: one warm-up call
                ref_ms = median_ms({"ref": ref[i]}, ref_repeats, settle_s=0,
                                   warm_each_repeat=False)["ref"]
            print(f"{label:<40} {phase:<4} {ms:>11.2f} {ref_ms:>12.2f} {t_ms:>9.2f} {ratio:>6.2f}")
    if torch is None:
        print("\nPyTorch is not installed: `pip install torch==2.13.0` adds the comparison column.")
    else:
        print(f"\nPyTorch {torch.__version__}; ratio = median over repeats of cnnframe / PyTorch "
              "timed back to back (lower is better).")


if __name__ == "__main__":
    main()
