"""Optimizers (SGD, Adam, AdamW), the Lookahead wrapper, per-step learning-rate schedules
(and ReduceLROnPlateau), gradient clipping, parameter groups, a weight EMA, config builders.

Optimizers take any ``source`` with ``.params`` / ``.grads`` dicts (a Model or a
Layer), read both at every ``step()`` and update the parameters in place.
"""
from cnnframe.optim.adam import Adam, AdamW
from cnnframe.optim.base import Optimizer
from cnnframe.optim.clipping import clip_grad_norm, clip_grad_value, global_norm
from cnnframe.optim.config import OPTIMIZERS, SCHEDULES, build_optimizer, build_schedule
from cnnframe.optim.ema import ExponentialMovingAverage
from cnnframe.optim.lookahead import Lookahead
from cnnframe.optim.monitor import Monitor
from cnnframe.optim.schedules import (ConstantLR, CosineWarmup, LRSchedule, OneCycle,
                                      PiecewiseLinear, ReduceLROnPlateau, StepLR)
from cnnframe.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Lookahead", "LRSchedule", "ConstantLR",
           "StepLR", "CosineWarmup", "OneCycle", "PiecewiseLinear", "ReduceLROnPlateau",
           "ExponentialMovingAverage",
           "Monitor", "clip_grad_norm", "clip_grad_value", "global_norm", "build_optimizer",
           "build_schedule", "OPTIMIZERS", "SCHEDULES"]
