"""Shared test settings: hypothesis profiles and seeded randomness.

The default profile keeps the whole suite within a few minutes on 2 cores;
`--hypothesis-profile=thorough` (or HYPOTHESIS_PROFILE=thorough) runs far more examples.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import cnnframe

settings.register_profile("default", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None,
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
