"""Per-step learning-rate schedules.

A schedule owns a step counter ``t`` (0 at construction) and sets ``optimizer.lr`` to
``lr_at(t)``: once at construction and after each :meth:`LRSchedule.step`.  Call
``schedule.step()`` once per training step, after ``optimizer.step()``::

    for x, y in loader:
        ...; optimizer.step(); schedule.step()

So the first optimizer step uses ``lr_at(0)``.  ``state_dict()`` holds the counter
and the base learning rate, so a resumed run continues with the same lr sequence.
"""
import math

from cnnframe.optim.base import _as_number, _check_range

__all__ = ["LRSchedule", "ConstantLR", "StepLR", "CosineWarmup", "OneCycle", "PiecewiseLinear",
           "ReduceLROnPlateau"]


def _check_int(name, value, minimum):
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class LRSchedule:
    """Base class: subclasses define :meth:`lr_at` (lr after ``t`` schedule steps)."""

    #: Attributes saved by ``state_dict`` besides the step counter.
    _state_names = ("base_lr",)

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"optimizer must have an lr attribute, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_step = 0

    def lr_at(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self):
        self.optimizer.lr = self.lr_at(self.last_step)

    def get_lr(self):
        """The learning rate for the current step (what ``optimizer.lr`` was set to)."""
        return self.lr_at(self.last_step)

    def step(self):
        """Advance one training step and set ``optimizer.lr``; returns the new lr."""
        self.last_step += 1
        self._apply()
        return self.optimizer.lr

    def state_dict(self):
        """``{"last_step": int, "base_lr": float, ...}`` (numbers only)."""
        d = {"last_step": self.last_step}
        for k in self._state_names:
            d[k] = getattr(self, k)
        return d

    def load_state_dict(self, d):
        """Restore a :meth:`state_dict` (0-d arrays from ``np.load`` are accepted) and set
        ``optimizer.lr`` accordingly."""
        keys = {"last_step", *self._state_names}
        unknown = sorted(set(d) - keys)
        missing = sorted(keys - set(d))
        if unknown or missing:
            raise ValueError(f"{type(self).__name__} state_dict keys must be {sorted(keys)}; "
                             f"unknown {unknown}, missing {missing}")
        for k in self._state_names:
            setattr(self, k, float(_as_number(k, d[k])))
        self.last_step = _check_int("last_step", _as_number("last_step", d["last_step"]), 0)
        self._apply()

    def __repr__(self):
        return f"{type(self).__name__}(last_step={self.last_step}, lr={self.get_lr():.6g})"


class ConstantLR(LRSchedule):
    """Keeps the optimizer's learning rate (useful as a "no schedule" in configs)."""

    def __init__(self, optimizer):
        super().__init__(optimizer)
        self._apply()

    def lr_at(self, t):
        return self.base_lr


class StepLR(LRSchedule):
    """``lr = base_lr * gamma ** (t // step_size)``, with ``t`` counted in training steps.

    Args:
        optimizer: its current lr is the base lr.
        step_size: steps between decays (int >= 1); for "every k epochs" pass
            ``k * len(loader)``.
        gamma: multiplicative factor, default 0.1.
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size = _check_int("step_size", step_size, 1)
        self.gamma = _check_range("gamma", gamma, 0.0, math.inf)
        self._apply()

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class CosineWarmup(LRSchedule):
    """Linear warm-up from 0 to the base lr, then cosine decay to ``min_lr``.

    ``lr(t) = base_lr * t / warmup_steps`` for ``t < warmup_steps`` (so the first step
    has lr 0, as in Hugging Face's ``get_cosine_schedule_with_warmup``), then with
    ``q = (t - warmup_steps) / (total_steps - warmup_steps)``::

        lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * q)) / 2

    and ``min_lr`` for ``t >= total_steps``.

    Args:
        optimizer: its current lr is the base (peak) lr.
        total_steps: length of the schedule in steps (>= 1).
        warmup_steps: in [0, total_steps), default 0.
        min_lr: final learning rate, default 0.
    """

    def __init__(self, optimizer, total_steps, warmup_steps=0, min_lr=0.0):
        super().__init__(optimizer)
        self.total_steps = _check_int("total_steps", total_steps, 1)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be < total_steps "
                             f"({self.total_steps})")
        self.min_lr = _check_range("min_lr", min_lr, 0.0, math.inf)
        self._apply()

    def lr_at(self, t):
        if t < self.warmup_steps:
            return self.base_lr * t / self.warmup_steps
        if t >= self.total_steps:
            return self.min_lr
        q = (t - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * q))


class OneCycle(LRSchedule):
    """The 1cycle policy, as ``torch.optim.lr_scheduler.OneCycleLR`` with
    ``anneal_strategy="cos"``, ``three_phase=False`` (momentum is not cycled).

    lr starts at ``initial = max_lr / div_factor``, rises by cosine annealing to
    ``max_lr`` at step ``pct_start * total_steps - 1``, then anneals to
    ``max_lr / (div_factor * final_div_factor)`` at step ``total_steps - 1`` and stays
    there (PyTorch raises instead when stepped past ``total_steps``).  Here
    ``anneal(a, b, q) = b + (a - b) * (1 + cos(pi * q)) / 2``.

    Args:
        optimizer: its lr is overwritten (the base lr is not used).
        max_lr: peak learning rate.
        total_steps: number of training steps (>= 2).
        pct_start: fraction of steps spent rising, in (0, 1), default 0.3.
        div_factor: ``max_lr / initial_lr``, default 25.
        final_div_factor: ``initial_lr / final_lr``, default 1e4.
    """

    _state_names = ("base_lr", "max_lr")

    def __init__(self, optimizer, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4):
        super().__init__(optimizer)
        self.max_lr = _check_range("max_lr", max_lr, 0.0, math.inf)
        self.total_steps = _check_int("total_steps", total_steps, 2)
        self.pct_start = _check_range("pct_start", pct_start, 0.0, 1.0, lo_open=True, hi_open=True)
        self.div_factor = _check_range("div_factor", div_factor, 0.0, math.inf, lo_open=True)
        self.final_div_factor = _check_range("final_div_factor", final_div_factor, 0.0, math.inf,
                                             lo_open=True)
        self._apply()

    @staticmethod
    def _anneal(start, end, q):
        return end + (start - end) * 0.5 * (math.cos(math.pi * q) + 1.0)

    def lr_at(self, t):
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        peak_step = self.pct_start * self.total_steps - 1.0
        last_step = self.total_steps - 1.0
        t = min(float(t), last_step)
        if t <= peak_step:
            return self._anneal(initial, self.max_lr, t / peak_step) if peak_step > 0 else self.max_lr
        return self._anneal(self.max_lr, final, (t - peak_step) / (last_step - peak_step))


class PiecewiseLinear(LRSchedule):
    """The lr as a piecewise-linear function of the run's progress: ``base_lr`` times the
    factor interpolated between points ``(fraction of total_steps, factor)``.

    ``lr(t) = base_lr * interp(t / total_steps, fractions, factors)``, and the last factor
    from the last fraction on.  airbench's schedule (a linear warm-up from 0.2 to 1 over
    the first 23% of the steps, then a linear decay to 0.07) is ``fractions = [0, 0.23,
    1]``, ``factors = [0.2, 1, 0.07]``.

    Args:
        optimizer: its current lr is the base lr.
        total_steps: length of the run in steps (>= 1).
        fractions: increasing, starting at 0, each in [0, 1]; default [0, 1].
        factors: one per fraction, each >= 0; default [1, 0] (a linear decay to 0).
    """

    def __init__(self, optimizer, total_steps, fractions=(0.0, 1.0), factors=(1.0, 0.0)):
        super().__init__(optimizer)
        self.total_steps = _check_int("total_steps", total_steps, 1)
        fr, fa = list(fractions), list(factors)
        if len(fr) < 1 or len(fr) != len(fa):
            raise ValueError(f"PiecewiseLinear: fractions and factors must be lists of the same "
                             f"non-zero length, got {len(fr)} fractions and {len(fa)} factors")
        fr = [_check_range("PiecewiseLinear fractions", f, 0.0, 1.0) for f in fr]
        fa = [_check_range("PiecewiseLinear factors", f, 0.0, math.inf) for f in fa]
        if fr[0] != 0.0 or any(b <= a for a, b in zip(fr, fr[1:])):
            raise ValueError(f"PiecewiseLinear: fractions must increase strictly from 0, got "
                             f"{fr}")
        self.fractions, self.factors = fr, fa
        self._apply()

    def lr_at(self, t):
        q = t / self.total_steps
        fr, fa = self.fractions, self.factors
        if q >= fr[-1]:
            return self.base_lr * fa[-1]
        i = next(k for k in range(1, len(fr)) if q < fr[k])  # fr[i - 1] <= q < fr[i]
        w = (q - fr[i - 1]) / (fr[i] - fr[i - 1])
        return self.base_lr * (fa[i - 1] + w * (fa[i] - fa[i - 1]))


class ReduceLROnPlateau(LRSchedule):
    """Multiply the lr by `factor` when a metric has stopped improving, as Keras's callback.

    At the end of every epoch the `cnnframe.train.Trainer` passes the epoch's results to
    :meth:`epoch_end`.  When the monitored value has not improved (by more than
    `min_delta`) for `patience` epochs in a row, ``lr = max(lr * factor, min_lr)`` and
    `cooldown` epochs pass before waiting starts again.  Between epochs the lr stays.

    Args:
        optimizer: its current lr is the starting lr.
        monitor: the metric, e.g. "val_loss" (default) or "val_accuracy".
        mode: "min", "max" or "auto" ("max" for names containing "acc").
        factor: in (0, 1), default 0.1.
        patience: epochs without improvement before a reduction (int >= 1), default 10.
        min_delta: the least change that counts as an improvement (absolute), default 1e-4.
        cooldown: epochs after a reduction before counting again (int >= 0), default 0.
        min_lr: the lr never goes below this, default 0.

    ``state_dict`` holds the current lr, the best value and the counters, so a resumed
    run reduces at the same epochs.
    """

    _state_names = ("base_lr", "lr")

    def __init__(self, optimizer, monitor="val_loss", mode="auto", factor=0.1, patience=10,
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        from cnnframe.optim.monitor import Monitor
        super().__init__(optimizer)
        self.tracker = Monitor(monitor, mode, min_delta, owner="ReduceLROnPlateau")
        self.monitor = monitor
        self.factor = _check_range("factor", factor, 0.0, 1.0, lo_open=True, hi_open=True)
        self.patience = _check_int("patience", patience, 1)
        self.cooldown = _check_int("cooldown", cooldown, 0)
        self.min_lr = _check_range("min_lr", min_lr, 0.0, math.inf)
        self.lr = self.base_lr
        self.wait = 0
        self.cooldown_left = 0
        self._apply()

    def lr_at(self, t):
        return self.lr

    def epoch_end(self, logs):
        """Take one epoch's results (a dict holding the monitored metric); returns the lr.

        Raises
        ------
        KeyError
            When `logs` lacks the monitored metric (naming the ones it has).
        """
        value = self.tracker.value(logs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self.tracker.improves(value):
            self.tracker.best = value
            self.wait = 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                if self.lr > self.min_lr:
                    self.lr = max(self.lr * self.factor, self.min_lr)
                self.cooldown_left = self.cooldown
                self.wait = 0
        self._apply()
        return self.lr

    def state_dict(self):
        d = super().state_dict()
        d.update({"best": self.tracker.best, "wait": self.wait,
                  "cooldown_left": self.cooldown_left})
        return d

    def load_state_dict(self, d):
        d = dict(d)
        extra = {k: d.pop(k) for k in ("best", "wait", "cooldown_left") if k in d}
        if len(extra) != 3:
            raise ValueError("ReduceLROnPlateau state_dict needs best, wait and cooldown_left")
        best = extra["best"]
        self.tracker.best = None if best is None else float(_as_number("best", best))
        self.wait = _check_int("wait", _as_number("wait", extra["wait"]), 0)
        self.cooldown_left = _check_int("cooldown_left",
                                        _as_number("cooldown_left", extra["cooldown_left"]), 0)
        super().load_state_dict(d)
