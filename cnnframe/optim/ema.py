"""An exponential moving average (EMA) of a model's weights, for evaluation and saving."""
import contextlib
import math

import numpy as np

from cnnframe.optim.base import _as_number, _check_range

__all__ = ["ExponentialMovingAverage"]

_PREFIX = "average/"


class ExponentialMovingAverage:
    """Keeps ``average = decay * average + (1 - decay) * weights`` of a model's weights.

    Call :meth:`update` after every optimizer step (the `cnnframe.train.Trainer` does
    when given ``ema=``).  Every ``every_steps``-th call averages in the current
    parameters and, with ``buffers=True``, the buffers (batch-norm running statistics,
    as timm's ModelEmaV2 does) -- in place, in the model's dtype::

        average += (1 - d) * (weights - average)

    with ``d = decay``, or with ``warmup``, ``d = min(decay, (1 + n) / (10 + n))`` for
    the n-th update (TensorFlow's ``num_updates``), so early averages are not
    dominated by the random initial weights.

    Args:
        model: anything with ``params`` (and ``buffers``) dicts of arrays, e.g. a Model.
        decay: in [0, 1), default 0.999; the average spans about
            ``every_steps / (1 - decay)`` steps.
        every_steps: update every this many calls (int >= 1), default 1.
        warmup: use the warm-up decay above, default False.
        buffers: average the buffers too (else they are left out), default True.

    The average starts as a copy of the weights at construction.  :meth:`applied`
    evaluates with the averaged weights, :meth:`copy_to` keeps them, and
    :meth:`state_dict` holds everything a resumed run needs.
    """

    def __init__(self, model, decay=0.999, every_steps=1, warmup=False, buffers=True):
        if not hasattr(model, "params"):
            raise TypeError(f"ExponentialMovingAverage: model must have a params dict, got "
                            f"{type(model).__name__}")
        self.model = model
        self.decay = _check_range("ema decay", decay, 0.0, 1.0, hi_open=True)
        if isinstance(every_steps, bool) or not isinstance(every_steps, (int, np.integer)) \
                or every_steps < 1:
            raise ValueError(f"ema every_steps must be an int >= 1, got {every_steps!r}")
        self.every_steps = int(every_steps)
        if not isinstance(warmup, (bool, np.bool_)):
            raise TypeError(f"ema warmup must be true or false, got {warmup!r}")
        self.warmup = bool(warmup)
        self.buffers = bool(buffers)
        self.calls = 0         # update() calls
        self.num_updates = 0   # averages taken
        self.average = {k: np.array(v, order="C") for k, v in self._live().items()}
        self._scratch = {}     # dtype -> flat buffer reused by every update

    def _scratch_like(self, a):
        buf = self._scratch.get(a.dtype)
        if buf is None or buf.size < a.size:
            buf = self._scratch[a.dtype] = np.empty(a.size, a.dtype)
        return buf[:a.size].reshape(a.shape)

    def _live(self):
        """key -> the model's live arrays that are averaged."""
        live = dict(self.model.params)
        if self.buffers:
            live.update(getattr(self.model, "buffers", {}))
        return live

    def current_decay(self):
        """The decay the next average will use."""
        if self.warmup:
            n = self.num_updates
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    def update(self):
        """Count one optimizer step; every ``every_steps``-th averages in the current weights."""
        self.calls += 1
        if self.calls % self.every_steps:
            return
        weight = 1.0 - self.current_decay()
        for key, live in self._live().items():
            avg = self.average[key]
            if avg.dtype != live.dtype:  # model.astype(...) after some steps
                avg = self.average[key] = avg.astype(live.dtype)
            if avg.dtype.kind != "f":   # integer buffers (counters) are copied
                np.copyto(avg, live)
                continue
            tmp = self._scratch_like(live)
            np.subtract(live, avg, out=tmp)
            tmp *= live.dtype.type(weight)
            avg += tmp
        self.num_updates += 1

    @contextlib.contextmanager
    def applied(self):
        """A block in which the model holds the averaged weights (restored afterwards), as
        in ``with ema.applied(): metrics = trainer.evaluate(test_loader)``."""
        live = self._live()
        saved = {k: v.copy() for k, v in live.items()}
        try:
            for k, v in live.items():
                np.copyto(v, self.average[k], casting="unsafe")
            yield self
        finally:
            for k, v in live.items():
                np.copyto(v, saved[k])

    def copy_to(self, model=None):
        """Write the averaged weights into `model` (default: the averaged model) for good."""
        target = self.model if model is None else model
        live = dict(target.params)
        if self.buffers:
            live.update(getattr(target, "buffers", {}))
        missing = [k for k in self.average if k not in live]
        if missing:
            raise ValueError(f"ExponentialMovingAverage.copy_to: the model lacks {missing}")
        for k, avg in self.average.items():
            np.copyto(live[k], avg, casting="unsafe")

    def state_dict(self):
        """``decay``, ``every_steps``, ``warmup``, ``calls``, ``num_updates`` and
        ``average/<key>`` (copies)."""
        d = {"decay": self.decay, "every_steps": self.every_steps, "warmup": self.warmup,
             "calls": self.calls, "num_updates": self.num_updates}
        d.update({_PREFIX + k: v.copy() for k, v in self.average.items()})
        return d

    def load_state_dict(self, d):
        """Restore a :meth:`state_dict`; its settings and keys must match this average's."""
        d = dict(d)
        settings = {k: _as_number(k, d.pop(k, math.nan)) for k in
                    ("decay", "every_steps", "warmup", "calls", "num_updates")}
        mine = {"decay": self.decay, "every_steps": self.every_steps, "warmup": self.warmup}
        for k, v in mine.items():
            if settings[k] != v:
                raise ValueError(f"ExponentialMovingAverage state_dict has {k} = {settings[k]}, "
                                 f"this average has {k} = {v}")
        live = self._live()
        unknown = [k for k in d if not k.startswith(_PREFIX) or k[len(_PREFIX):] not in live]
        missing = [k for k in live if _PREFIX + k not in d]
        if unknown or missing:
            raise ValueError(f"ExponentialMovingAverage state_dict does not fit the model: "
                             f"unexpected {unknown}, missing {[_PREFIX + k for k in missing]}")
        average = {}
        for k, v in live.items():
            arr = np.asarray(d[_PREFIX + k])
            if arr.shape != v.shape:
                raise ValueError(f"ExponentialMovingAverage state_dict: {_PREFIX + k} has shape "
                                 f"{arr.shape}, the model's array has {v.shape}")
            average[k] = np.array(arr, dtype=v.dtype, order="C")
        self.average = average
        self.calls = int(settings["calls"])
        self.num_updates = int(settings["num_updates"])

    def __repr__(self):
        return (f"ExponentialMovingAverage(decay={self.decay}, every_steps={self.every_steps}, "
                f"warmup={self.warmup}, updates={self.num_updates})")
