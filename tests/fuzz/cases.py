"""Fuzz cases for every cnnframe.functional entry point, shared by hypothesis and atheris.

A case is built from a *chooser* (``int(lo, hi)``, ``choice(seq)``, ``bool()``; see
fuzz/case_tools.py), so the same generator runs under hypothesis and under atheris.
The generators live with their ops: fuzz/conv_pool_cases.py (conv, pooling,
correlate/convolve) and fuzz/norm_cases.py (batch norm, ReLU).

Each case starts from a valid call with random geometry and then applies at most
one *mutation* (bad dtype, byte order, layout, dimensions, zero-size axis, NaN/inf
values, bad or huge geometry, wrong gradient shape ...).  `run_case` executes it
and checks the contract every functional op promises (README: bad input gets a clear
exception, nothing crashes):

- the call returns a result equal to ``cnnframe.reference`` (NaN where the reference
  has NaN) when the arguments are valid, or
- it raises TypeError / ValueError / MemoryError with a message, and the mutation
  says which of those are acceptable;
- within a time limit (huge sizes must be refused, not attempted).

It returns the outcome label ("ok:<op>" or "<Error>:<op>:<mutation>"), so a runner can
count what it exercised.
"""
import time

import numpy as np

from cnnframe import _threads
from fuzz.case_tools import (BAD_DTYPES, ContractViolation, HypothesisChooser,  # noqa: F401
                             RandomChooser, _relayout)
from fuzz.conv_pool_cases import (CONV_POOL_OPS, build_conv_pool_case, call_conv_pool,
                                  check_conv_pool_result)
from fuzz.norm_cases import NORM_OPS, build_norm_case, call_norm, check_norm_result

OPS = CONV_POOL_OPS + NORM_OPS
TIME_LIMIT = 5.0  # seconds one call may take (valid cases here are tiny)


def build_case(c):
    """Return (op name, arrays, kwargs, mutation name, allowed error types)."""
    op = c.choice(OPS)
    rng = np.random.default_rng(c.int(0, 2**16))
    if op in NORM_OPS:
        return build_norm_case(c, rng, op)
    return build_conv_pool_case(c, rng, op)


def _call(op, arrays, kw, split_threads=False):
    if op not in NORM_OPS:
        return call_conv_pool(op, arrays, kw)
    serial_work = _threads.SERIAL_WORK
    if split_threads:  # every call as large as to be split between the threads
        _threads.SERIAL_WORK = 0
    try:
        return call_norm(op, arrays, kw)
    finally:
        _threads.SERIAL_WORK = serial_work


def _check_result(op, arrays, kw, result):
    """Raise ContractViolation unless a valid call's `result` matches the reference."""
    if op in NORM_OPS:
        return check_norm_result(op, arrays, kw, result)
    return check_conv_pool_result(op, arrays, kw, result)


def _snapshots(arrays):
    """The bytes of every input array a call could write to (not the terabyte broadcasts)."""
    return {k: v.tobytes() for k, v in arrays.items()
            if isinstance(v, np.ndarray) and v.size <= 1 << 20 and v.dtype.kind != "O"}


def _check_unchanged(op, mutation, arrays, before):
    for k, raw in before.items():
        if arrays[k].tobytes() != raw:
            raise ContractViolation(f"{op} [{mutation}] changed its input {k}")


def run_case(c):
    """Build one case from chooser `c`, run it and check the contract; return its outcome."""
    op, arrays, kw, mutation, allowed = build_case(c)
    split_threads = op in NORM_OPS and c.bool()
    before = _snapshots(arrays) if op in NORM_OPS else {}
    t0 = time.perf_counter()
    try:
        result = _call(op, arrays, kw, split_threads)
    except (TypeError, ValueError, MemoryError) as exc:
        elapsed = time.perf_counter() - t0
        if elapsed > TIME_LIMIT:
            raise ContractViolation(f"{op} [{mutation}] took {elapsed:.1f}s to fail") from exc
        if not str(exc):
            raise ContractViolation(f"{op} [{mutation}] raised {type(exc).__name__} "
                                    "without a message") from exc
        if not any(isinstance(exc, t) for t in allowed if isinstance(t, type)):
            raise ContractViolation(f"{op} [{mutation}] raised {type(exc).__name__}: {exc}; "
                                    f"expected {allowed or 'a result'}") from exc
        if op in NORM_OPS and not isinstance(exc, MemoryError) and op not in str(exc):
            raise ContractViolation(f"{op} [{mutation}]: the message does not say which "
                                    f"function refused the call: {type(exc).__name__}: "
                                    f"{exc}") from exc
        _check_unchanged(op, mutation, arrays, before)  # (nothing half-updated either)
        return f"{type(exc).__name__}:{op}:{mutation}"
    except Exception as exc:  # any other exception breaks the contract
        raise ContractViolation(f"{op} [{mutation}] raised {type(exc).__name__}: {exc}; "
                                f"expected {allowed or 'a result'}") from exc
    _check_unchanged(op, mutation, arrays, before)
    elapsed = time.perf_counter() - t0
    if elapsed > TIME_LIMIT:
        raise ContractViolation(f"{op} [{mutation}] took {elapsed:.1f}s")
    if allowed and "maybe-ok" not in allowed:
        raise ContractViolation(f"{op} [{mutation}] returned instead of raising {allowed}")
    if not allowed:  # a valid call: compare with the reference
        _check_result(op, arrays, kw, result)
    else:  # an empty batch: the result is empty too (conv weight/bias gradients are zero)
        results = result if isinstance(result, tuple) else (result,)
        if op == "conv2d_backward":
            if any(np.any(g != 0) for g in results[1:]):
                raise ContractViolation(f"{op} [{mutation}]: nonzero weight gradient for an "
                                        "empty batch")
            results = results[:1]
        for r in results:
            if r is not None and r.shape[0] != 0:
                raise ContractViolation(f"{op} [{mutation}]: result of shape {r.shape} "
                                        "for an empty batch")
    return f"ok:{op}:{mutation}"
