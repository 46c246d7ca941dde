"""Batch norm's sums at every instruction-set level: the avx2 level adds the same terms in
the same order as the generic version (batchnorm.h: as two 4-double halves of its 8-lane
accumulators), so the two agree bit for bit; avx512, where the CPU has it, within rounding."""
import numpy as np
import pytest

import cnnframe
import cnnframe.functional as F

# Row lengths L: 32-blocks and a tail (70), a 32-block, an 8-block and a tail (45),
# 8-blocks only (16), a tail only (5).
SHAPES = [(3, 4, 70), (2, 3, 45), (4, 2, 16), (3, 2, 5), (2, 3, 9, 11)]


def all_results(rng, shape, dtype):
    """Forward statistics and output, backward gradients plain and through a fused ReLU."""
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w, b = rng.uniform(0.5, 2, c).astype(dtype), rng.uniform(-1, 1, c).astype(dtype)
    y, mean, invstd = F.batch_norm_train(x, w, b)
    z, _, _ = F.batch_norm_train(x, w, b, relu=True)
    return {"y": y, "mean": mean, "invstd": invstd, "relu y": z,
            **{f"grad {k}": v for k, v in zip(
                ("x", "weight", "bias"), F.batch_norm_backward(g, x, w, mean, invstd))},
            **{f"relu grad {k}": v for k, v in zip(
                ("x", "weight", "bias"),
                F.batch_norm_backward(g, x, w, mean, invstd, relu_y=z))}}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_level_gives_the_generic_sums(shape, dtype, threads, monkeypatch):
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)  # split even these small rows
    cnnframe.set_num_threads(threads)
    try:
        results = {}
        for level in cnnframe.available_isas():
            with cnnframe.use_isa(level):
                results[level] = all_results(np.random.default_rng(7), shape, dtype)
    finally:
        cnnframe.set_num_threads(2)
    generic = results["generic"]
    if "avx2" in results:
        for name, value in results["avx2"].items():
            np.testing.assert_array_equal(value, generic[name], err_msg=f"avx2 {name}")
    for name, value in results.get("avx512", {}).items():
        np.testing.assert_allclose(value, generic[name], rtol=1e-5, atol=1e-5,
                                   err_msg=f"avx512 {name}")
