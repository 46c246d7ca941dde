"""Build optimizers and schedules from plain config dicts (e.g. a TOML/JSON section).

>>> opt = build_optimizer({"type": "sgd", "lr": 0.05, "momentum": 0.9}, model)
>>> sched = build_schedule({"type": "cosine", "warmup_steps": 100}, opt, total_steps=5000)
"""
import difflib
import inspect
from collections.abc import Mapping

from cnnframe.optim.adam import Adam, AdamW
from cnnframe.optim.lookahead import Lookahead
from cnnframe.optim.schedules import (ConstantLR, CosineWarmup, OneCycle, PiecewiseLinear,
                                      ReduceLROnPlateau, StepLR)
from cnnframe.optim.sgd import SGD

__all__ = ["OPTIMIZERS", "SCHEDULES", "build_optimizer", "build_schedule"]

OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}

# total_steps is filled in by build_schedule, not read from the config
SCHEDULES = {
    "constant": ConstantLR,
    "step": StepLR,
    "cosine": CosineWarmup,
    "onecycle": OneCycle,
    "piecewise_linear": PiecewiseLinear,
    "plateau": ReduceLROnPlateau,
}
_SCHEDULE_ALIASES = {"none": "constant", "steplr": "step", "cosine_warmup": "cosine",
                     "one_cycle": "onecycle", "reduce_lr_on_plateau": "plateau",
                     "linear": "piecewise_linear"}
LOOKAHEAD_KEYS = ("k", "alpha")


def _config_keys(cls, exclude):
    sig = inspect.signature(cls.__init__)
    return [n for n in list(sig.parameters)[1:] if n not in exclude]


def _split_type(cfg, what, valid_types):
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{what} config must be a dict, got {type(cfg).__name__}")
    cfg = dict(cfg)
    if "type" not in cfg:
        raise ValueError(f"{what} config needs a 'type'; valid types: {', '.join(valid_types)}")
    kind = cfg.pop("type")
    return str(kind).lower(), cfg


def _unknown_type(what, kind, valid):
    close = difflib.get_close_matches(kind, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown {what} type {kind!r}; valid types: {', '.join(valid)}{hint}")


def _check_keys(what, kind, cfg, valid):
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        hints = [f"{k!r} (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(k, valid, n=1))
                 else repr(k) for k in unknown]
        raise ValueError(f"unknown key(s) {', '.join(hints)} for {what} {kind!r}; valid keys: "
                         f"{', '.join(valid) or 'none'}")


def build_optimizer(cfg, source):
    """Build an optimizer from ``cfg = {"type": name, **constructor keyword arguments}``.

    Types: ``"sgd"``, ``"adam"``, ``"adamw"``; keys are the constructor's arguments
    (``lr``, ``momentum``, ``betas`` as a 2-list, ``no_decay`` as a list,
    ``clip_grad_norm``, ``clip_grad_value``, ``groups`` as a list of tables
    ``{params = "*.bias", lr = ..., weight_decay = ...}``), plus ``lookahead = {k = 5,
    alpha = 0.5}``, which wraps the optimizer in :class:`~cnnframe.optim.Lookahead`.

    Raises
    ------
    ValueError
        Unknown type or key (the valid ones are named), or a bad value.
    """
    kind, kwargs = _split_type(cfg, "optimizer", list(OPTIMIZERS))
    if kind not in OPTIMIZERS:
        raise _unknown_type("optimizer", kind, list(OPTIMIZERS))
    cls = OPTIMIZERS[kind]
    _check_keys("optimizer", kind, kwargs, _config_keys(cls, {"source"}) + ["lookahead"])
    lookahead = kwargs.pop("lookahead", None)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    if "no_decay" in kwargs and not isinstance(kwargs["no_decay"], str):
        kwargs["no_decay"] = tuple(kwargs["no_decay"])
    optimizer = cls(source, **kwargs)
    if lookahead is None:
        return optimizer
    if not isinstance(lookahead, Mapping):
        raise TypeError(f"optimizer lookahead must be a table {{k = 5, alpha = 0.5}}, got "
                        f"{lookahead!r}")
    _check_keys("optimizer", "lookahead", lookahead, LOOKAHEAD_KEYS)
    return Lookahead(optimizer, **lookahead)


def build_schedule(cfg, optimizer, total_steps):
    """Build a learning-rate schedule for a run of ``total_steps`` optimizer steps.

    ``cfg`` is ``None`` (constant lr) or ``{"type": name, ...}`` with types:

    - ``"constant"`` (alias ``"none"``): no keys.
    - ``"step"``: ``step_size`` (in steps), ``gamma``.
    - ``"cosine"`` (alias ``"cosine_warmup"``): ``warmup_steps``, ``min_lr``.
    - ``"onecycle"`` (alias ``"one_cycle"``): ``max_lr`` (default: the optimizer's
      current lr), ``pct_start``, ``div_factor``, ``final_div_factor``.
    - ``"piecewise_linear"`` (alias ``"linear"``): ``fractions`` (of the run, from 0) and
      ``factors`` (of the optimizer's lr) at those points
      (:class:`~cnnframe.optim.PiecewiseLinear`).
    - ``"plateau"`` (alias ``"reduce_lr_on_plateau"``): ``monitor``, ``mode``, ``factor``,
      ``patience``, ``min_delta``, ``cooldown``, ``min_lr``
      (:class:`~cnnframe.optim.ReduceLROnPlateau`; the Trainer feeds it each epoch's results).

    ``total_steps`` comes from the argument, not from the config.

    Raises
    ------
    ValueError
        Unknown type or key (the valid ones are named), or a bad value.
    """
    if cfg is None:
        return ConstantLR(optimizer)
    valid_types = list(SCHEDULES) + list(_SCHEDULE_ALIASES)
    kind, kwargs = _split_type(cfg, "schedule", valid_types)
    kind = _SCHEDULE_ALIASES.get(kind, kind)
    if kind not in SCHEDULES:
        raise _unknown_type("schedule", kind, valid_types)
    cls = SCHEDULES[kind]
    _check_keys("schedule", kind, kwargs, _config_keys(cls, {"optimizer", "total_steps"}))
    if cls is ConstantLR:
        return ConstantLR(optimizer)
    if cls is OneCycle:
        kwargs.setdefault("max_lr", optimizer.lr)
    if cls in (StepLR, ReduceLROnPlateau):
        return cls(optimizer, **kwargs)
    return cls(optimizer, total_steps=total_steps, **kwargs)
