"""Following the best value of a monitored metric (early stopping, plateaus, best checkpoints)."""
import math

__all__ = ["Monitor", "MODES"]

MODES = ("auto", "min", "max")


class Monitor:
    """The best value so far of one metric, and whether a new value improves on it.

    Args:
        monitor: the metric's name in the per-epoch results, e.g. "val_loss",
            "val_accuracy", "loss".
        mode: "min", "max", or "auto" (as Keras: "max" for names containing "acc",
            else "min").
        min_delta: how much a value must beat the best by to count as an improvement
            (an absolute amount, >= 0).

    ``best`` is None until the first value is seen.
    """

    def __init__(self, monitor="val_loss", mode="auto", min_delta=0.0, owner="monitor"):
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{owner}: monitor must be a metric name such as \"val_loss\", "
                             f"got {monitor!r}")
        if mode not in MODES:
            raise ValueError(f"{owner}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        min_delta = float(min_delta)
        if not (min_delta >= 0 and math.isfinite(min_delta)):
            raise ValueError(f"{owner}: min_delta must be a finite number >= 0, got {min_delta}")
        self.owner = owner
        self.monitor = monitor
        self.mode = mode
        self.maximize = mode == "max" or (mode == "auto" and "acc" in monitor)
        self.min_delta = min_delta
        self.best = None

    def value(self, logs):
        """The monitored value in `logs` (a dict of per-epoch results).

        Raises
        ------
        KeyError
            When `logs` lacks it, naming the keys it has.
        """
        if self.monitor not in logs:
            have = ", ".join(k for k, v in logs.items() if isinstance(v, (int, float)))
            hint = (" (val_ metrics need a validation loader)"
                    if self.monitor.startswith("val_") else "")
            raise KeyError(f"{self.owner} monitors {self.monitor!r}, which the epoch's results "
                           f"lack{hint}; they have: {have}")
        return float(logs[self.monitor])

    def improves(self, value):
        """True when `value` beats the best by more than min_delta (always for the first)."""
        if self.best is None:
            return not math.isnan(value)
        if self.maximize:
            return value - self.min_delta > self.best
        return value + self.min_delta < self.best

    def state_dict(self):
        return {"monitor": self.monitor, "best": self.best}

    def load_state_dict(self, d):
        if d.get("monitor") != self.monitor:
            raise ValueError(f"{self.owner}: the saved state monitors {d.get('monitor')!r}, "
                             f"this one monitors {self.monitor!r}")
        self.best = None if d.get("best") is None else float(d["best"])
