"""Memory: training keeps RSS flat after warm-up; scratch memory is bounded and reused."""
import re

import numpy as np
import pytest

import cnnframe.functional as F
from cnnframe.functional import _workspace
from reliability.rss_soak import rss_mib, soak


def test_training_rss_is_flat_after_warmup():
    # Short version of `rss_soak.py --steps 2000` (see docs/RELIABILITY.md for the long run).
    before, after, peak, samples = soak(steps=160, warmup=60, batch=16, every=20)
    assert len(samples) == 8
    assert after - before < 4.0, samples
    assert peak - before < 6.0, samples


def test_conv_scratch_buffers_are_reused_not_regrown():
    x = np.ones((4, 8, 20, 20), np.float32)
    w = np.ones((8, 8, 3, 3), np.float32)
    F.release_scratch()
    F.conv2d_backward(x, w, F.conv2d(x, w))
    sizes = {k: v.nbytes for k, v in _workspace._buffers.items()}
    ids = {k: id(v) for k, v in _workspace._buffers.items()}
    base = rss_mib()
    for _ in range(50):
        F.conv2d_backward(x, w, F.conv2d(x, w))
    assert {k: v.nbytes for k, v in _workspace._buffers.items()} == sizes
    assert {k: id(v) for k, v in _workspace._buffers.items()} == ids
    assert rss_mib() - base < 2.0


@pytest.mark.parametrize("limit", [1 << 10, 1 << 14, 1 << 17])
def test_scratch_over_the_limit_raises_memory_error_naming_the_sizes(limit):
    x = np.ones((2, 16, 64, 64), np.float32)
    w = np.ones((8, 16, 5, 5), np.float32)
    F.set_scratch_limit(limit)
    try:
        with pytest.raises(MemoryError) as info:
            F.conv2d(x, w)
        msg = str(info.value)
        assert re.search(r"(conv2d im2col|direct conv2d \w+): needs", msg)
        assert "bytes" in msg and "MiB" in msg
        assert f"above the limit of {limit} bytes" in msg and "set_scratch_limit" in msg
    finally:
        F.set_scratch_limit(1 << 30)
    # within the default limit the same call works
    assert F.conv2d(x, w).shape == (2, 8, 60, 60)
