"""Huge sizes are refused quickly with ValueError/MemoryError naming the sizes, never attempted.

Arrays here are np.broadcast_to views: terabytes of shape with no memory behind them.
"""
import time

import numpy as np
import pytest

import cnnframe.functional as F
from cnnframe.functional import _args

X = np.ones((1, 1, 4, 4), np.float32)


def huge(shape, dtype=np.float32):
    return np.broadcast_to(np.zeros((), dtype), shape)


def refused_fast(fn, exc, match):
    t0 = time.perf_counter()
    with pytest.raises(exc, match=match):
        fn()
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("kh", [2**31 - 1, 2**31 + 1])
def test_conv_kernel_near_2_31_is_refused_before_any_copy(kh):
    # The weight is checked against the input before it is copied to a contiguous
    # array: copying 8 GiB of broadcast zeros first took 23 s.
    refused_fast(lambda: F.conv2d(X, huge((1, 1, kh, 1))), ValueError,
                 rf"output size would be .*kernel {kh} x 1")
    refused_fast(lambda: F.conv2d_backward(X, huge((1, 1, kh, 1)), X), ValueError,
                 "output size would be")


@pytest.mark.parametrize("shape", [(2**20, 1, 2**10, 2**10), (1, 1, 2**20, 2**20)])
def test_conv_huge_input_fails_fast_with_memory_error(shape):
    refused_fast(lambda: F.conv2d(huge(shape), np.ones((1, 1, 1, 1), np.float32)),
                 MemoryError, "TiB")


@pytest.mark.parametrize("fn", [
    lambda s: F.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32),
                                    np.zeros((1, 1, 1, 1), np.int64), s),
    lambda s: F.global_avg_pool2d_backward(np.ones((1, 1), np.float32), s),
])
def test_backward_to_a_huge_input_shape_names_the_sizes(fn):
    refused_fast(lambda: fn((1, 1, 2**30, 2**30)), MemoryError,
                 r"grad_x of shape \(1, 1, 1073741824, 1073741824\) needs .* GiB")


def test_output_beyond_ram_is_a_memory_error_not_an_oom_kill(monkeypatch):
    # Pretend the machine has 1 MiB: a 4 MiB output must be refused before the kernel runs.
    monkeypatch.setattr(_args, "PHYSICAL_MEMORY", 1 << 20)
    x = np.ones((1, 1, 1024, 1024), np.float32)
    refused_fast(lambda: F.conv2d(x, np.ones((1, 1, 1, 1), np.float32)), MemoryError,
                 r"output of shape \(1, 1, 1024, 1024\) needs 0\.0 GiB")
    refused_fast(lambda: F.avg_pool2d(x, 1), MemoryError, "avg_pool2d")
    refused_fast(lambda: F.max_pool2d(x, 1), MemoryError, "max_pool2d")


@pytest.mark.parametrize("value", [2**31, 2**40, 2**63])
@pytest.mark.parametrize("arg", ["stride", "padding", "dilation"])
def test_huge_geometry_values_are_value_errors(arg, value):
    refused_fast(lambda: F.conv2d(X, np.ones((1, 1, 2, 2), np.float32), **{arg: value}),
                 ValueError, f"{arg} is too large")


def test_input_shape_of_bools_is_refused():
    with pytest.raises(ValueError, match="input_shape must be"):
        F.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32),
                              np.zeros((1, 1, 1, 1), np.int64), (1, 1, 1, True))


def test_non_native_byte_order_weight_is_accepted_with_native_input():
    w = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    y = F.conv2d(X.astype(">f4"), w.astype(">f4"))
    np.testing.assert_array_equal(y, F.conv2d(X, w))
    assert y.dtype == np.float32 and y.dtype.isnative
