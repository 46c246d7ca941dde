"""Shared helpers for the graph tests: a finite-difference checker and a local training loop."""
import numpy as np
import pytest


def numeric_grad(f, arr, eps=1e-6, entries=None):
    """Central differences of f() w.r.t. `arr` (perturbed in place); with `entries`, only at
    that many random flat positions (the others stay NaN) to bound the cost."""
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


def softmax_ce(logits, labels):
    """Mean softmax cross-entropy and its gradient (a local copy: no dependency on cnnframe.losses)."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels] + 1e-12).mean()
    grad = p
    grad[np.arange(n), labels] -= 1
    return float(loss), (grad / n).astype(logits.dtype)


def sgd_step(model, lr):
    grads = model.grads
    for k, p in model.params.items():
        p -= lr * grads[k]


@pytest.fixture(scope="session")
def fd():
    return numeric_grad


@pytest.fixture(scope="session")
def ce():
    return softmax_ce


@pytest.fixture(scope="session")
def sgd():
    return sgd_step
