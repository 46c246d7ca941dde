"""Optimizer base: finds parameters and gradients on a source at step time, keeps
per-parameter state in preallocated buffers, and (de)serialises that state as plain
numpy arrays and numbers (no pickle needed for checkpoints).
"""
import fnmatch
import math

import numpy as np

from cnnframe.optim.clipping import clip_grad_norm, clip_grad_value
from cnnframe.optim.groups import ParamGroups

__all__ = ["Optimizer"]


def _as_number(name, value):
    """A float from a Python number or a 0-d / size-1 array (as np.load returns them)."""
    arr = np.asarray(value)
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"state_dict entry {name!r} must be a number, got {value!r}")
    return arr.reshape(()).item()


class Optimizer:
    """Base class of the optimizers.

    ``source`` is anything with ``.params`` and ``.grads`` dicts (a Model or a Layer).
    Both are read at every :meth:`step`, so arrays replaced by ``model.astype`` or
    ``load_state_dict`` are picked up; the parameter arrays are updated in place.

    Args:
        source: object with ``params`` and ``grads`` dicts, name -> ndarray.
        lr: learning rate (settable later through ``optimizer.lr``, which schedules do).
        weight_decay: decay coefficient (its meaning is defined by the subclass).
        no_decay: names of parameters that get no weight decay.  An entry matches a
            parameter key if it equals the key or its last ``.``-separated part(s), and may
            use shell wildcards: ``("bias",)`` matches ``"conv1.bias"`` and ``"bias"``;
            ``("bn*.weight",)`` matches ``"bn1.weight"``.  Default ``()``: every parameter
            is decayed (as in PyTorch).  A common choice is ``("bias", "bn*.weight")``.
        skip_missing: a parameter without a gradient (key missing from ``source.grads`` or
            mapped to None) raises ``KeyError`` by default; with ``skip_missing=True`` it
            is left unchanged and its state does not advance.
        groups: parameter groups with their own lr and weight decay, a list of
            ``{"params": pattern(s), "lr": ..., "weight_decay": ...}``; patterns as
            :mod:`cnnframe.optim.groups` (``"*.bias"``, ``"bn*"``); the first group selecting
            a parameter applies.  A group's lr is its lr now; schedules scale it with
            ``optimizer.lr`` (it steps with ``optimizer.lr * group lr / initial lr``).
        clip_grad_norm: scale the gradients so their global L2 norm is at most this,
            before each step (:func:`cnnframe.optim.clipping.clip_grad_norm`); None: off.
        clip_grad_value: clip every gradient element into [-v, v] before each step
            (before the norm clipping when both are set); None: off.

    Frozen parameters (those in ``source.frozen_params``, see
    :meth:`cnnframe.graph.Model.freeze`) are skipped: no update, no weight decay, no
    clipping, and their state does not advance.  Clipping changes ``source.grads`` in
    place; ``last_grad_norm`` holds the global norm before the latest norm clipping.
    """

    #: Hyper-parameters saved in ``state_dict`` (besides lr).
    _hparam_names = ()

    def _buffers_for(self, hparams):
        """Names of the per-parameter state buffers under hyper-parameters ``hparams``."""
        return ()

    @property
    def _buffer_names(self):
        return self._buffers_for({h: getattr(self, h) for h in self._hparam_names})

    def __init__(self, source, lr, weight_decay=0.0, no_decay=(), skip_missing=False, groups=(),
                 clip_grad_norm=None, clip_grad_value=None):
        if not (hasattr(source, "params") and hasattr(source, "grads")):
            raise TypeError("source must have .params and .grads dicts (a Model or a Layer), "
                            f"got {type(source).__name__}")
        self.source = source
        self.lr = lr
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0, math.inf)
        if isinstance(no_decay, str):
            no_decay = (no_decay,)
        self.no_decay = tuple(no_decay)
        self.skip_missing = bool(skip_missing)
        self.initial_lr = self.lr
        self.groups = ParamGroups(groups, source.params, self.initial_lr) if groups else None
        self.clip_grad_norm = (None if clip_grad_norm is None else
                               _check_range("clip_grad_norm", clip_grad_norm, 0.0, math.inf,
                                            lo_open=True))
        self.clip_grad_value = (None if clip_grad_value is None else
                                _check_range("clip_grad_value", clip_grad_value, 0.0, math.inf,
                                             lo_open=True))
        self.last_grad_norm = None
        self.step_count = 0           # calls to step()
        self.state = {}               # param name -> {buffer name: ndarray, "step": int}
        self._scratch = {}            # dtype -> flat scratch buffer shared by all params
        self._decay_cache = {}

    # -- learning rate -----------------------------------------------------------------
    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        value = float(value)
        if not (value >= 0.0 and math.isfinite(value)):
            raise ValueError(f"lr must be a finite number >= 0, got {value}")
        self._lr = value

    # -- parameter lookup --------------------------------------------------------------
    def decays(self, name):
        """True if parameter ``name`` receives weight decay (see ``no_decay``)."""
        hit = self._decay_cache.get(name)
        if hit is None:
            hit = not any(fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(name, "*." + pat)
                          for pat in self.no_decay)
            self._decay_cache[name] = hit
        return hit

    def _pairs(self):
        """(name, param, grad) for every parameter that has a gradient, validated."""
        params, grads = self.source.params, self.source.grads
        frozen = getattr(self.source, "frozen_params", ())
        out = []
        for name, p in params.items():
            if name in frozen:
                continue
            g = grads.get(name)
            if g is None:
                if self.skip_missing:
                    continue
                raise KeyError(f"parameter {name!r} has no gradient in source.grads (run backward "
                               "first, or pass skip_missing=True to leave parameters without "
                               "gradients, e.g. frozen ones, unchanged)")
            if g.shape != p.shape:
                raise ValueError(f"gradient of {name!r} has shape {g.shape}, parameter has "
                                 f"shape {p.shape}")
            if p.dtype not in (np.float32, np.float64):
                raise TypeError(f"parameter {name!r} must be float32 or float64, got {p.dtype}")
            out.append((name, p, g))
        return out

    def _scratch_like(self, p):
        """A scratch array shaped like ``p`` (views one shared buffer per dtype)."""
        buf = self._scratch.get(p.dtype)
        if buf is None or buf.size < p.size:
            buf = np.empty(p.size, dtype=p.dtype)
            self._scratch[p.dtype] = buf
        return buf[:p.size].reshape(p.shape)

    def _state_for(self, name, p, buffer_names):
        """Per-parameter state, allocated (zeros) on first use; follows p's dtype."""
        st = self.state.get(name)
        if st is None:
            st = {"step": 0}
            self.state[name] = st
        for b in buffer_names:
            buf = st.get(b)
            if buf is None:
                st[b] = np.zeros_like(p, order="C")
                continue
            if buf.shape != p.shape:
                raise ValueError(f"parameter {name!r} changed shape from {buf.shape} to {p.shape} "
                                 "since the optimizer state was created")
            if buf.dtype != p.dtype:        # model.astype(...) after some steps
                st[b] = buf.astype(p.dtype)
        return st

    # -- stepping ----------------------------------------------------------------------
    def step(self):
        """Clip the gradients (when asked), then update every parameter in place from its
        gradient, with its group's lr and weight decay."""
        buffer_names = self._buffer_names
        pairs = self._pairs()
        if self.clip_grad_value is not None:
            clip_grad_value([g for _, _, g in pairs], self.clip_grad_value)
        if self.clip_grad_norm is not None:
            self.last_grad_norm = clip_grad_norm([g for _, _, g in pairs], self.clip_grad_norm)
        for name, p, g in pairs:
            st = self._state_for(name, p, buffer_names)
            st["step"] += 1
            lr_factor, wd = (1.0, None) if self.groups is None else self.groups.settings(name)
            if wd is None:
                wd = self.weight_decay if (self.weight_decay and self.decays(name)) else 0.0
            self._update(p, g, st, self.lr * lr_factor, wd, self._scratch_like(p))
        self.step_count += 1

    def _update(self, p, g, state, lr, weight_decay, scratch):  # pragma: no cover - abstract
        raise NotImplementedError

    def zero_grad(self):
        """Set every gradient array in ``source.grads`` to zero (in place)."""
        for g in self.source.grads.values():
            if g is not None:
                g.fill(0)

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self):
        """Optimizer state as a flat dict of numpy arrays (copies) and numbers.

        Keys: ``"lr"``, ``"step_count"``, the hyper-parameters, and per parameter
        ``"<buffer>/<param name>"`` (e.g. ``"exp_avg/conv1.weight"``) and
        ``"step/<param name>"``.  ``np.savez(path, **opt.state_dict())`` stores it.
        """
        d = {"lr": self.lr, "step_count": self.step_count}
        for h in self._hparam_names:
            d[h] = getattr(self, h)
        buffer_names = self._buffer_names
        for name, st in self.state.items():
            d[f"step/{name}"] = st["step"]
            for b in buffer_names:
                d[f"{b}/{name}"] = st[b].copy()
        return d

    def load_state_dict(self, d):
        """Restore a :meth:`state_dict` (also from ``np.load``: 0-d arrays are numbers).

        Buffers are copied; hyper-parameters and lr are restored as saved.  Raises
        ValueError on unknown keys, buffers for parameters the source does not have, or
        shape mismatches.
        """
        d = dict(d)
        known_scalar = {"lr", "step_count", *self._hparam_names}
        scalars = {k: _as_number(k, v) for k, v in d.items() if k in known_scalar}
        missing = sorted(k for k in known_scalar if k not in scalars)
        if missing:
            raise ValueError(f"{type(self).__name__} state_dict is missing {missing}")
        buffer_names = self._buffers_for({h: scalars[h] for h in self._hparam_names})
        params = self.source.params
        state = {}
        for key, value in d.items():
            if key in known_scalar:
                continue
            kind, sep, name = key.partition("/")
            if not sep or kind not in ("step", *buffer_names):
                valid = sorted(known_scalar) + [f"{b}/<param>" for b in ("step", *buffer_names)]
                raise ValueError(f"unknown key {key!r} in {type(self).__name__} state_dict; "
                                 f"valid keys: {', '.join(valid)}")
            if name not in params:
                raise ValueError(f"state_dict has state for parameter {name!r}, which the source "
                                 f"does not have (parameters: {', '.join(params)})")
            st = state.setdefault(name, {})
            if kind == "step":
                st["step"] = int(_as_number(key, value))
            else:
                arr = np.asarray(value)
                p = params[name]
                if arr.shape != p.shape:
                    raise ValueError(f"state_dict entry {key!r} has shape {arr.shape}, parameter "
                                     f"{name!r} has shape {p.shape}")
                st[kind] = np.array(arr, dtype=p.dtype, order="C")  # a copy
        for name, st in state.items():
            lacking = [b for b in ("step", *buffer_names) if b not in st]
            if lacking:
                raise ValueError(f"state_dict is missing {', '.join(f'{b}/{name}' for b in lacking)}")
        for h in self._hparam_names:
            current = getattr(self, h)
            value = scalars[h]
            setattr(self, h, type(current)(value) if isinstance(current, (bool, int, float)) else value)
        self.lr = scalars["lr"]
        self.step_count = int(scalars["step_count"])
        self.state = state

    def __repr__(self):
        hp = ", ".join(f"{h}={getattr(self, h)!r}" for h in self._hparam_names)
        return f"{type(self).__name__}(lr={self.lr!r}, {hp})"


def _check_range(name, value, lo, hi, lo_open=False, hi_open=False):
    """``float(value)``, checked to lie in the interval [lo, hi] (ends optionally open)."""
    value = float(value)
    ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok or math.isnan(value):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value
