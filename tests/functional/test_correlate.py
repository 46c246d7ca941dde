"""correlate2d (the CNN layers' 'convolution') vs convolve2d (the kernel flipped)."""
import numpy as np
import pytest

import cnnframe.functional as F
import cnnframe.reference as R


def test_textbook_example():
    x = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    k = [[0, 1], [2, 3]]
    # 0*0 + 1*1 + 3*2 + 4*3 = 19, and so on
    np.testing.assert_array_equal(F.correlate2d(x, k), [[19, 25], [37, 43]])


@pytest.mark.parametrize("xs,ks", [((5, 7), (2, 3)), ((4, 4), (4, 4)), ((6, 3), (1, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_definition(rng, xs, ks, dtype):
    x, k = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ks).astype(dtype)
    y = F.correlate2d(x, k)
    assert y.dtype == dtype and y.shape == (xs[0] - ks[0] + 1, xs[1] - ks[1] + 1)
    np.testing.assert_allclose(y, R.correlate2d(x, k), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(F.convolve2d(x, k), R.convolve2d(x, k), rtol=1e-5, atol=1e-5)


def test_convolution_is_correlation_with_flipped_kernel(rng):
    x, k = rng.standard_normal((6, 6)), rng.standard_normal((3, 2))
    np.testing.assert_allclose(F.convolve2d(x, k), F.correlate2d(x, k[::-1, ::-1]), rtol=1e-12)
    assert not np.allclose(F.convolve2d(x, k), F.correlate2d(x, k))


def test_convolution_commutes_and_correlation_does_not(rng):
    # With equal shapes, 'valid' mode is a single number and both orders are defined.
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    assert F.convolve2d(a, b)[0, 0] == pytest.approx(F.convolve2d(b, a)[0, 0])
    assert F.correlate2d(a, b)[0, 0] == pytest.approx(F.correlate2d(b, a)[0, 0])  # sum(a*b)
    # Zero-padded to full size, convolution commutes; correlation reverses the output.
    pa, pb = np.pad(a, 2), np.pad(b, 2)
    full_ab, full_ba = F.convolve2d(pa, b), F.convolve2d(pb, a)
    np.testing.assert_allclose(full_ab, full_ba, rtol=1e-12, atol=1e-12)
    corr_ab, corr_ba = F.correlate2d(pa, b), F.correlate2d(pb, a)
    assert not np.allclose(corr_ab, corr_ba)
    np.testing.assert_allclose(corr_ab, corr_ba[::-1, ::-1], rtol=1e-12, atol=1e-12)
