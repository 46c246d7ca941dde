"""Hypothesis fuzzing of every cnnframe.functional entry point (cases in fuzz/cases.py).

Each example is a valid call with random geometry, dtype, layout and values
(NaN/inf included) plus at most one mutation; the call must match
cnnframe.reference or raise TypeError/ValueError/MemoryError quickly with a
message.  The default profile runs 600 examples of the mixed contract test and 25
per op; the thorough profile 25 times as many (15,000 and 625, see
tests/hypothesis_budget.py).
"""
import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnframe.functional as F
from hypothesis_budget import scaled
from fuzz.cases import (NORM_OPS, OPS, ContractViolation, HypothesisChooser, RandomChooser,
                        _call, _check_result, build_case, run_case)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow in casts

OUTCOMES = collections.Counter()


@settings(max_examples=scaled(600))
@given(st.data())
def test_functional_contract(data):
    OUTCOMES[run_case(HypothesisChooser(data)).split(":")[0]] += 1


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=scaled(25))
@given(data=st.data())
def test_each_op_valid_calls_match_reference(op, data):
    class Fixed(HypothesisChooser):
        """Pins the op and forbids error mutations: every call must succeed."""
        calls = 0

        def choice(self, seq):
            if seq is OPS:
                return op
            if "huge_array" in seq:
                return self._data.draw(st.sampled_from(["none", "layout"]))
            return super().choice(seq)

    assert run_case(Fixed(data)).startswith("ok:")


def test_random_cases_cover_every_op_and_outcome():
    seen = collections.Counter()
    for seed in range(1000):
        seen[run_case(RandomChooser(seed))] += 1
    ops = {key.split(":")[1] for key in seen}
    assert ops == set(OPS)
    kinds = {key.split(":")[0] for key in seen}
    assert {"ok", "TypeError", "ValueError", "MemoryError"} <= kinds, kinds
    for op in NORM_OPS:  # each new op both computes and refuses
        kinds = {key.split(":")[0] for key in seen if key.split(":")[1] == op}
        assert {"ok", "TypeError", "ValueError"} <= kinds, (op, kinds)


def test_random_cases_exercise_the_fused_relu():
    """batch_norm_train/eval(relu=True) and batch_norm_backward(relu_y=...) are fuzzed too."""
    fused = collections.Counter()
    for seed in range(1000):
        op, arrays, kw, _, _ = build_case(RandomChooser(seed))
        if op.startswith("batch_norm") and (kw.get("relu") is True or "relu_y" in arrays):
            fused[(op, run_case(RandomChooser(seed)).split(":")[0])] += 1
    for op in ("batch_norm_train", "batch_norm_eval", "batch_norm_backward"):
        assert fused[(op, "ok")] >= 3 and fused[(op, "TypeError")] + fused[(op, "ValueError")], \
            (op, fused)


def test_build_case_is_deterministic_for_a_seed():
    a, b = build_case(RandomChooser(7)), build_case(RandomChooser(7))
    assert a[0] == b[0] and a[3] == b[3]
    for k in a[1]:
        np.testing.assert_array_equal(np.asarray(a[1][k]), np.asarray(b[1][k]))


def test_scratch_limit_memory_error_names_the_sizes():
    x = np.ones((2, 8, 32, 32), np.float32)
    w = np.ones((4, 8, 3, 3), np.float32)
    F.set_scratch_limit(1 << 12)
    try:
        with pytest.raises(MemoryError,
                           match=r"(conv2d im2col|direct conv2d band): needs \d+ x \d+ x 4 bytes"):
            F.conv2d(x, w)
        with pytest.raises(MemoryError, match="set_scratch_limit"):
            F.conv2d_backward(x, w, np.ones((2, 4, 30, 30), np.float32))
    finally:
        F.set_scratch_limit(1 << 30)
    assert F.conv2d(x, w).shape == (2, 4, 30, 30)
    for bad in (0, -1, 1.5, "1"):
        with pytest.raises(ValueError):
            F.set_scratch_limit(bad)


def _plausible_bugs():
    """name -> (op, arrays, kw, the result a plausible bug would return): all must be caught."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 5)) * 2 + 10  # float64; channel means far from 0
    w, b = rng.uniform(0.5, 2, 3), rng.uniform(-1, 1, 3)
    g = rng.standard_normal(x.shape)
    col, m, eps = (-1, 1), x.size // 3, 1e-5
    _, mean, invstd = F.batch_norm_train(x, w, b)
    var = 1 / invstd**2 - eps
    unbiased_invstd = 1 / np.sqrt(var * m / (m - 1) + eps)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    gx, gw, gb = F.batch_norm_backward(g, x, w, mean, invstd)
    gx_eval = F.batch_norm_backward(g, x, w, mean, invstd, training=False)[0]
    x32 = np.array([[np.nan, -1.0, 2.0, 0.0]], np.float32)
    y32 = np.array([[0.0, 1.0, 0.0, 3.0]], np.float32)
    g32 = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    bn = {"x": x, "weight": w, "bias": b}
    return {
        "unbiased variance in y": (
            "batch_norm_train", bn, {},
            ((x - mean.reshape(col)) * (w * unbiased_invstd).reshape(col) + b.reshape(col),
             mean, unbiased_invstd)),
        "running_var updated with the biased variance": (
            "batch_norm_train", {"x": x, "running_mean": rm.copy(), "running_var": rv.copy()}, {},
            (F.batch_norm_train(x)[0], mean, invstd, 0.9 * rm + 0.1 * mean, 0.9 * rv + 0.1 * var)),
        "eval without eps": (
            "batch_norm_eval", dict(bn, running_mean=rm, running_var=rv), {},
            (x - rm.reshape(col)) * (w / np.sqrt(rv)).reshape(col) + b.reshape(col)),
        "training backward by the eval formula": (
            "batch_norm_backward", {"grad_y": g, "x": x, "weight": w, "mean": mean,
                                    "invstd": invstd}, {}, (gx_eval, gw, gb)),
        "grad_weight and grad_bias swapped": (
            "batch_norm_backward", {"grad_y": g, "x": x, "weight": w, "mean": mean,
                                    "invstd": invstd}, {}, (gx, gb, gw)),
        "relu(NaN) = 0": ("relu", {"x": x32}, {}, np.array([[0.0, 0.0, 2.0, 0.0]], np.float32)),
        "relu_backward passes the gradient where y == 0": (
            "relu_backward", {"grad_y": g32, "y": y32}, {}, g32.copy()),
        "out= not used": ("relu", {"x": x32}, {"out": np.empty_like(x32)}, F.relu(x32)),
    }


@pytest.mark.parametrize("bug", sorted(_plausible_bugs()))
def test_norm_checks_catch_plausible_bugs(bug):
    """The batch-norm/ReLU result checks can fail: they pass the real results of a call
    and refuse what a plausible bug would return (tolerances are not too loose)."""
    op, arrays, kw, wrong = _plausible_bugs()[bug]
    _check_result(op, arrays, kw, _call(op, arrays, kw))
    with pytest.raises(ContractViolation):
        _check_result(op, arrays, kw, wrong)


@pytest.mark.parametrize("call", [
    lambda x: F.batch_norm_train(x, eps=10**400),
    lambda x: F.batch_norm_train(x, momentum=10**400),
    lambda x: F.batch_norm_eval(x, None, None, np.zeros(3), np.ones(3), eps=10**400),
], ids=["train-eps", "train-momentum", "eval-eps"])
def test_ints_beyond_float_range_are_refused_with_value_error(call):
    """Found by the fuzzer: float(10**400) raised OverflowError instead of ValueError."""
    with pytest.raises(ValueError, match=r"batch_norm_(train|eval): (eps|momentum) must be"):
        call(np.ones((4, 3)))
