"""Batch norm and ReLU layer speed: cnnframe's layers (Cython kernels) vs PyTorch.

Prints forward and backward milliseconds (medians over interleaved repeats: in
each repeat every implementation runs once, back to back, so all see the same
machine load) of a training step's batch_norm2d and relu on CIFAR-sized
activations (a short pause and an untimed call before each implementation let
the other OpenMP runtime's spinning threads go idle and wake this one's;
benchmarks/_timing.py).  The layers reuse their buffers as inside a Model.

    python benchmarks/bench_layers.py [--threads 2] [--repeats 25]
"""
import argparse

import numpy as np
from _timing import median_ms

import cnnframe
from cnnframe._alloc import keep_freed_memory
from cnnframe.layers.activations import ReLU
from cnnframe.layers.normalization import BatchNorm2d

try:
    import torch
except ImportError:  # PyTorch is optional: its columns are then empty
    torch = None

SHAPES = [(128, 32, 32, 32), (128, 64, 16, 16), (128, 128, 8, 8)]


def layer_pair(layer, x, g):
    """(forward, backward) callables of a cnnframe layer."""
    layer.reuse_buffers = True
    return (lambda: layer.forward(x)), (lambda: layer.backward(g))


def torch_pair(op, x, g):
    """(forward, backward) of a PyTorch op on x (backward through a kept graph)."""
    tx = torch.from_numpy(x).requires_grad_()
    tg = torch.from_numpy(g)
    params = [p for p in getattr(op, "parameters", lambda: [])()]
    state = {}

    def forward():
        state["y"] = op(tx)

    def backward():
        torch.autograd.grad(state["y"], [tx] + params, tg, retain_graph=True)
    return forward, backward


def cases(shape, rng):
    x = (rng.standard_normal(shape, dtype=np.float32) * 2 + 0.5).astype(np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    c = shape[1]
    out = {"batch_norm2d": {"cnnframe": layer_pair(BatchNorm2d(c), x, g)},
           "relu": {"cnnframe": layer_pair(ReLU(), x, g)}}
    if torch is not None:
        out["batch_norm2d"]["torch"] = torch_pair(torch.nn.BatchNorm2d(c).train(), x, g)
        out["relu"]["torch"] = torch_pair(torch.relu, x, g)
    return out


def main():
    keep_freed_memory()  # no page faults on fresh torch outputs (cnnframe/_alloc.py)
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=25)
    args = ap.parse_args()
    cnnframe.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    header = (f"{'layer (float32, %d threads)' % args.threads:<34} {'pass':<4} "
              f"{'cnnframe ms':>11} {'torch ms':>9} {'vs torch':>9}")
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        for layer, impls in cases(shape, rng).items():
            result = median_ms(impls, args.repeats)  # (forward ms, backward ms) of each
            for i, phase in enumerate(("fwd", "bwd")):
                ours = result["cnnframe"][i]
                theirs = result["torch"][i] if "torch" in result else float("nan")
                print(f"{layer + ' ' + str(shape):<34} {phase:<4} {ours:>11.2f} "
                      f"{theirs:>9.2f} {ours / theirs:>9.2f}")
    if torch is None:
        print("\nPyTorch is not installed: `pip install torch==2.13.0` fills the torch columns.")
    else:
        print(f"\nvs torch = cnnframe / PyTorch (lower is better); PyTorch {torch.__version__}")


if __name__ == "__main__":
    main()
