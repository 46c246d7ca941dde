"""Shared test settings: hypothesis profiles and seeded randomness.

The default profile keeps the whole suite within a few minutes on 2 cores;
`--hypothesis-profile=thorough` (or HYPOTHESIS_PROFILE=thorough) runs 25 times as many
examples in every hypothesis test, including those with a count of their own
(``@settings(max_examples=scaled(N))``, see tests/hypothesis_budget.py).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import cnnframe
from hypothesis_budget import DEFAULT_MAX_EXAMPLES

settings.register_profile("default", max_examples=DEFAULT_MAX_EXAMPLES, deadline=None,
                          derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=25 * DEFAULT_MAX_EXAMPLES, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng():
    """A seeded numpy Generator, fresh for each test."""
    return np.random.default_rng(1234)


@pytest.fixture(params=cnnframe.available_isas())
def isa(request):
    """Each instruction set this CPU runs ("avx512", "avx2", "generic"), forced for the test
    with cnnframe.use_isa: kernel tests take it so that every machine exercises every path
    it can run, not only its best."""
    with cnnframe.use_isa(request.param):
        yield request.param
