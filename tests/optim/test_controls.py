"""Gradient clipping, parameter groups, frozen parameters, Lookahead, weight EMA,
ReduceLROnPlateau and their config builders, each against a plain-numpy recount."""
import math

import numpy as np
import pytest

from cnnframe.optim import (SGD, AdamW, ExponentialMovingAverage, Lookahead, ReduceLROnPlateau,
                            StepLR, build_optimizer, build_schedule, clip_grad_norm,
                            clip_grad_value, global_norm)


class Source:
    """params / grads dicts, optionally with frozen_params, as a Model has them."""

    def __init__(self, seed=0, dtype=np.float64, frozen=()):
        rng = np.random.default_rng(seed)
        self.params = {"conv1.weight": rng.standard_normal((3, 2)).astype(dtype),
                       "conv1.bias": rng.standard_normal(3).astype(dtype),
                       "bn1.weight": rng.standard_normal(3).astype(dtype)}
        self.grads = {k: rng.standard_normal(v.shape).astype(dtype)
                      for k, v in self.params.items()}
        self.buffers = {"bn1.running_mean": rng.standard_normal(3).astype(dtype)}
        self.frozen_params = set(frozen)


# ----------------------------------------------------------------------------- clipping

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_scales_to_the_max_norm_or_leaves_alone(dtype, max_norm):
    src = Source(dtype=dtype)
    before = {k: g.astype(np.float64) for k, g in src.grads.items()}
    want_norm = math.sqrt(sum((g ** 2).sum() for g in before.values()))
    norm = clip_grad_norm(src.grads, max_norm)
    assert norm == pytest.approx(want_norm, rel=1e-6)
    scale = min(1.0, max_norm / (want_norm + 1e-6))
    for k, g in src.grads.items():
        np.testing.assert_allclose(g, before[k] * scale, rtol=1e-6)
        assert g.dtype == dtype
    assert global_norm(src.grads) == pytest.approx(min(want_norm, max_norm), rel=1e-5)


def test_clip_grad_value_and_bad_arguments():
    g = np.array([-3.0, -0.5, 0.2, 7.0])
    clip_grad_value([g], 1.0)
    np.testing.assert_array_equal(g, [-1.0, -0.5, 0.2, 1.0])
    for bad in (0, -1, math.inf):
        with pytest.raises(ValueError, match="max_norm"):
            clip_grad_norm([g], bad)
        with pytest.raises(ValueError, match="clip_value"):
            clip_grad_value([g], bad)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        clip_grad_norm([np.array([np.nan, 1.0])], 1.0)


def test_optimizer_clips_before_its_update():
    src, ref = Source(), Source()
    SGD(src, lr=0.1, clip_grad_value=0.5, clip_grad_norm=0.3).step()
    grads = {k: np.clip(g, -0.5, 0.5) for k, g in ref.grads.items()}
    norm = math.sqrt(sum((g ** 2).sum() for g in grads.values()))
    for k, p in ref.params.items():
        np.testing.assert_allclose(src.params[k], p - 0.1 * grads[k] * 0.3 / (norm + 1e-6),
                                   rtol=1e-12)


# ----------------------------------------------------------------------------- groups, frozen

def test_groups_set_weight_decay_and_lr_per_parameter_and_follow_the_schedule():
    src, ref = Source(), Source()
    opt = SGD(src, lr=0.1, weight_decay=0.01,
              groups=[{"params": "*.bias", "weight_decay": 0.0},
                      {"params": ["bn*"], "lr": 0.05}])
    sched = StepLR(opt, step_size=1, gamma=0.5)
    for lr in (0.1, 0.05):
        opt.step()
        sched.step()
        for k, p in ref.params.items():
            g = ref.grads[k]
            if k == "conv1.bias":
                p -= lr * g                           # no decay
            elif k == "bn1.weight":
                p -= lr / 0.1 * 0.05 * (g + 0.01 * p)  # half the lr, decayed
            else:
                p -= lr * (g + 0.01 * p)
            np.testing.assert_allclose(src.params[k], p, rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("groups,match", [
    ([{"params": "*.gamma"}], r"'\*.gamma' selects no parameter; the parameters are conv1"),
    ([{"params": "*.bias", "momentum": 0.9}], "unknown key.*'momentum'.*valid keys: params"),
    ([{"lr": 0.1}], "needs 'params'"),
    ({"params": "*.bias"}, "must be a list"),
])
def test_bad_groups_name_the_problem(groups, match):
    with pytest.raises(ValueError, match=match):
        SGD(Source(), lr=0.1, groups=groups)


@pytest.mark.parametrize("make", [lambda s: SGD(s, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda s: AdamW(s, lr=0.1)])
def test_frozen_parameters_get_no_update_decay_or_state(make):
    src = Source(frozen={"conv1.weight"})
    before = {k: v.copy() for k, v in src.params.items()}
    opt = make(src)
    opt.step()
    assert np.array_equal(src.params["conv1.weight"], before["conv1.weight"])
    assert not np.array_equal(src.params["conv1.bias"], before["conv1.bias"])
    assert "conv1.weight" not in opt.state and not any("conv1.weight" in k
                                                       for k in opt.state_dict())


# ----------------------------------------------------------------------------- Lookahead

def test_lookahead_matches_a_recount_and_resumes_exactly():
    src, ref = Source(), Source()
    opt = Lookahead(SGD(src, lr=0.1, momentum=0.9), k=3, alpha=0.5)
    # The recount: SGD with momentum, and every third step p = s = s + alpha (p - s).
    slow = {k: p.copy() for k, p in ref.params.items()}
    buf = {}
    for t in range(1, 8):
        if t == 5:  # a fresh wrapper from the state_dict continues identically
            state = opt.state_dict()
            src2 = Source()
            for k in src2.params:
                src2.params[k][...] = src.params[k]
            opt = Lookahead(SGD(src2, lr=0.1, momentum=0.9), k=3, alpha=0.5)
            opt.load_state_dict(state)
            src = src2
        opt.step()
        for k, p in ref.params.items():
            g = ref.grads[k]
            buf[k] = g.copy() if t == 1 else 0.9 * buf[k] + g
            p -= 0.1 * buf[k]
            if t % 3 == 0:
                slow[k] += 0.5 * (p - slow[k])
                p[...] = slow[k]
            np.testing.assert_allclose(src.params[k], p, rtol=1e-12, err_msg=f"{k} step {t}")
    assert opt.lr == 0.1
    opt.lr = 0.01
    assert opt.optimizer.lr == 0.01


def test_lookahead_bad_arguments_and_mismatched_state():
    with pytest.raises(ValueError, match="k must be"):
        Lookahead(SGD(Source(), lr=0.1), k=0)
    with pytest.raises(ValueError, match="alpha"):
        Lookahead(SGD(Source(), lr=0.1), alpha=1.5)
    with pytest.raises(TypeError, match="cnnframe.optim optimizer"):
        Lookahead(object())
    state = Lookahead(SGD(Source(), lr=0.1), k=3).state_dict()
    with pytest.raises(ValueError, match="k=3"):
        Lookahead(SGD(Source(), lr=0.1), k=5).load_state_dict(state)
    with pytest.raises(ValueError, match="missing 'lookahead_k'"):
        Lookahead(SGD(Source(), lr=0.1)).load_state_dict(SGD(Source(), lr=0.1).state_dict())


# ----------------------------------------------------------------------------- EMA

@pytest.mark.parametrize("warmup", [False, True])
@pytest.mark.parametrize("every", [1, 2])
def test_ema_matches_a_recount(warmup, every):
    src = Source()
    ema = ExponentialMovingAverage(src, decay=0.9, every_steps=every, warmup=warmup)
    avg = {k: v.copy() for k, v in {**src.params, **src.buffers}.items()}
    rng = np.random.default_rng(1)
    n = 0
    for t in range(1, 7):
        for v in (*src.params.values(), *src.buffers.values()):
            v += rng.standard_normal(v.shape)
        ema.update()
        if t % every == 0:
            d = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
            for k, v in {**src.params, **src.buffers}.items():
                avg[k] = d * avg[k] + (1 - d) * v
            n += 1
        for k in avg:
            np.testing.assert_allclose(ema.average[k], avg[k], rtol=1e-12, err_msg=k)


def test_ema_applied_swaps_and_restores_and_state_round_trips():
    src = Source()
    ema = ExponentialMovingAverage(src, decay=0.5)
    raw = {k: v.copy() for k, v in src.params.items()}
    for v in src.params.values():
        v += 1.0
    ema.update()
    with ema.applied():
        for k, v in src.params.items():
            np.testing.assert_allclose(v, raw[k] + 0.5)
    for k, v in src.params.items():
        np.testing.assert_array_equal(v, raw[k] + 1.0)
    other = ExponentialMovingAverage(Source(seed=3), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1
    for k in ema.average:
        np.testing.assert_array_equal(other.average[k], ema.average[k])
    with pytest.raises(ValueError, match="decay = 0.5, this average has decay = 0.9"):
        ExponentialMovingAverage(src, decay=0.9).load_state_dict(ema.state_dict())
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="decay"):
            ExponentialMovingAverage(src, decay=bad)


# ----------------------------------------------------------------------------- plateau

def test_reduce_lr_on_plateau_follows_keras_rules_and_resumes_exactly():
    values = [1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.9, 0.9, 0.9]
    # patience 2, cooldown 1, factor 0.5, min_lr 0.02, min_delta 0.01, by hand: best 1.0,
    # 0.9; waits 1, 2 -> 0.05 (cooldown); 0.8 best; waits 1, 2 -> 0.025 (cooldown: the
    # next epoch resets the wait, then counts 1); 2 -> max(0.0125, min_lr) = 0.02
    want = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.02]
    lrs = []
    opt = SGD(Source(), lr=0.1)
    sched = ReduceLROnPlateau(opt, monitor="val_loss", factor=0.5, patience=2, cooldown=1,
                              min_lr=0.02, min_delta=0.01)
    for i, v in enumerate(values):
        if i == 4:  # continue from a state_dict in a fresh schedule
            state = sched.state_dict()
            opt = SGD(Source(), lr=0.1)
            sched = ReduceLROnPlateau(opt, monitor="val_loss", factor=0.5, patience=2,
                                      cooldown=1, min_lr=0.02, min_delta=0.01)
            sched.load_state_dict(state)
        sched.step()  # per-step calls keep the lr
        lrs.append(sched.epoch_end({"val_loss": v, "loss": 0.0}))
        assert opt.lr == lrs[-1]
    assert lrs == pytest.approx(want)
    with pytest.raises(KeyError, match="'val_acc', which the epoch's results lack"):
        ReduceLROnPlateau(opt, monitor="val_acc").epoch_end({"loss": 1.0})


def test_plateau_in_max_mode_never_goes_below_min_lr():
    opt = SGD(Source(), lr=1.0)
    sched = ReduceLROnPlateau(opt, monitor="val_accuracy", factor=0.1, patience=1, min_lr=0.05)
    for _ in range(5):
        sched.epoch_end({"val_accuracy": 0.5})
    assert sched.tracker.maximize and opt.lr == 0.05


# ----------------------------------------------------------------------------- config

def test_build_optimizer_with_every_control():
    src = Source()
    opt = build_optimizer({"type": "sgd", "lr": 0.1, "clip_grad_norm": 1.0,
                           "clip_grad_value": 2.0, "lookahead": {"k": 4, "alpha": 0.6},
                           "groups": [{"params": "*.bias", "weight_decay": 0.0}]}, src)
    assert isinstance(opt, Lookahead) and (opt.k, opt.alpha) == (4, 0.6)
    inner = opt.optimizer
    assert (inner.clip_grad_norm, inner.clip_grad_value) == (1.0, 2.0)
    assert inner.groups.settings("conv1.bias") == (1.0, 0.0)
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'kk'.*lookahead.*valid keys: k, alpha"):
        build_optimizer({"type": "sgd", "lr": 0.1, "lookahead": {"kk": 3}}, src)
    with pytest.raises(ValueError, match="'clip_grad_nrom' \\(did you mean 'clip_grad_norm'"):
        build_optimizer({"type": "sgd", "lr": 0.1, "clip_grad_nrom": 3}, src)
    sched = build_schedule({"type": "plateau", "patience": 3, "monitor": "val_accuracy"},
                           opt, total_steps=100)
    assert isinstance(sched, ReduceLROnPlateau) and sched.patience == 3
    with pytest.raises(ValueError, match="valid keys: monitor, mode, factor, patience"):
        build_schedule({"type": "plateau", "patients": 3}, opt, total_steps=100)
