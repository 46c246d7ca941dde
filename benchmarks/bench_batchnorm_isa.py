"""Batch norm's row sums at each instruction-set level, interleaved in one process.

    python benchmarks/bench_batchnorm_isa.py [--only CASE] [--repeats 21] [--threads 1]

Times F.batch_norm_train (the row statistics) and F.batch_norm_backward (the gradient
sums and gx) with cnnframe.use_isa switching the level call by call, and prints the
median milliseconds per level and each level's ratio to the generic path (lower is
faster).  On a shared machine only the same-run ratios mean anything.
"""
import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import interleaved_ms  # noqa: E402

import cnnframe  # noqa: E402
import cnnframe.functional as F  # noqa: E402

# name -> (shape, dtype): long rows (32-blocks), short rows (8-blocks and a tail)
CASES = {
    "f32 64x32x32x32": ((64, 32, 32, 32), np.float32),
    "f32 64x128x8x8": ((64, 128, 8, 8), np.float32),
    "f64 32x32x32x32": ((32, 32, 32, 32), np.float64),
    "f32 64x64x5x5": ((64, 64, 5, 5), np.float32),
}


def with_isa(level, fn):
    def run():
        with cnnframe.use_isa(level):
            fn()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cnnframe.set_num_threads(args.threads)
    levels = cnnframe.available_isas()
    rng = np.random.default_rng(0)
    print(f"levels {', '.join(levels)}; {args.threads} thread(s); medians of {args.repeats}")
    print(f"{'case':<18} {'pass':<9}" + "".join(f"{lv + ' ms':>12}" for lv in levels)
          + "".join(f"{lv + '/generic':>16}" for lv in levels if lv != "generic"))
    for name, (shape, dtype) in CASES.items():
        if args.only and args.only not in name:
            continue
        c = shape[1]
        x = (rng.standard_normal(shape) + 3).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        w, b = np.ones(c, dtype), np.zeros(c, dtype)
        _, mean, invstd = F.batch_norm_train(x, w, b)
        passes = {"forward": lambda: F.batch_norm_train(x, w, b),
                  "backward": lambda: F.batch_norm_backward(g, x, w, mean, invstd)}
        for pname, fn in passes.items():
            times = interleaved_ms({lv: with_isa(lv, fn) for lv in levels}, args.repeats)
            med = {lv: statistics.median(t) for lv, t in times.items()}
            print(f"{name:<18} {pname:<9}" + "".join(f"{med[lv]:>12.3f}" for lv in levels)
                  + "".join(f"{med[lv] / med['generic']:>16.2f}" for lv in levels
                            if lv != "generic"))


if __name__ == "__main__":
    main()
