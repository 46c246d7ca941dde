"""Results for 1 and 2 threads: identical in float64, within tolerance in float32, and
bit-for-bit deterministic for a fixed thread count (functional ops and a whole model)."""
import numpy as np
import pytest

import cnnframe
import cnnframe.functional as F
from cnnframe.graph import Model


@pytest.fixture(autouse=True)
def restore_threads():
    n = cnnframe.get_num_threads() if hasattr(cnnframe, "get_num_threads") else 2
    yield
    cnnframe.set_num_threads(n)


def _ops(dtype, rng):
    # Large enough that the kernels split work between threads (> SERIAL_WORK).
    x = rng.standard_normal((16, 8, 24, 24)).astype(dtype)
    w = rng.standard_normal((16, 4, 3, 3)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    y = F.conv2d(x, w, b, stride=1, padding=1, groups=2)
    gy = rng.standard_normal(y.shape).astype(dtype)
    out = {"conv2d": y}
    out["gx"], out["gw"], out["gb"] = F.conv2d_backward(x, w, gy, 1, 1, 1, 2)
    out["max"], out["argmax"] = F.max_pool2d(x, 3, 2, 1)
    out["max_bw"] = F.max_pool2d_backward(rng.standard_normal(out["max"].shape).astype(dtype),
                                          out["argmax"], x.shape)
    out["avg"] = F.avg_pool2d(x, 2)
    out["avg_bw"] = F.avg_pool2d_backward(out["avg"], x.shape, 2)
    out["gap"] = F.global_avg_pool2d(x)
    out["gap_bw"] = F.global_avg_pool2d_backward(out["gap"], x.shape)
    return out


def _run(fn, threads, dtype, seed=0):
    cnnframe.set_num_threads(threads)
    return fn(dtype, np.random.default_rng(seed))


def _model_step(dtype, rng):
    model = Model.from_config({"input_shape": [3, 16, 16], "seed": 0, "layers": [
        {"type": "conv2d", "in_channels": 3, "out_channels": 16, "kernel_size": 3,
         "padding": 1},
        {"type": "batch_norm2d", "num_features": 16}, {"type": "relu"},
        {"type": "max_pool2d", "kernel_size": 2},
        {"type": "conv2d", "in_channels": 16, "out_channels": 16, "kernel_size": 3,
         "padding": 1},
        {"type": "relu"}, {"type": "global_avg_pool2d"},
        {"type": "linear", "in_features": 16, "out_features": 10}]}).astype(dtype)
    x = rng.standard_normal((32, 3, 16, 16)).astype(dtype)
    y = model.forward(x)
    gx = model.backward(rng.standard_normal(y.shape).astype(dtype))
    out = {"y": y, "gx": gx}
    out.update({k: v.copy() for k, v in model.grads.items()})
    return out


@pytest.mark.parametrize("fn", [_ops, _model_step], ids=["functional", "model"])
def test_float64_identical_for_1_and_2_threads(fn):
    one, two = _run(fn, 1, np.float64), _run(fn, 2, np.float64)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)


@pytest.mark.parametrize("fn", [_ops, _model_step], ids=["functional", "model"])
def test_float32_within_tolerance_for_1_and_2_threads(fn):
    one, two = _run(fn, 1, np.float32), _run(fn, 2, np.float32)
    for k in one:
        np.testing.assert_allclose(one[k], two[k], rtol=1e-5, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", [_ops, _model_step], ids=["functional", "model"])
def test_deterministic_for_a_fixed_thread_count(fn, dtype, threads):
    runs = [_run(fn, threads, dtype) for _ in range(3)]
    for k in runs[0]:
        for other in runs[1:]:
            np.testing.assert_array_equal(runs[0][k], other[k], err_msg=k)
