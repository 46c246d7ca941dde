"""Example counts that follow the active hypothesis profile.

The profiles (tests/conftest.py) differ in ``max_examples``: 40 for ``default``,
1000 for ``thorough``.  A test that needs a count of its own -- fewer examples for
slow finite-difference checks, more for the fuzzers -- must not write a fixed
``@settings(max_examples=N)``: that would override every profile.  It writes

    @settings(max_examples=scaled(N))

instead: N examples under the default profile, and N times the active profile's
factor (``thorough``: 1000 / 40 = 25x) under any other.  Loops that count seeds
by hand use the same function.
"""
from hypothesis import settings

# max_examples of the "default" profile in tests/conftest.py: the unit the counts are given in
DEFAULT_MAX_EXAMPLES = 40


def profile_factor():
    """How many times more examples the active profile runs than the default one."""
    return settings.default.max_examples / DEFAULT_MAX_EXAMPLES


def scaled(base):
    """`base` examples under the default profile, scaled by the active profile's factor.

    Call it where the decorator is applied (at import time of the test module), after
    the profile is loaded: pytest loads conftest.py and ``--hypothesis-profile`` first.
    """
    return max(1, round(base * profile_factor()))
