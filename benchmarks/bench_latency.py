"""Inference latency at small batches (one image at a time: an app, a service, `cnnframe
predict`), cnnframe against the same net in PyTorch.

    python benchmarks/bench_latency.py [--threads 2] [--batches 1,8] [--repeats 50]
                                       [--only cifar10_small] [--no-torch]

For each config (examples/configs/cifar10_small.toml and cifar10_resnet.toml) and batch
size, times ``model.forward(x, training=False)`` and PyTorch's eval-mode forward under
``torch.no_grad()`` on the same random float32 images, interleaved call by call (so both
see the same machine load; each call after a short pause and an untimed call, see
_timing.py), and prints the median milliseconds of each and the median of the per-repeat
ratios cnnframe / PyTorch (lower is better; the issue's target is <= 1.0 at batch 1).

The PyTorch net is built node for node from the same config (bench_train.build_torch),
gets cnnframe's weights and randomised batch-norm statistics, and must give the same
outputs before anything is timed.  PyTorch is only imported here, never by cnnframe.
"""
import argparse
import os
import statistics

import numpy as np
from _timing import interleaved_ms
from bench_train import build_torch, copy_weights_and_compare

from cnnframe._alloc import keep_freed_memory
from cnnframe._config import active_isa

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = {name: os.path.join(HERE, "..", "examples", "configs", f"{name}.toml")
           for name in ("cifar10_small", "cifar10_resnet")}


def build_model(path, rng):
    """The config's model with batch-norm statistics and affine parameters drawn from `rng`
    (a fresh model's are 0 / 1, which would hide a wrong running-variance mapping)."""
    from cnnframe.graph import Model
    from cnnframe.train import load_config
    cfg = load_config(path)
    model = Model.from_config(cfg["model"])
    for layer in model.nodes.values():
        if layer.type_name == "batch_norm2d":
            c = layer.params["weight"].shape[0]
            layer.params["weight"][...] = rng.uniform(0.5, 1.5, c)
            layer.params["bias"][...] = rng.uniform(-0.2, 0.2, c)
            layer.buffers["running_mean"][...] = rng.uniform(-0.2, 0.2, c)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
    return model, cfg


def main(argv=None):
    keep_freed_memory()  # page faults would otherwise swamp both sides (cnnframe/_alloc.py)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--only", choices=sorted(CONFIGS), default=None, help="one net only")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    import cnnframe
    cnnframe.set_num_threads(args.threads)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch is not installed: cnnframe numbers only (pip install torch to compare)")
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)

    print(f"eval-mode forward latency, float32, {args.threads} threads, "
          f"{active_isa()} kernels; "
          f"median ms of {args.repeats} interleaved calls; ratio = median of cnnframe / PyTorch")
    header = f"{'net':<16} {'batch':>5} {'cnnframe ms':>12} {'torch ms':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for name, path in CONFIGS.items():
        if args.only and name != args.only:
            continue
        model, cfg = build_model(path, rng)
        shape = next(iter(model.inputs.values()))
        net = None
        if torch is not None:
            net, _, _, modules = build_torch(model.to_config(), cfg["optimizer"], cfg["loss"])
            check = rng.standard_normal((4, *shape), dtype=np.float32)
            diff = copy_weights_and_compare(model, net, modules, check)
            if diff > 1e-4:
                raise SystemExit(f"bench_latency: the PyTorch {name} differs from cnnframe's "
                                 f"by {diff:.1e} of the largest logit")
            net.eval()
        for batch in batches:
            x = rng.standard_normal((batch, *shape), dtype=np.float32)
            impls = {"cnnframe": lambda: model.forward(x, training=False)}
            if net is not None:
                tx = torch.from_numpy(x)

                def torch_forward():
                    with torch.no_grad():
                        net(tx)
                impls["torch"] = torch_forward
            ms = interleaved_ms(impls, args.repeats)
            mine = statistics.median(ms["cnnframe"])
            if net is None:
                print(f"{name:<16} {batch:>5} {mine:>12.3f} {'-':>9} {'-':>6}", flush=True)
                continue
            theirs = statistics.median(ms["torch"])
            ratio = statistics.median(a / b for a, b in zip(ms["cnnframe"], ms["torch"]))
            print(f"{name:<16} {batch:>5} {mine:>12.3f} {theirs:>9.3f} {ratio:>6.2f}",
                  flush=True)
    if torch is not None:
        print(f"\nPyTorch {torch.__version__}; outputs checked equal (<= 1e-4 of the largest "
              "logit) before timing.")


if __name__ == "__main__":
    main()
