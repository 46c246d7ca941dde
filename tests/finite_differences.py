"""Central finite differences for the tests (layers, graph, losses share this one helper)."""
import numpy as np


def numeric_grad(f, arr, eps=1e-6, entries=None):
    """d f() / d arr by central differences, perturbing `arr` in place (float64).

    With `entries`, only that many random flat positions are estimated (the others
    are NaN), to bound the cost on large arrays.
    """
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    positions = range(flat.size)
    if entries is not None and entries < flat.size:
        gflat[:] = np.nan
        positions = np.random.default_rng(flat.size).choice(flat.size, entries, replace=False)
    for i in positions:
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad
