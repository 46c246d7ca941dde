"""Hypothesis fuzzing of every cnnframe.functional entry point (cases in fuzz/cases.py).

Each example is a valid call with random geometry, dtype, layout and values
(NaN/inf included) plus at most one mutation; the call must match
cnnframe.reference or raise TypeError/ValueError/MemoryError quickly with a
message.  HYPOTHESIS_PROFILE=thorough runs 1000 examples per test.
"""
import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnframe.functional as F
from fuzz.cases import OPS, HypothesisChooser, RandomChooser, build_case, run_case

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow in casts

OUTCOMES = collections.Counter()


@settings(max_examples=600)
@given(st.data())
def test_functional_contract(data):
    OUTCOMES[run_case(HypothesisChooser(data)).split(":")[0]] += 1


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=25)
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
