"""Direct convolution vs cnnframe.functional.conv2d vs PyTorch, interleaved in one process.

Prints median milliseconds (float32, batch 128, 2 threads by default) of the
forward cases where im2col + GEMM loses most, and of the 5x5 input gradient
(direct_conv2d_grad_x: a direct conv of grad_y with the flipped, transposed
kernel, packed straight from the weights) next to
cnnframe's and PyTorch's whole backward (input + weight gradients).

    python benchmarks/bench_direct.py [--threads 2] [--repeats 11]
"""
import argparse
import time

import numpy as np
from _timing import median_ms

import cnnframe
import cnnframe.functional as F
from cnnframe._alloc import keep_freed_memory
from cnnframe.functional._args import conv_geometry
from cnnframe.functional._direct import direct_conv2d, direct_conv2d_grad_x

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # PyTorch is optional: its column is then empty
    torch = None

CASES = [  # (label, C_in, C_out, kernel, padding, size, grad_x)
    ("conv 3->32 3x3 p1 32x32", 3, 32, 3, 1, 32, False),
    ("conv 64->128 3x3 p1 8x8", 64, 128, 3, 1, 8, False),
    ("conv 32->32 5x5 p2 32x32", 32, 32, 5, 2, 32, False),
    ("grad_x 32->32 5x5 p2 32x32", 32, 32, 5, 2, 32, True),
]



def case_functions(cin, cout, k, pad, size, grad_x, batch, rng):
    """(direct, cnnframe, torch or None) callables for one row."""
    x = rng.standard_normal((batch, cin, size, size), dtype=np.float32)
    w = rng.standard_normal((cout, cin, k, k), dtype=np.float32) * 0.1
    b = rng.standard_normal(cout, dtype=np.float32)
    gy = rng.standard_normal((batch, cout, size, size), dtype=np.float32)
    g = conv_geometry(x.shape, w.shape, padding=pad)
    if grad_x:
        out = np.empty_like(x)
        direct = lambda: direct_conv2d_grad_x(gy, w, g, out=out)
        ours = lambda: F.conv2d_backward(x, w, gy, padding=pad, out=out)
    else:
        out = np.empty_like(gy)
        direct = lambda: direct_conv2d(x, w, b, g, out=out)
        ours = lambda: F.conv2d(x, w, b, padding=pad, out=out)
    theirs = None
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        tgy = torch.from_numpy(gy)
        if grad_x:
            def theirs():  # backward only: the graph is built outside the timed part
                y = TF.conv2d(tx, tw, tb, padding=pad)
                t0 = time.perf_counter()
                torch.autograd.grad(y, (tx, tw, tb), tgy)
                return time.perf_counter() - t0
        else:
            def theirs():
                with torch.no_grad():
                    TF.conv2d(tx, tw, tb, padding=pad)
    return direct, ours, theirs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    keep_freed_memory()
    cnnframe.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"float32, batch {args.batch}, {args.threads} threads, median ms of {args.repeats} "
          "interleaved repeats\n(grad_x row: direct is the input gradient alone, cnnframe and "
          "torch the whole backward)")
    print(f"{'case':30s} {'direct':>8s} {'cnnframe':>9s} {'torch':>8s} {'direct/torch':>13s}")
    for label, *case in CASES:
        fns = [fn for fn in case_functions(*case, args.batch, rng) if fn is not None]
        medians = median_ms(dict(enumerate(fns)), args.repeats)
        ms = [medians[i] for i in range(len(fns))] + [float("nan")]
        print(f"{label:30s} {ms[0]:8.2f} {ms[1]:9.2f} {ms[2]:8.2f} {ms[0] / ms[2]:13.2f}")
    if torch is None:
        print("\nPyTorch is not installed: `pip install torch==2.13.0` fills the torch column.")


if __name__ == "__main__":
    main()
