"""The one argument-validation module (cnnframe.functional._args) and conv_output_size."""
import numpy as np
import pytest

import cnnframe
import cnnframe.functional as F
import cnnframe.layers.base as base
import cnnframe.functional.normalization as normalization
from cnnframe.functional import _args


@pytest.mark.parametrize("args,kwargs,expected", [
    # hand-derived: floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1
    ((32, 3), {}, 30),                                   # 32 - 3 + 1
    ((32, 3), dict(padding=1), 32),                      # "same"
    ((32, 3), dict(stride=2, padding=1), 16),            # floor(31 / 2) + 1
    ((7, 2), dict(stride=2), 3),                         # odd size drops the last column
    ((10, 3), dict(dilation=2), 6),                      # dilated kernel spans 5
    ((5, 7), {}, -1),                                    # kernel larger than the input
    (((32, 20), 5), dict(padding=(2, 0)), (32, 16)),     # pairs give pairs
    ((9, (3, 1)), dict(stride=(2, 1)), (4, 9)),
    ((1, 1), {}, 1),
])
def test_conv_output_size_hand_derived(args, kwargs, expected):
    assert cnnframe.conv_output_size(*args, **kwargs) == expected


def test_conv_output_size_is_one_public_function():
    assert cnnframe.conv_output_size is F.conv_output_size
    assert "conv_output_size" in cnnframe.__all__ and "conv_output_size" in F.__all__


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(input_size=0), ValueError, r"input_size must be >= 1, got \(0, 0\)"),
    (dict(kernel_size=(3, 0)), ValueError, r"kernel_size must be >= 1, got \(3, 0\)"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(dilation=1.5), TypeError, "dilation must be an int or a pair of ints, got 1.5"),
    (dict(padding=(1, 2, 3)), TypeError, "padding must be an int or a pair of ints"),
    (dict(stride=True), TypeError, "stride must be an int or a pair of ints, got True"),
])
def test_conv_output_size_refuses_bad_arguments(kwargs, exc, pattern):
    args = dict(input_size=8, kernel_size=3) | kwargs
    with pytest.raises(exc, match=pattern):
        F.conv_output_size(**args)


def test_layers_and_batch_norm_share_the_functional_checks():
    """One definition of each check: the layer helpers plugins import from
    cnnframe.layers.base, and batch norm's, are the functional module's."""
    assert base.FLOAT_DTYPES is _args.FLOAT_DTYPES
    for name in ("check_int", "check_pair", "check_float", "check_seed", "as_shape"):
        assert getattr(base, name) is getattr(_args, name), name
    for name in ("float_ndarray", "check_float", "check_flag", "same_dtype"):
        assert getattr(normalization, name) is getattr(_args, name), name


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: base.check_float(10**400, "lr", 0.0, layer="dropout"), ValueError,
     "dropout: lr must be a finite number, got an int of 1329 bits"),
    (lambda: base.check_float(np.nan, "rate", 0.0, 1.0, layer="dropout"), ValueError,
     r"dropout: rate must be a finite number in \[0.0, 1.0\], got nan"),
    (lambda: base.check_int(2.0, "in_channels", 1, "conv2d"), TypeError,
     "conv2d: in_channels must be an int, got 2.0"),
    (lambda: base.check_int(-1, "seed", 0), ValueError, "^seed must be >= 0, got -1"),
    (lambda: base.check_pair([1, 2, 3], "stride", 1, "max_pool2d"), ValueError,
     r"max_pool2d: stride must be an int or a pair \[h, w\]"),
    (lambda: base.as_shape([3, 0], layer="flatten"), ValueError,
     "flatten: input_shape must be a list of ints >= 1"),
])
def test_checks_name_the_argument(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_check_pair_keeps_the_json_form():
    assert base.check_pair(3, "k", 1) == (3, (3, 3))
    assert base.check_pair((3, 5), "k", 1) == ([3, 5], (3, 5))
