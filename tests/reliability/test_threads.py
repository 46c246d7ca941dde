"""Results are bit-identical for 1 and 2 threads, in float32 and float64, on every kernel
path (im2col + GEMM, Winograd F(2x2) and F(4x4), the direct kernel, batch norm, ReLU,
pooling) and for a whole model's training step, on every instruction set the CPU runs
(the `isa` fixture); and bit-for-bit deterministic for a fixed thread count."""
import numpy as np
import pytest

import cnnframe
import cnnframe.functional as F
import cnnframe.functional.conv as conv_module
from cnnframe.functional import _direct, conv_dispatch
from cnnframe.functional._args import conv_geometry
from cnnframe.graph import Model


@pytest.fixture(autouse=True)
def restore_threads():
    n = cnnframe.get_num_threads()
    yield
    cnnframe.set_num_threads(n)


def _conv(x, w, b, gy, algorithm, **kw):
    y = F.conv2d(x, w, b, algorithm=algorithm, **kw)
    return {"y": y, **dict(zip(("gx", "gw", "gb"),
                               F.conv2d_backward(x, w, gy, algorithm=algorithm, **kw)))}


def _conv_case(rng, dtype, x_shape=(19, 16, 16, 16), w_shape=(16, 16, 3, 3)):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal((x_shape[0], w_shape[0], *x_shape[2:])).astype(dtype)
    return x, w, rng.standard_normal(w_shape[0]).astype(dtype), gy


def _im2col(dtype, rng, monkeypatch):
    x, w, b, gy = _conv_case(rng, dtype)
    out = _conv(x, w, b, gy, "im2col", padding=1)
    x, w, b, gy = _conv_case(rng, dtype, (16, 8, 24, 24), (16, 4, 3, 3))
    out.update({"grouped " + k: v
                for k, v in _conv(x, w, b, gy, "im2col", padding=1, groups=2).items()})
    y = F.conv2d(x, w, b, stride=2, padding=1, groups=2, algorithm="im2col")
    out["strided"] = F.conv2d_backward(x, w, rng.standard_normal(y.shape).astype(dtype),
                                       stride=2, padding=1, groups=2, algorithm="im2col")
    return out


def _winograd(tile):
    def run(dtype, rng, monkeypatch):
        """A 3x3 stride-1 conv through F(tile x tile, 3x3): forward and both gradients."""
        return _conv(*_conv_case(rng, dtype), f"winograd{tile}", padding=1)
    return run


def _direct_kernel(dtype, rng, monkeypatch):
    """The direct kernel with every micro-kernel of the active instruction set, and its
    weight gradient (float32); bands of 4 rows so images are split too."""
    x, w, b, gy = _conv_case(rng, dtype)
    g = conv_geometry(x.shape, w.shape, padding=1)
    out = {"default plan": _direct.direct_conv2d(x, w, b, g),
           "grad_x": _direct.direct_conv2d_grad_x(gy, w, g)}
    for tile in conv_dispatch.tiles():
        out[f"y {tile}"] = _direct.direct_conv2d(x, w, b, g, plan=(4, *tile))
    if dtype == np.float32:
        out["grad_weight"] = _direct.direct_conv2d_grad_weight(x, gy, g, conv_module.PARTS)
    return out


def _batch_norm(dtype, rng, monkeypatch):
    x = rng.standard_normal((19, 16, 12, 12)).astype(dtype) * 3 + 1
    gy = rng.standard_normal(x.shape).astype(dtype)
    w, b = rng.standard_normal(16).astype(dtype), rng.standard_normal(16).astype(dtype)
    rm, rv = np.zeros(16, dtype), np.ones(16, dtype)
    y, mean, invstd = F.batch_norm_train(x, w, b, running_mean=rm, running_var=rv)
    z = F.batch_norm_train(x, w, b, relu=True)[0]
    return {"y": y, "mean": mean, "invstd": invstd, "running_mean": rm, "running_var": rv,
            "y relu": z, "eval": F.batch_norm_eval(x, w, b, rm, rv, relu=True),
            "backward": F.batch_norm_backward(gy, x, w, mean, invstd),
            "backward relu": F.batch_norm_backward(gy, x, w, mean, invstd, relu_y=z),
            "backward eval": F.batch_norm_backward(gy, x, w, mean, invstd, training=False),
            "relu": F.relu(x), "relu_backward": F.relu_backward(gy, F.relu(x))}


def _pooling(dtype, rng, monkeypatch):
    x = rng.standard_normal((16, 8, 24, 24)).astype(dtype)
    out = {}
    out["max"], out["argmax"] = F.max_pool2d(x, 3, 2, 1)
    out["max_bw"] = F.max_pool2d_backward(rng.standard_normal(out["max"].shape).astype(dtype),
                                          out["argmax"], x.shape)
    out["max 2x2"] = F.max_pool2d(x, 2)
    out["avg"] = F.avg_pool2d(x, 2)
    out["avg_bw"] = F.avg_pool2d_backward(out["avg"], x.shape, 2)
    out["avg padded"] = F.avg_pool2d(x, 3, 1, 1)
    out["avg padded_bw"] = F.avg_pool2d_backward(out["avg padded"], x.shape, 3, 1, 1)
    out["gap"] = F.global_avg_pool2d(x)
    out["gap_bw"] = F.global_avg_pool2d_backward(out["gap"], x.shape)
    return out


PATHS = {"im2col": _im2col, "winograd F(2x2)": _winograd(2), "winograd F(4x4)": _winograd(4),
         "direct": _direct_kernel, "batch_norm and relu": _batch_norm, "pooling": _pooling}


def _flat(results):
    """name -> array, with tuples of arrays (gradients) split into their items."""
    flat = {}
    for name, value in results.items():
        for i, v in enumerate(value if isinstance(value, tuple) else (value,)):
            flat[f"{name}[{i}]"] = np.array(v, copy=True)
    return flat


def _run(fn, threads, dtype, *args, seed=0):
    cnnframe.set_num_threads(threads)
    return _flat(fn(dtype, np.random.default_rng(seed), *args))


def assert_identical(one, two):
    assert one.keys() == two.keys()
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", PATHS)
def test_kernel_path_identical_for_1_and_2_threads(path, dtype, monkeypatch, isa):
    # Every call splits between the threads, however small (SERIAL_WORK is the cut-off).
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    assert_identical(_run(PATHS[path], 1, dtype, monkeypatch),
                     _run(PATHS[path], 2, dtype, monkeypatch))


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_step_identical_for_1_and_2_threads(dtype, isa):
    """The README's claim, at the level users see it (default thread cut-offs)."""
    assert_identical(_run(_model_step, 1, dtype), _run(_model_step, 2, dtype))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_deterministic_for_a_fixed_thread_count(dtype, threads, monkeypatch):
    monkeypatch.setattr("cnnframe._threads.SERIAL_WORK", 0)
    runs = [_run(_model_step, threads, dtype) for _ in range(2)]
    runs += [{f"{path} {k}": v for path in PATHS
              for k, v in _run(PATHS[path], threads, dtype, monkeypatch).items()}
             for _ in range(2)]
    assert_identical(runs[0], runs[1])
    assert_identical(runs[2], runs[3])
