"""LR schedules at their key points (from the formulas), against a re-implementation of
PyTorch's OneCycleLR, and exact continuation after a state_dict round trip."""
import math

import numpy as np
import pytest

from cnnframe.optim import SGD, ConstantLR, CosineWarmup, OneCycle, PiecewiseLinear, StepLR
from cnnframe.optim.config import build_schedule


class Source:
    def __init__(self):
        self.params = {"w": np.ones(3)}
        self.grads = {"w": np.ones(3)}


def make_opt(lr=0.1):
    return SGD(Source(), lr=lr, momentum=0.9)


def sequence(sched, n):
    """lr used by optimizer steps 0..n-1 (the lr is read before each schedule.step())."""
    out = []
    for _ in range(n):
        out.append(sched.optimizer.lr)
        sched.step()
    return out


def test_step_lr_key_points():
    opt = make_opt(0.5)
    lrs = sequence(StepLR(opt, step_size=10, gamma=0.3), 31)
    assert lrs[0] == lrs[9] == 0.5
    assert lrs[10] == pytest.approx(0.15) and lrs[19] == pytest.approx(0.15)
    assert lrs[20] == pytest.approx(0.5 * 0.09)
    assert lrs[30] == pytest.approx(0.5 * 0.3 ** 3)


def test_cosine_warmup_key_points():
    base, lo, warm, total = 0.2, 0.01, 10, 110
    opt = make_opt(base)
    sched = CosineWarmup(opt, total_steps=total, warmup_steps=warm, min_lr=lo)
    assert opt.lr == 0.0                          # set at construction: step 0 of the warm-up
    lrs = sequence(sched, total + 5)
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(base / 2)      # linear warm-up
    assert lrs[warm] == pytest.approx(base)       # warm-up end: the peak
    assert lrs[warm + 50] == pytest.approx((base + lo) / 2)    # half-way through the cosine
    assert lrs[warm + 25] == pytest.approx(lo + (base - lo) * (1 + math.cos(math.pi / 4)) / 2)
    assert lrs[total] == pytest.approx(lo) and lrs[-1] == pytest.approx(lo)
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:]))
    assert all(a < b for a, b in zip(lrs[:warm], lrs[1:warm + 1]))


def test_cosine_without_warmup_starts_at_base():
    opt = make_opt(0.3)
    lrs = sequence(CosineWarmup(opt, total_steps=4), 5)
    np.testing.assert_allclose(lrs, [0.3, 0.3 * (1 + math.cos(math.pi / 4)) / 2, 0.15,
                                     0.3 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.0], atol=1e-15)


def pytorch_onecycle(max_lr, total, pct_start, div, final_div):
    """torch.optim.lr_scheduler.OneCycleLR.get_lr, anneal_strategy='cos', three_phase=False,
    as in its source: phases end at pct_start*total - 1 and total - 1."""
    initial = max_lr / div
    final = initial / final_div
    phases = [(float(pct_start * total) - 1, initial, max_lr), (total - 1, max_lr, final)]
    out = []
    for step in range(total):
        start_step = 0
        for i, (end_step, a, b) in enumerate(phases):
            if step <= end_step or i == len(phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                out.append(b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1))
                break
            start_step = end_step
    return out


@pytest.mark.parametrize("total,pct", [(100, 0.3), (37, 0.25), (1000, 0.1), (10, 0.5)])
def test_one_cycle_matches_pytorch_algorithm(total, pct):
    opt = make_opt(123.0)                          # overwritten by the schedule
    sched = OneCycle(opt, max_lr=0.4, total_steps=total, pct_start=pct, div_factor=20,
                     final_div_factor=100)
    lrs = sequence(sched, total)
    np.testing.assert_allclose(lrs, pytorch_onecycle(0.4, total, pct, 20, 100), rtol=1e-12)


def test_one_cycle_key_points_and_clamp():
    opt = make_opt()
    sched = OneCycle(opt, max_lr=1.0, total_steps=100, pct_start=0.2)   # peak at step 19
    assert opt.lr == pytest.approx(1.0 / 25)
    lrs = sequence(sched, 110)
    assert lrs[0] == pytest.approx(1.0 / 25)
    assert max(lrs) == lrs[19] == pytest.approx(1.0)
    assert lrs[9] < lrs[10] and lrs[10] > (1 / 25 + 1) / 2 > lrs[9]   # half-way up at 9.5
    final = 1.0 / 25 / 1e4
    assert lrs[99] == pytest.approx(final)
    assert lrs[105] == lrs[99]                     # past total_steps: stays at the final lr
    assert lrs[59] == pytest.approx(final + (1 - final) / 2)    # half-way down: (19 + 99) / 2
    assert all(a > b for a, b in zip(lrs[19:99], lrs[20:100]))


def test_constant_schedule():
    opt = make_opt(0.07)
    assert sequence(ConstantLR(opt), 5) == [0.07] * 5


@pytest.mark.parametrize("factory", [
    lambda o: StepLR(o, step_size=7, gamma=0.5),
    lambda o: CosineWarmup(o, total_steps=60, warmup_steps=9, min_lr=1e-4),
    lambda o: OneCycle(o, max_lr=0.5, total_steps=60),
    lambda o: PiecewiseLinear(o, 60, [0.0, 0.23, 1.0], [0.2, 1.0, 0.07]),
])
def test_state_dict_resume_gives_the_same_sequence(tmp_path, factory):
    full = sequence(factory(make_opt(0.2)), 60)

    opt = make_opt(0.2)
    sched = factory(opt)
    first = sequence(sched, 23)
    np.savez(tmp_path / "ckpt.npz", **{f"opt.{k}": v for k, v in opt.state_dict().items()},
             **{f"sched.{k}": v for k, v in sched.state_dict().items()})

    # resume: a new optimizer whose constructor lr differs, and the schedule built first
    opt2 = make_opt(0.9)
    sched2 = factory(opt2)
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        opt2.load_state_dict({k[4:]: f[k] for k in f.files if k.startswith("opt.")})
        sched2.load_state_dict({k[6:]: f[k] for k in f.files if k.startswith("sched.")})
    rest = sequence(sched2, 60 - 23)
    assert first + rest == full


def test_schedule_state_dict_errors():
    sched = StepLR(make_opt(), step_size=3)
    with pytest.raises(ValueError, match="unknown.*'foo'"):
        sched.load_state_dict({**sched.state_dict(), "foo": 1})
    with pytest.raises(ValueError, match="missing.*'last_step'"):
        sched.load_state_dict({"base_lr": 0.1})


@pytest.mark.parametrize("ctor,match", [
    (lambda o: StepLR(o, step_size=0), "step_size"),
    (lambda o: StepLR(o, step_size=2.5), "step_size"),
    (lambda o: CosineWarmup(o, total_steps=10, warmup_steps=10), "warmup_steps"),
    (lambda o: CosineWarmup(o, total_steps=0), "total_steps"),
    (lambda o: CosineWarmup(o, total_steps=10, min_lr=-1), "min_lr"),
    (lambda o: OneCycle(o, max_lr=0.1, total_steps=10, pct_start=1.0), "pct_start"),
    (lambda o: OneCycle(o, max_lr=0.1, total_steps=1), "total_steps"),
    (lambda o: OneCycle(o, max_lr=0.1, total_steps=10, div_factor=0), "div_factor"),
    (lambda o: PiecewiseLinear(o, 10, [0.0, 0.5], [1.0]), "same non-zero length"),
    (lambda o: PiecewiseLinear(o, 10, [0.1, 0.5], [1.0, 0.5]), "increase strictly from 0"),
    (lambda o: PiecewiseLinear(o, 10, [0.0, 0.5, 0.5], [1.0, 0.5, 0.1]), "increase strictly"),
    (lambda o: PiecewiseLinear(o, 10, [0.0, 1.5], [1.0, 0.5]), "fractions"),
    (lambda o: PiecewiseLinear(o, 10, [0.0, 1.0], [1.0, -0.5]), "factors"),
    (lambda o: PiecewiseLinear(o, 0), "total_steps"),
])
def test_schedule_validation(ctor, match):
    with pytest.raises(ValueError, match=match):
        ctor(make_opt())


def test_get_lr_matches_optimizer_lr_and_step_returns_it():
    opt = make_opt(0.1)
    sched = CosineWarmup(opt, total_steps=20, warmup_steps=4)
    for _ in range(10):
        assert sched.get_lr() == opt.lr
        assert sched.step() == opt.lr


def test_piecewise_linear_is_airbenchs_warmup_and_decay():
    """lr factor 0.2 -> 1 linearly over the first 23% of the steps, then -> 0.07 at the end
    (airbench's get_lr, from its formula), and the last factor after the run."""
    total, warm = 200, 46
    lrs = sequence(PiecewiseLinear(make_opt(2.0), total, [0.0, 0.23, 1.0], [0.2, 1.0, 0.07]),
                   total + 3)
    for t in (0, 10, warm, 120, total - 1):
        q = t / warm if t < warm else (t - warm) / (total - warm)
        expected = 0.2 + 0.8 * q if t < warm else 1.0 - 0.93 * q
        assert lrs[t] == pytest.approx(2.0 * expected, rel=1e-12)
    assert lrs[total:] == [pytest.approx(0.14)] * 3


def test_piecewise_linear_defaults_to_a_linear_decay_and_builds_from_config():
    assert sequence(PiecewiseLinear(make_opt(1.0), 4), 5) == [1.0, 0.75, 0.5, 0.25, 0.0]
    opt = make_opt(0.5)
    sched = build_schedule({"type": "linear", "fractions": [0, 0.5, 1], "factors": [0, 1, 0]},
                           opt, total_steps=10)
    assert isinstance(sched, PiecewiseLinear)
    assert sequence(sched, 6) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
