"""Which algorithm is fastest for a 3x3 stride-1 convolution: the evidence for conv2d's dispatch.

For a grid of channel counts and map sizes, times every algorithm cnnframe has for each
pass, interleaved round by round in one process (float32, padding 1):

- forward and grad_x: the direct kernel, Winograd F(2x2, 3x3) and F(4x4, 3x3), im2col + GEMM
  (grad_x by im2col is the whole im2col backward minus its weight-gradient-only run);
- grad_weight: Winograd F(2x2) and F(4x4), im2col + GEMM, the direct weight gradient.

Each case runs as many images (16..128) as make about 2.5 GFLOP of direct forward work.
The fastest entry of each pass is starred.  `direct_applies` (functional/_direct.py) and
the weight-gradient constants in functional/conv.py quote these tables.

    python benchmarks/bench_conv_algos.py [--threads 2] [--sizes 4,8,12,16,28,32] [--repeats 7]
"""
import argparse

import numpy as np
from _timing import median_ms

import cnnframe
import cnnframe.functional.conv as conv
from cnnframe._alloc import keep_freed_memory
from cnnframe.functional._direct import (direct_conv2d, direct_conv2d_grad_weight,
                                         direct_conv2d_grad_x)
from cnnframe_ext import runtime

CHANNELS = [(16, 16), (16, 32), (32, 32), (32, 64), (64, 32), (64, 64), (64, 128), (128, 64),
            (128, 128), (128, 256), (256, 256)]
SETTLE_S = 0.005   # one OpenMP runtime here (no PyTorch): a shorter pause than _timing's


def interleaved(fns, repeats):
    """Median ms of each named function, called in turn so that all see the same load."""
    return median_ms(fns, repeats, settle_s=SETTLE_S)


def case(c, f, size, repeats, rng):
    """{pass: {algorithm: ms}} for one (C, F, size)."""
    n = int(min(128, max(16, 2.5e9 / (2 * c * f * 9 * size * size))))
    x = rng.standard_normal((n, c, size, size), dtype=np.float32)
    w = rng.standard_normal((f, c, 3, 3), dtype=np.float32) * 0.1
    gy = rng.standard_normal((n, f, size, size), dtype=np.float32)
    y, gx = np.empty_like(gy), np.empty_like(x)
    no_bias = np.empty(0, np.float32)
    w_t = conv._transposed_kernel(w, 1)
    hw = (size, size)
    fwd = {"direct": lambda: direct_conv2d(x, w, no_bias, (1, 1), out=y),
           "im2col": lambda: im2col_conv2d(x, w, y)}
    grad_x = {"direct": lambda: direct_conv2d_grad_x(gy, w, (1, 1), out=gx)}
    grad_w = {"im2col": lambda: conv._im2col_backward(x, w, gy, (1, 1), (1, 1), (1, 1), 1, hw,
                                                      False, None),
              "direct": lambda: direct_conv2d_grad_weight(x, gy, w.shape, (1, 1), conv.PARTS)}
    for tile in (2, 4):
        if size % tile == 0:
            name = f"wino{tile}"
            fwd[name] = lambda t=tile: conv._winograd_conv3x3(x, w, no_bias, (1, 1), 1, out=y,
                                                              tile=t)
            grad_x[name] = lambda t=tile: conv._winograd_conv3x3(gy, w_t, no_bias, (1, 1), 1,
                                                                 out=gx, tile=t)
            grad_w[name] = lambda t=tile: conv._winograd_grad_weight3x3(x, gy, w.shape, (1, 1),
                                                                        1, tile=t)
    both = {"im2col both": lambda: conv._im2col_backward(x, w, gy, (1, 1), (1, 1), (1, 1), 1,
                                                         hw, True, gx)}
    result = {"forward": interleaved(fwd, repeats), "grad_x": interleaved(grad_x, repeats),
              "grad_w": interleaved(grad_w, repeats)}
    result["grad_x"]["im2col"] = (interleaved(both, repeats)["im2col both"]
                                  - result["grad_w"]["im2col"])
    return n, result


def im2col_conv2d(x, w, y):
    """conv2d by im2col + GEMM whatever the dispatch rule would pick."""
    saved = conv.DIRECT, conv.WINOGRAD_MIN_CHANNELS
    conv.DIRECT, conv.WINOGRAD_MIN_CHANNELS = False, 10**9
    try:
        conv.conv2d(x, w, None, padding=1, out=y)
    finally:
        conv.DIRECT, conv.WINOGRAD_MIN_CHANNELS = saved


def main(argv=None):
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="4,8,12,16,28,32")
    ap.add_argument("--channels", default=None,
                    help="C:F pairs, e.g. 32:64,64:128 (default: a grid of 16 to 256)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    cnnframe.set_num_threads(args.threads)
    channels = (CHANNELS if args.channels is None else
                [tuple(int(v) for v in pair.split(":")) for pair in args.channels.split(",")])
    rng = np.random.default_rng(0)
    print(f"3x3 stride-1 conv, padding 1, float32, {args.threads} threads, "
          f"{runtime.active_isa()} kernels (CNNFRAME_ISA caps them); median ms of "
          f"{args.repeats}; * fastest; grad_x by im2col = whole im2col backward - its grad_w")
    print(f"{'case':<22} {'pass':<8} {'direct':>8} {'wino2':>8} {'wino4':>8} {'im2col':>8}  "
          "conv2d takes")
    for size in (int(s) for s in args.sizes.split(",")):
        for c, f in channels:
            n, result = case(c, f, size, args.repeats, rng)
            taken = dispatch(c, f, size, n)
            for what, times in result.items():
                best = min(times, key=times.get)
                cells = [f"{times[k]:.2f}{'*' if k == best else ' '}" if k in times else "-"
                         for k in ("direct", "wino2", "wino4", "im2col")]
                label = f"{c}->{f} {size}x{size} n{n}" if what == "forward" else ""
                print(f"{label:<22} {what:<8} " + " ".join(f"{cell:>8}" for cell in cells)
                      + f"  {taken[what]}", flush=True)


def dispatch(c, f, size, n):
    """What conv2d / conv2d_backward choose for this case, per pass (for the last column)."""
    w = np.empty((f, c, 3, 3), np.float32)
    tile = conv._winograd_applies(w, (1, 1), (1, 1), 1, size, size)
    direct = conv._direct_applies((n, c, size, size), w.shape, (1, 1), (1, 1), (1, 1), 1,
                                  np.float32, tile)
    direct_x = conv._direct_applies((n, f, size, size), (c, f, 3, 3), (1, 1), (1, 1), (1, 1), 1,
                                    np.float32, tile)
    tile_w = conv._winograd_applies(w, (1, 1), (1, 1), 1, size, size, grad_weight=True)
    im2col_x = not direct_x and not tile
    return {"forward": "direct" if direct else f"wino{tile}" if tile else "im2col",
            "grad_x": "direct" if direct_x else f"wino{tile}" if tile else "im2col",
            "grad_w": "im2col" if im2col_x or not tile_w else f"wino{tile_w}"}


if __name__ == "__main__":
    main()
