"""Batch norm and ReLU layer speed: the previous numpy path vs the Cython kernels vs PyTorch.

Prints forward and backward milliseconds (medians over interleaved repeats: in
each repeat every implementation runs once, back to back, so all see the same
machine load) of a training step's batch_norm2d and relu on CIFAR-sized
activations (a short pause and an untimed call before each implementation let
the other OpenMP runtime's spinning threads go idle and wake this one's).  "numpy" is the layer code before the kernels (numpy passes into
reused buffers, a bool mask for ReLU), kept here verbatim for the comparison;
"kernels" are the current layers.  Both reuse their buffers as inside a Model.

    python benchmarks/bench_layers.py [--threads 2] [--repeats 25]
"""
import argparse
import statistics
import time

import numpy as np

import cnnframe
from cnnframe._alloc import keep_freed_memory
from cnnframe.layers.activations import ReLU
from cnnframe.layers.normalization import BatchNorm2d

try:
    import torch
except ImportError:  # PyTorch is optional: its columns are then empty
    torch = None

SHAPES = [(128, 32, 32, 32), (128, 64, 16, 16), (128, 128, 8, 8)]


class NumpyBatchNorm2d(BatchNorm2d):
    """batch_norm2d as it was before the kernels (commit 06246f9), training mode only."""

    def _per_channel(self, key, values, length):
        if length == 1:
            return values[:, None]
        block = self._buffer(key, (values.size, length))
        np.copyto(block, values[:, None])
        return block

    def forward(self, x, training=True):
        x = np.ascontiguousarray(x)
        n, c = x.shape[:2]
        dt = x.dtype.type
        m = x.size // c
        x3 = x.reshape(n, c, -1)
        length = x3.shape[2]
        y3 = self._buffer("y", x.shape).reshape(x3.shape)
        w, b = self.params["weight"], self.params["bias"]
        part = self._buffer("part", (n, c))
        mean = np.add.reduce(x3, axis=2, out=part).sum(axis=0) / dt(m)
        xc3 = self._buffer("xc", x.shape).reshape(x3.shape)
        np.subtract(x3, self._per_channel("row", mean, length), out=xc3)
        var = np.einsum("ncl,ncl->nc", xc3, xc3, out=part).sum(axis=0) / dt(m)
        invstd = dt(1) / np.sqrt(var + dt(self.eps))
        np.multiply(xc3, self._per_channel("row", w * invstd, length), out=y3)
        y3 += self._per_channel("row", b, length)
        mom = self.momentum
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        rm *= dt(1.0 - mom)
        rm += dt(mom) * mean
        rv *= dt(1.0 - mom)
        rv += dt(mom * m / (m - 1)) * var
        self._cache = (xc3, invstd, x.shape)
        return y3.reshape(x.shape)

    def backward(self, grad_y):
        xc3, invstd, shape = self._cache
        g3 = np.ascontiguousarray(grad_y).reshape(xc3.shape)
        n, c, length = g3.shape
        dt = g3.dtype.type
        m = g3.size // c
        part = self._buffer("part", (n, c))
        gb = np.add.reduce(g3, axis=2, out=part).sum(axis=0)
        dot = np.einsum("ncl,ncl->nc", g3, xc3, out=part).sum(axis=0)
        gw = dot * invstd
        np.copyto(self.grads["bias"], gb)
        np.copyto(self.grads["weight"], gw)
        gx3 = self._buffer("gx", shape).reshape(g3.shape)
        scale = self.params["weight"] * invstd
        np.multiply(xc3, self._per_channel("row", gw * invstd / dt(-m), length), out=gx3)
        gx3 += g3
        gx3 += self._per_channel("row", gb / dt(-m), length)
        gx3 *= self._per_channel("row", scale, length)
        return gx3.reshape(shape)


class NumpyReLU(ReLU):
    """relu as it was before the kernels: np.maximum and a bool mask for backward."""

    def forward(self, x, training=True):
        mask = self._buffer("mask", x.shape, np.bool_)
        np.greater(x, 0, out=mask)
        self._mask = mask
        return np.maximum(x, 0, out=self._buffer("y", x.shape, x.dtype))

    def backward(self, grad_y):
        return np.multiply(grad_y, self._mask, out=self._buffer("gx", grad_y.shape, grad_y.dtype))


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
    out = {"batch_norm2d": {"numpy": layer_pair(NumpyBatchNorm2d(c), x, g),
                            "kernels": layer_pair(BatchNorm2d(c), x, g)},
           "relu": {"numpy": layer_pair(NumpyReLU(), x, g), "kernels": layer_pair(ReLU(), x, g)}}
    if torch is not None:
        out["batch_norm2d"]["torch"] = torch_pair(torch.nn.BatchNorm2d(c).train(), x, g)
        out["relu"]["torch"] = torch_pair(torch.relu, x, g)
    return out


# Pause before switching implementation: PyTorch's OpenMP runtime and cnnframe's are
# separate libgomp copies whose idle threads spin for a while after each parallel
# region; a kernel started while the other runtime's threads still spin waits for a
# core (a scheduler time slice, ~8 ms here), on either side.  After the pause one
# untimed call wakes the implementation's own threads again, as the layer before it
# would in a training step.
SETTLE_S = 0.01


def measure(impls, repeats):
    """Median ms of forward and of backward per implementation, interleaved."""
    times = {name: ([], []) for name in impls}
    for name, (fwd, bwd) in impls.items():  # warm up: buffers, caches, thread pools
        fwd()
        bwd()
    for _ in range(repeats):
        for name, (fwd, bwd) in impls.items():
            time.sleep(SETTLE_S)
            fwd()
            bwd()
            t0 = time.perf_counter()
            fwd()
            t1 = time.perf_counter()
            bwd()
            t2 = time.perf_counter()
            times[name][0].append((t1 - t0) * 1e3)
            times[name][1].append((t2 - t1) * 1e3)
    return {name: tuple(statistics.median(t) for t in ts) for name, ts in times.items()}


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
    header = (f"{'layer (float32, %d threads)' % args.threads:<34} {'pass':<4} {'numpy ms':>9} "
              f"{'kernels ms':>10} {'torch ms':>9} {'speedup':>8} {'vs torch':>9}")
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        for layer, impls in cases(shape, rng).items():
            result = measure(impls, args.repeats)
            for i, phase in enumerate(("fwd", "bwd")):
                old, new = result["numpy"][i], result["kernels"][i]
                theirs = result["torch"][i] if "torch" in result else float("nan")
                print(f"{layer + ' ' + str(shape):<34} {phase:<4} {old:>9.2f} {new:>10.2f} "
                      f"{theirs:>9.2f} {old / new:>7.1f}x {new / theirs:>9.2f}")
    print("\nspeedup = numpy / kernels; vs torch = kernels / PyTorch (lower is better)"
          + ("" if torch is None else f"; PyTorch {torch.__version__}"))


if __name__ == "__main__":
    main()
