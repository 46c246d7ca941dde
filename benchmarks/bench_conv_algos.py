"""Which algorithm is fastest for a stride-1 convolution: the evidence for conv2d's dispatch.

For a grid of channel counts and map sizes (KxK kernels, padding K // 2, float32), times
every algorithm that can compute each pass, interleaved round by round in one process,
through conv2d's and conv2d_backward's ``algorithm`` argument:

- forward: conv2d(x, w);
- grad_x: conv2d of grad_y with the flipped, transposed kernel, the conv conv2d_backward
  runs for it (by im2col: the whole im2col backward minus its weight-gradient-only run);
- grad_w: conv2d_backward(need_grad_x=False), the weight gradient alone.

Each case runs as many images (16..128) as make about 2.5 GFLOP of forward work (--batch N:
N images, e.g. 1 for the inference rows; --cached: the forward calls keep their prepared
weights in a WeightCache, as a layer does in inference passes).  The
fastest entry of each pass is starred; then what ``algorithm="auto"`` takes there (the
table of the active instruction set, cnnframe/functional/conv_dispatch.py, whose rows
quote these figures) and whether that is within 20% of the fastest ("ok") or not.
CNNFRAME_ISA=avx2|generic measures another instruction set's table.

    python benchmarks/bench_conv_algos.py [--threads 2] [--kernel 3] [--sizes 4,8,12,16,28,32]
                                          [--channels 32:64,64:128] [--repeats 7]
                                          [--statistic median|min] [--batch N] [--cached]
                                          [--passes forward,grad_x,grad_w]
"""
import argparse
import statistics

import numpy as np
from _timing import interleaved_ms

import cnnframe
import cnnframe.functional as F
from cnnframe._alloc import keep_freed_memory
from cnnframe.functional import conv_dispatch
from cnnframe.functional._args import conv_geometry
from cnnframe.functional.conv import _transposed_kernel
from cnnframe_ext import runtime

CHANNELS = [(16, 16), (16, 32), (32, 32), (32, 64), (64, 32), (64, 64), (64, 128), (128, 64),
            (128, 128), (128, 256), (256, 256)]
SETTLE_S = 0.005   # one OpenMP runtime here (no PyTorch): a shorter pause than _timing's
COLUMNS = ("direct", "winograd2", "winograd4", "im2col")
# "auto" within this factor of the fastest agrees with the measurement (the machine is noisy)
AGREES = 1.2


def timed(fns, repeats, statistic):
    """{name: ms}: the median (or the minimum, steadier on a loaded machine: waits for a core
    only ever add time) of `repeats` interleaved calls of each function."""
    reduce = statistics.median if statistic == "median" else min
    return {name: reduce(ms) for name, ms in
            interleaved_ms(fns, repeats, settle_s=SETTLE_S).items()}


def case(c, f, size, k, repeats, statistic, rng, batch=None, cached=False,
         passes=("forward", "grad_x", "grad_w")):
    """(N, {pass: {algorithm: ms}}, {pass: auto's algorithm}) for one (C, F, size, K)."""
    n = batch or int(min(128, max(16, 2.5e9 / (2 * c * f * k * k * size * size))))
    p = k // 2
    x = rng.standard_normal((n, c, size, size), dtype=np.float32)
    w = rng.standard_normal((f, c, k, k), dtype=np.float32) * 0.1
    g = conv_geometry(x.shape, w.shape, padding=p)
    gy = rng.standard_normal(g.out_shape, dtype=np.float32)
    y, gx = np.empty_like(gy), np.empty_like(x)
    w_t = _transposed_kernel(w, 1)

    def can(algorithm, pass_):
        return conv_dispatch.supports(algorithm, pass_, g, np.float32)

    caches = {a: F.WeightCache() if cached else None for a in COLUMNS}
    fwd = {a: (lambda a=a: F.conv2d(x, w, padding=p, out=y, algorithm=a,
                                    weight_cache=caches[a]))
           for a in COLUMNS if can(a, "forward")}
    grad_x = {a: (lambda a=a: F.conv2d(gy, w_t, padding=k - 1 - p, out=gx, algorithm=a))
              for a in COLUMNS if a != "im2col" and can(a, "grad_x")}
    grad_w = {a: (lambda a=a: F.conv2d_backward(x, w, gy, padding=p, need_grad_x=False,
                                                algorithm={"grad_weight": a}))
              for a in COLUMNS if can(a, "grad_weight")}
    both = {"im2col both": lambda: F.conv2d_backward(x, w, gy, padding=p, out=gx,
                                                     algorithm="im2col")}
    result = {"forward": timed(fwd, repeats, statistic)}
    if "grad_x" in passes or "grad_w" in passes:
        result["grad_x"] = timed(grad_x, repeats, statistic)
        result["grad_w"] = timed(grad_w, repeats, statistic)
        result["grad_x"]["im2col"] = (timed(both, repeats, statistic)["im2col both"]
                                      - result["grad_w"]["im2col"])
    result = {what: times for what, times in result.items() if what in passes}
    auto_x, auto_w = conv_dispatch.backward_algorithms("auto", g, np.float32, True)
    auto = {"forward": conv_dispatch.choose_algorithm("forward", g, np.float32),
            "grad_x": auto_x, "grad_w": auto_w}
    return n, result, auto


def verdict(times, taken):
    """"ok" if auto's algorithm is within AGREES of the fastest, else how far it is off."""
    best = min(times, key=times.get)
    ratio = times[taken] / times[best]
    return "ok" if ratio <= AGREES else f"NO: {ratio:.2f}x {best}'s time"


def main(argv=None):
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernel", type=int, default=3, help="K of the KxK kernels (odd)")
    ap.add_argument("--sizes", default="4,8,12,16,28,32")
    ap.add_argument("--channels", default=None,
                    help="C:F pairs, e.g. 32:64,64:128 (default: a grid of 16 to 256)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--statistic", choices=("median", "min"), default="median",
                    help="of the repeats (min: on a loaded machine)")
    ap.add_argument("--batch", type=int, default=None,
                    help="images per call (default: about 2.5 GFLOP of forward work, 16..128)")
    ap.add_argument("--cached", action="store_true",
                    help="forward calls keep their prepared weights (a layer's inference pass)")
    ap.add_argument("--passes", default="forward,grad_x,grad_w",
                    help="which of forward, grad_x, grad_w to time")
    args = ap.parse_args(argv)
    passes = tuple(args.passes.split(","))
    unknown = set(passes) - {"forward", "grad_x", "grad_w"}
    if unknown:
        ap.error(f"--passes: unknown {sorted(unknown)}; valid: forward, grad_x, grad_w")
    cnnframe.set_num_threads(args.threads)
    channels = (CHANNELS if args.channels is None else
                [tuple(int(v) for v in pair.split(":")) for pair in args.channels.split(",")])
    rng = np.random.default_rng(0)
    k = args.kernel
    print(f"{k}x{k} stride-1 conv, padding {k // 2}, float32, {args.threads} threads, "
          f"{runtime.active_isa()} kernels (CNNFRAME_ISA caps them); {args.statistic} ms of "
          f"{args.repeats}{'; forward with cached weights' if args.cached else ''}; "
          f"* fastest; grad_x by im2col = whole im2col backward - its grad_w; "
          f"auto: what conv2d's table takes, ok if within {AGREES}x the fastest")
    print(f"{'case':<22} {'pass':<8} {'direct':>8} {'wino2':>8} {'wino4':>8} {'im2col':>8}  "
          f"{'auto':<10} table")
    disagree = 0
    for size in (int(s) for s in args.sizes.split(",")):
        for c, f in channels:
            n, result, auto = case(c, f, size, k, args.repeats, args.statistic, rng,
                                   args.batch, args.cached, passes)
            for what, times in result.items():
                best = min(times, key=times.get)
                cells = [f"{times[a]:.2f}{'*' if a == best else ' '}" if a in times else "-"
                         for a in COLUMNS]
                label = f"{c}->{f} {size}x{size} n{n}" if what == "forward" else ""
                agree = verdict(times, auto[what])
                disagree += agree != "ok"
                print(f"{label:<22} {what:<8} " + " ".join(f"{cell:>8}" for cell in cells)
                      + f"  {auto[what]:<10} {agree}", flush=True)
    print(f"{disagree} passes where auto's choice took over {AGREES}x the fastest's time")


if __name__ == "__main__":
    main()
