"""Small, fast stand-ins for a model and a data loader, following the cnnframe contract.

They let the Trainer's bookkeeping (checkpoints, exact resume, interrupts, history) be
tested in milliseconds; tests with the real Model and DataLoader live next to them.
"""
import math

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


class TinyLoader:
    """Shuffles with its own RNG each epoch and adds RNG noise (an 'augmentation')."""

    def __init__(self, images, labels, batch_size, seed=0, shuffle=True, noise=0.1):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.noise = batch_size, shuffle, noise
        self.rng = np.random.default_rng(seed)
        self.epoch, self.position, self.order = 0, 0, None

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        if self.order is None:
            self.order = self.rng.permutation(n) if self.shuffle else np.arange(n)
            self.position = 0
        while self.position < len(self):
            idx = self.order[self.position * self.batch_size:(self.position + 1) * self.batch_size]
            x = self.images[idx]
            if self.noise:
                x = x + self.noise * self.rng.standard_normal(x.shape).astype(np.float32)
            self.position += 1
            yield x, self.labels[idx]
        self.order = None
        self.epoch += 1

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position,
                "order": None if self.order is None else self.order.copy(),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, d):
        self.epoch, self.position = int(d["epoch"]), int(d["position"])
        self.order = None if d["order"] is None else np.array(d["order"])
        self.rng.bit_generator.state = d["rng"]


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
