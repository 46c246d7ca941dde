"""Optimizers (SGD, Adam, AdamW), per-step learning-rate schedules and config builders.

Optimizers take any ``source`` with ``.params`` / ``.grads`` dicts (a Model or a
Layer), read both at every ``step()`` and update the parameters in place.
"""
from cnnframe.optim.adam import Adam, AdamW
from cnnframe.optim.base import Optimizer
from cnnframe.optim.config import OPTIMIZERS, SCHEDULES, build_optimizer, build_schedule
from cnnframe.optim.schedules import ConstantLR, CosineWarmup, LRSchedule, OneCycle, StepLR
from cnnframe.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRSchedule", "ConstantLR", "StepLR",
           "CosineWarmup", "OneCycle", "build_optimizer", "build_schedule", "OPTIMIZERS",
           "SCHEDULES"]
