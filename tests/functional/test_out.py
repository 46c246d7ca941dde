"""Writing results into caller-owned arrays (out=), as layers do to reuse memory."""
import numpy as np
import pytest

import cnnframe.functional as F


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_receives_the_same_results(rng, dtype):
    x = rng.standard_normal((3, 4, 8, 8)).astype(dtype)
    w = rng.standard_normal((5, 4, 3, 3)).astype(dtype)
    y = F.conv2d(x, w, padding=1)
    out = np.full_like(y, np.nan)
    assert F.conv2d(x, w, padding=1, out=out) is out
    np.testing.assert_array_equal(out, y)

    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = F.conv2d_backward(x, w, gy, padding=1)[0]
    out = np.full_like(x, np.nan)
    assert F.conv2d_backward(x, w, gy, padding=1, out=out)[0] is out
    np.testing.assert_array_equal(out, gx)

    p, argmax = F.max_pool2d(x, 2)
    out, arg_out = np.full_like(p, np.nan), np.full(p.shape, -1, np.int64)
    got, got_arg = F.max_pool2d(x, 2, out=out, argmax_out=arg_out)
    assert got is out and got_arg is arg_out
    np.testing.assert_array_equal(out, p)
    np.testing.assert_array_equal(arg_out, argmax)
    out = np.full_like(x, np.nan)
    assert F.max_pool2d_backward(p, argmax, x.shape, out=out) is out
    np.testing.assert_array_equal(out, F.max_pool2d_backward(p, argmax, x.shape))

    a = F.avg_pool2d(x, 3, stride=1, padding=1)
    out = np.full_like(a, np.nan)
    assert F.avg_pool2d(x, 3, stride=1, padding=1, out=out) is out
    np.testing.assert_array_equal(out, a)
    out = np.full_like(x, np.nan)
    assert F.avg_pool2d_backward(a, x.shape, 3, 1, 1, out=out) is out
    np.testing.assert_array_equal(out, F.avg_pool2d_backward(a, x.shape, 3, 1, 1))


def test_bad_out_is_refused(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"out \(for the output\) must have shape \(2, 4, 4, 4\)"):
        F.conv2d(x, w, out=np.empty((2, 4, 4, 5), np.float32))
    with pytest.raises(ValueError, match="dtype float32"):
        F.conv2d(x, w, out=np.empty((2, 4, 4, 4), np.float64))
    with pytest.raises(ValueError, match="C-contiguous and writeable"):
        F.conv2d(x, w, out=np.empty((2, 4, 4, 8), np.float32)[..., ::2])
    with pytest.raises(TypeError, match="must be a numpy ndarray"):
        F.conv2d(x, w, out=[0.0])
    with pytest.raises(ValueError, match="must not overlap the inputs"):
        F.conv2d(x, np.ones((3, 3, 1, 1), np.float32), out=x)  # 1x1 conv onto its own input
    with pytest.raises(ValueError, match=r"argmax\) must have shape"):
        F.max_pool2d(x, 2, argmax_out=np.empty((2, 3, 3, 2), np.int64))
