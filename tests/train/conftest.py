"""A small, fast stand-in model following the cnnframe contract, and the real DataLoader.

They let the Trainer's bookkeeping (checkpoints, exact resume, interrupts, history) be
tested in milliseconds; tests with the real Model and DataLoader live next to them.
"""

import numpy as np
import pytest


class TinyDropout:
    """A stochastic node: draws all its randomness from self.rng (as the contract says)."""
    stochastic = True

    def __init__(self, p, seed):
        self.p = p
        self.rng = np.random.default_rng(seed)


class TinyModel:
    """Dropout then a linear softmax classifier on flattened images."""

    def __init__(self, n_in, n_out, seed=0, p=0.2):
        rng = np.random.default_rng(seed)
        self.params = {"fc.weight": (0.05 * rng.standard_normal((n_in, n_out))).astype(np.float32),
                       "fc.bias": np.zeros(n_out, np.float32)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"fc.calls": np.zeros(1, np.int64)}  # a buffer updated in forward
        self.nodes = {"drop": TinyDropout(p, seed + 1), "fc": object()}

    def forward(self, x, training=True):
        h = x.reshape(len(x), -1)
        drop = self.nodes["drop"]
        if training:
            self.buffers["fc.calls"] += 1
            mask = (drop.rng.random(h.shape) >= drop.p).astype(h.dtype) / (1 - drop.p)
            h = h * mask
        self._h = h
        return h @ self.params["fc.weight"] + self.params["fc.bias"]

    def backward(self, grad_y):
        self.grads["fc.weight"][...] = self._h.T @ grad_y
        self.grads["fc.bias"][...] = grad_y.sum(axis=0)
        return None

    def state_dict(self):
        return {k: v.copy() for k, v in {**self.params, **self.buffers}.items()}

    def load_state_dict(self, d):
        own = {**self.params, **self.buffers}
        if set(d) != set(own):
            raise KeyError(f"state keys {sorted(d)} != {sorted(own)}")
        for k, v in d.items():
            own[k][...] = v


def TinyLoader(images, labels, batch_size, seed=0, shuffle=True, noise=0.1):
    """The real DataLoader over in-memory float images, with a seeded noise 'augmentation'."""
    from cnnframe.data import DataLoader

    def add_noise(x, rng):
        return x + np.float32(noise) * rng.standard_normal(x.shape, dtype=np.float32)
    return DataLoader((images, labels), batch_size, shuffle=shuffle, seed=seed,
                      transform=add_noise if noise else None)


def blobs(n, n_classes=3, dim=(1, 4, 4), seed=0):
    """Linearly separable-ish float32 images: class means far apart plus noise."""
    means = 2.0 * np.random.default_rng(12345).standard_normal((n_classes, *dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    x = means[labels] + 0.5 * rng.standard_normal((n, *dim))
    return x.astype(np.float32), labels.astype(np.int64)


@pytest.fixture
def tiny():
    """Factories: tiny.model(seed), tiny.loader(...), tiny.data(n)."""
    class Factories:
        Model = TinyModel
        Loader = TinyLoader
        data = staticmethod(blobs)
    return Factories
