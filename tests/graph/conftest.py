"""Shared helpers for the graph tests: a finite-difference checker and a local training loop."""
import numpy as np
import pytest

from cnnframe.gradcheck import numeric_gradient


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
    return numeric_gradient


@pytest.fixture(scope="session")
def ce():
    return softmax_ce


@pytest.fixture(scope="session")
def sgd():
    return sgd_step
