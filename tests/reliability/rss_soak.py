"""Memory soak: train a small CNN for many steps and report the process's RSS.

    .venv/bin/python tests/reliability/rss_soak.py --steps 2000

Prints RSS after warm-up and at the end (and the maximum); exit status 1 if the
growth after warm-up exceeds --limit-mib.  tests/reliability/test_memory.py runs a
short version.  Uses real layers (conv, batch norm, pooling, dropout, linear), the
Trainer's train_step, SGD with momentum and a DataLoader with a transform.
"""
import argparse
import sys

import numpy as np

PAGE = None


def rss_mib():
    """Resident set size of this process in MiB (Linux /proc)."""
    global PAGE
    import os
    if PAGE is None:
        PAGE = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


CONFIG = {"input_shape": [3, 16, 16], "seed": 0, "layers": [
    {"type": "conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": 1},
    {"type": "batch_norm2d", "num_features": 8}, {"type": "relu"},
    {"type": "max_pool2d", "kernel_size": 2},
    {"type": "conv2d", "in_channels": 8, "out_channels": 16, "kernel_size": 3, "padding": 1},
    {"type": "relu"}, {"type": "avg_pool2d", "kernel_size": 2},
    {"type": "flatten"}, {"type": "dropout", "p": 0.2},
    {"type": "linear", "in_features": 256, "out_features": 10}]}


def soak(steps, warmup=100, batch=32, every=50, threads=None):
    """Train `steps` steps; return (rss after warm-up, rss at the end, max rss, samples)."""
    import cnnframe
    from cnnframe.data import DataLoader
    from cnnframe.data.base import ArrayDataset
    from cnnframe.data.transforms import RandomCrop
    from cnnframe.graph import Model
    from cnnframe.optim import SGD
    from cnnframe.train import Trainer

    if threads:
        cnnframe.set_num_threads(threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (512, 3, 16, 16), dtype=np.uint8)
    labels = rng.integers(0, 10, 512)
    data = ArrayDataset(images, labels, [str(i) for i in range(10)])
    loader = DataLoader(data, batch_size=batch, shuffle=True, seed=0, drop_last=True,
                        transform=RandomCrop(16, padding=2))
    model = Model.from_config(CONFIG)
    trainer = Trainer(model, "cross_entropy", SGD(model, lr=0.01, momentum=0.9),
                      progress=False, log=lambda *a: None)
    samples, step, base = [], 0, None
    while step < steps:
        for x, y in loader:
            trainer.train_step(x, y)
            step += 1
            if step == warmup:
                base = rss_mib()
            if step % every == 0:
                samples.append((step, rss_mib()))
            if step >= steps:
                break
    end = rss_mib()
    return (base if base is not None else end), end, max(r for _, r in samples), samples


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--limit-mib", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    import time
    t0 = time.perf_counter()
    before, after, peak, samples = soak(args.steps, args.warmup, threads=args.threads)
    for step, rss in samples[:: max(1, len(samples) // 10)]:
        print(f"step {step:6d}  RSS {rss:8.1f} MiB")
    growth = after - before
    print(f"steps {args.steps}: RSS after warm-up ({args.warmup} steps) {before:.1f} MiB, "
          f"at the end {after:.1f} MiB, max {peak:.1f} MiB, growth {growth:+.1f} MiB "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0 if growth <= args.limit_mib else 1


if __name__ == "__main__":
    sys.exit(main())
