"""Lookahead (Zhang et al. 2019): slow weights that follow an inner optimizer's fast weights."""
import numpy as np

from cnnframe.optim.base import Optimizer, _as_number, _check_range

__all__ = ["Lookahead"]

_PREFIX = "slow/"


class Lookahead:
    """Wraps an optimizer: every `k` of its steps, pull the weights back toward slow weights.

    The slow weights ``s`` start as the weights before the first step.  After every
    ``k``-th inner step::

        s += alpha * (p - s)
        p = s

    Args:
        optimizer: the inner (fast) optimizer, e.g. ``SGD(model, lr=0.1)``.
        k: inner steps per slow update (int >= 1), default 5.
        alpha: slow step size in (0, 1], default 0.5.

    Behaves as an optimizer: ``step()``, ``zero_grad()``, ``lr`` (read and set on the
    inner optimizer, so schedules work unchanged), and ``state_dict()`` /
    ``load_state_dict()`` holding the inner state plus the slow weights, so a resumed
    run continues exactly.  Frozen parameters (``source.frozen_params``) get no slow
    weights.
    """

    def __init__(self, optimizer, k=5, alpha=0.5):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Lookahead: optimizer must be a cnnframe.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"Lookahead: k must be an int >= 1, got {k!r}")
        self.optimizer = optimizer
        self.k = int(k)
        self.alpha = _check_range("Lookahead alpha", alpha, 0.0, 1.0, lo_open=True)
        self.inner_steps = 0   # inner steps taken (a slow update after every k-th)
        self.slow = {}         # param name -> slow weights, made at the first step

    @property
    def source(self):
        return self.optimizer.source

    @property
    def lr(self):
        return self.optimizer.lr

    @lr.setter
    def lr(self, value):
        self.optimizer.lr = value

    @property
    def last_grad_norm(self):
        return self.optimizer.last_grad_norm

    def zero_grad(self):
        self.optimizer.zero_grad()

    def _trainable(self):
        frozen = getattr(self.source, "frozen_params", ())
        return {k: p for k, p in self.source.params.items() if k not in frozen}

    def step(self):
        """One inner step; every k-th also moves the slow weights and resets the fast ones."""
        params = self._trainable()
        if not self.slow:
            self.slow = {k: p.copy() for k, p in params.items()}
        self.optimizer.step()
        self.inner_steps += 1
        if self.inner_steps % self.k:
            return
        for name, p in params.items():
            s = self.slow[name]
            if s.dtype != p.dtype:  # model.astype(...) after some steps
                s = self.slow[name] = s.astype(p.dtype)
            tmp = self.optimizer._scratch_like(p)
            np.subtract(p, s, out=tmp)
            tmp *= p.dtype.type(self.alpha)
            s += tmp
            np.copyto(p, s)

    def state_dict(self):
        """The inner optimizer's state_dict plus ``lookahead_k``, ``lookahead_alpha``,
        ``lookahead_steps`` and ``slow/<param>`` (copies)."""
        d = self.optimizer.state_dict()
        d.update({"lookahead_k": self.k, "lookahead_alpha": self.alpha,
                  "lookahead_steps": self.inner_steps})
        d.update({_PREFIX + k: v.copy() for k, v in self.slow.items()})
        return d

    def load_state_dict(self, d):
        """Restore a :meth:`state_dict` (k and alpha must match this wrapper's)."""
        d = dict(d)
        mine = {k: d.pop(k) for k in list(d) if k.startswith(("lookahead_", _PREFIX))}
        for key in ("lookahead_k", "lookahead_alpha", "lookahead_steps"):
            if key not in mine:
                raise ValueError(f"Lookahead state_dict is missing {key!r} (was it saved by "
                                 f"{type(self.optimizer).__name__} without Lookahead?)")
        k, alpha = int(_as_number("lookahead_k", mine["lookahead_k"])), \
            float(_as_number("lookahead_alpha", mine["lookahead_alpha"]))
        if (k, alpha) != (self.k, self.alpha):
            raise ValueError(f"Lookahead state_dict has k={k}, alpha={alpha}; this Lookahead "
                             f"has k={self.k}, alpha={self.alpha}")
        params = self.source.params
        slow = {}
        for key, value in mine.items():
            if not key.startswith(_PREFIX):
                if key not in ("lookahead_k", "lookahead_alpha", "lookahead_steps"):
                    raise ValueError(f"unknown key {key!r} in Lookahead state_dict")
                continue
            name = key[len(_PREFIX):]
            if name not in params:
                raise ValueError(f"Lookahead state_dict has slow weights for {name!r}, which "
                                 f"the source does not have")
            arr = np.asarray(value)
            if arr.shape != params[name].shape:
                raise ValueError(f"Lookahead state_dict entry {key!r} has shape {arr.shape}, "
                                 f"the parameter has {params[name].shape}")
            slow[name] = np.array(arr, dtype=params[name].dtype, order="C")
        self.optimizer.load_state_dict(d)
        self.inner_steps = int(_as_number("lookahead_steps", mine["lookahead_steps"]))
        self.slow = slow

    def __repr__(self):
        return f"Lookahead({self.optimizer!r}, k={self.k}, alpha={self.alpha})"
