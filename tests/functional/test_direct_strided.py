"""The direct kernels on strided and dilated convs (tap copies, cnnframe_ext/src/direct.h:
dc_copy_taps), on every instruction-set path, against the reference: the forward pass with
every micro-kernel and band height, the weight gradient from the same copies, and the input
gradient by stride x stride phases of stride-1 direct convs."""
import numpy as np
import pytest

import cnnframe
import cnnframe.reference as R
from cnnframe.functional import _direct
from cnnframe.functional._direct_strided import (direct_conv2d_strided,
                                                 direct_conv2d_strided_grad_weight,
                                                 direct_conv2d_strided_grad_x)

# (N, C, H, F, kernel, stride, padding, dilation)
CASES = [
    (2, 3, 9, 8, 3, 2, 1, 1),       # ResNet downsampling, odd map
    (3, 5, 16, 12, 3, 2, 1, 1),     # even map: a phase needs an extra row
    (1, 3, 15, 7, 7, 2, 3, 1),      # the 7x7 stride-2 stem
    (2, 4, 10, 6, 1, 2, 0, 1),      # 1x1 stride 2 (projection shortcut)
    (2, 3, 11, 5, 3, 1, 2, 2),      # dilated, stride 1
    (2, 3, 12, 4, 5, 3, 2, 1),      # stride 3
    (1, 2, 7, 3, 3, 2, 0, 1),       # unpadded
]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _arrays(case, dtype, seed=0):
    n, c, h, f, k, s, p, d = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, h)).astype(dtype)
    w = rng.standard_normal((f, c, k, k)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    oh = (h + 2 * p - d * (k - 1) - 1) // s + 1
    gy = rng.standard_normal((n, f, oh, oh)).astype(dtype)
    return x, w, b, gy, (s, s), (p, p), (d, d), (oh, oh)


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_strided_forward_every_tile_and_band(isa, case, dtype):
    x, w, b, _, stride, padding, dilation, out_hw = _arrays(case, dtype)
    want = R.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                    stride, padding, dilation)
    for fb, v in _direct.tiles():
        for rows in (1, 2, out_hw[0]):
            y = direct_conv2d_strided(x, w, b, stride, padding, dilation, out_hw,
                                      plan=(rows, fb, v))
            _close(y, want, dtype)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_strided_grad_weight(isa, case):
    x, w, _, gy, stride, padding, dilation, _ = _arrays(case, np.float32, seed=1)
    gw, gb = direct_conv2d_strided_grad_weight(x, gy, w.shape, stride, padding, dilation, 4)
    _, rw, rb = R.conv2d_backward(x.astype(np.float64), w.astype(np.float64),
                                  gy.astype(np.float64), stride, padding, dilation)
    _close(gw, rw, np.float32)
    _close(gb, rb, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [c for c in CASES if c[-1] == 1], ids=str)
def test_strided_grad_x_by_phases(isa, case, dtype):
    x, w, _, gy, stride, padding, _, _ = _arrays(case, dtype, seed=2)
    gx = direct_conv2d_strided_grad_x(gy, w, x.shape, stride, padding)
    assert gx is not None
    rx, _, _ = R.conv2d_backward(x.astype(np.float64), w.astype(np.float64),
                                 gy.astype(np.float64), stride, padding)
    _close(gx, rx, dtype)


def test_strided_results_do_not_depend_on_the_thread_count(isa):
    x, w, b, gy, stride, padding, dilation, out_hw = _arrays(CASES[1], np.float32, seed=3)
    before = cnnframe.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            cnnframe.set_num_threads(threads)
            results.append((direct_conv2d_strided(x, w, b, stride, padding, dilation, out_hw),
                            *direct_conv2d_strided_grad_weight(x, gy, w.shape, stride, padding,
                                                               dilation, 4),
                            direct_conv2d_strided_grad_x(gy, w, x.shape, stride, padding)))
    finally:
        cnnframe.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
