"""build_optimizer / build_schedule: every type, values passed through, errors naming
the valid types and keys."""
import numpy as np
import pytest

from cnnframe.optim import (SGD, Adam, AdamW, ConstantLR, CosineWarmup, OneCycle, StepLR,
                            build_optimizer, build_schedule)


class Source:
    def __init__(self):
        self.params = {"fc.weight": np.ones((2, 3)), "fc.bias": np.zeros(2)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


def test_build_each_optimizer():
    cfg = {"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
           "no_decay": ["bias"]}
    opt = build_optimizer(cfg, Source())
    assert type(opt) is SGD
    assert (opt.lr, opt.momentum, opt.nesterov, opt.weight_decay) == (0.05, 0.9, True, 5e-4)
    assert not opt.decays("fc.bias") and opt.decays("fc.weight")
    assert cfg["type"] == "sgd" and cfg["no_decay"] == ["bias"]        # input not mutated
    adam = build_optimizer({"type": "Adam", "betas": [0.8, 0.99], "eps": 1e-6}, Source())
    assert type(adam) is Adam and adam.betas == (0.8, 0.99) and adam.eps == 1e-6
    adamw = build_optimizer({"type": "adamw", "lr": 3e-4}, Source())
    assert type(adamw) is AdamW and adamw.weight_decay == 1e-2 and adamw.lr == 3e-4


@pytest.mark.parametrize("cfg,exc,match", [
    ({"type": "sgdd"}, ValueError, "unknown optimizer type 'sgdd'; valid types: sgd, adam, adamw; "
                                   "did you mean 'sgd'"),
    ({"lr": 0.1}, ValueError, "needs a 'type'.*sgd, adam, adamw"),
    ({"type": "sgd", "momentun": 0.9}, ValueError,
     "'momentun' \\(did you mean 'momentum'\\?\\).*valid keys: lr, momentum, nesterov"),
    ({"type": "adam", "momentum": 0.9}, ValueError, "'momentum'.*'adam'.*valid keys: lr, betas"),
    ({"type": "adam", "betas": [0.9]}, ValueError, "betas"),
    ({"type": "sgd", "lr": -1}, ValueError, "lr"),
    (["sgd"], TypeError, "dict"),
])
def test_build_optimizer_errors(cfg, exc, match):
    with pytest.raises(exc, match=match):
        build_optimizer(cfg, Source())


def test_build_each_schedule():
    opt = build_optimizer({"type": "sgd", "lr": 0.1}, Source())
    s = build_schedule({"type": "step", "step_size": 5, "gamma": 0.5}, opt, total_steps=100)
    assert type(s) is StepLR and (s.step_size, s.gamma) == (5, 0.5)
    s = build_schedule({"type": "cosine", "warmup_steps": 10, "min_lr": 1e-3}, opt, 100)
    assert type(s) is CosineWarmup and (s.total_steps, s.warmup_steps, s.min_lr) == (100, 10, 1e-3)
    assert type(build_schedule({"type": "cosine_warmup"}, opt, 50)) is CosineWarmup
    opt.lr = 0.4
    s = build_schedule({"type": "onecycle", "pct_start": 0.25}, opt, 80)
    assert type(s) is OneCycle and s.max_lr == 0.4 and s.total_steps == 80 and s.pct_start == 0.25
    assert opt.lr == pytest.approx(0.4 / 25)
    s = build_schedule({"type": "one_cycle", "max_lr": 1.0}, opt, 80)
    assert s.max_lr == 1.0
    opt.lr = 0.3
    assert type(build_schedule(None, opt, 10)) is ConstantLR and opt.lr == 0.3
    assert type(build_schedule({"type": "none"}, opt, 10)) is ConstantLR


@pytest.mark.parametrize("cfg,match", [
    ({"type": "cosin"}, "unknown schedule type 'cosin'; valid types: constant, step, cosine, "
                        "onecycle.*did you mean 'cosine'"),
    ({"type": "cosine", "warmup": 5}, "'warmup' \\(did you mean 'warmup_steps'\\?\\).*valid keys: "
                                      "warmup_steps, min_lr"),
    ({"type": "cosine", "total_steps": 5}, "'total_steps'.*valid keys"),
    ({"type": "step"}, "step_size"),
    ({"type": "constant", "lr": 1}, "'lr'.*valid keys: none"),
])
def test_build_schedule_errors(cfg, match):
    opt = build_optimizer({"type": "sgd"}, Source())
    with pytest.raises((ValueError, TypeError), match=match):
        build_schedule(cfg, opt, total_steps=100)
