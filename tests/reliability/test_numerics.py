"""Softmax cross-entropy and batch norm stay finite for extreme inputs."""
import numpy as np
import pytest

from cnnframe.layers import BatchNorm1d, BatchNorm2d, Softmax
from cnnframe.losses import SoftmaxCrossEntropy

DTYPES = [np.float32, np.float64]


def _ce(logits, labels):
    loss = SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)
    return value, loss.backward()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, 1e6, 1e30])
def test_cross_entropy_finite_for_huge_logits(dtype, scale):
    logits = np.array([[scale, -scale, 0.0], [-scale, scale, 0.0], [0.0, 0.0, scale]], dtype)
    labels = np.array([0, 0, 2])
    value, grad = _ce(logits, labels)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and grad.dtype == dtype
    # Row 1 puts all mass on the wrong class: its loss is 2 * scale; the others are ~0.
    assert value == pytest.approx(2 * scale / 3, rel=1e-5)
    # Gradient: (softmax - onehot) / N, exactly -1/3 and +1/3 on the confident wrong row.
    np.testing.assert_allclose(grad[1], np.array([-1, 1, 0]) / 3, atol=1e-7)
    np.testing.assert_allclose(grad[0], 0, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_equal_logits_is_log_k(dtype):
    value, grad = _ce(np.full((4, 10), 1e4, dtype), np.arange(4))
    assert value == pytest.approx(np.log(10), rel=1e-6)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_layer_finite_for_huge_logits(dtype):
    s = Softmax()
    y = s.forward(np.array([[1e4, -1e4, 0.0]], dtype))
    np.testing.assert_allclose(y, [[1, 0, 0]])
    assert np.all(np.isfinite(s.backward(np.ones_like(y))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.0, 7.0, -1e4, 1e30])
def test_batch_norm_constant_feature_maps(dtype, value):
    """Variance 0: the output is the bias (x - mean = 0), gradients finite, stats finite."""
    bn = BatchNorm2d(3).astype(dtype)
    bn.params["bias"][:] = [0.5, -1.0, 2.0]
    x = np.full((4, 3, 5, 5), value, dtype)
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y, np.broadcast_to(bn.params["bias"][None, :, None, None], y.shape))
    gx = bn.backward(np.random.default_rng(0).standard_normal(y.shape).astype(dtype))
    assert np.all(np.isfinite(gx))
    assert all(np.all(np.isfinite(v)) for v in list(bn.grads.values()) + list(bn.buffers.values()))
    assert np.all(bn.buffers["running_var"] >= 0)
    y_eval = bn.forward(x, training=False)
    assert np.all(np.isfinite(y_eval))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_zero_running_variance_in_eval(dtype):
    bn = BatchNorm1d(2).astype(dtype)
    bn.buffers["running_var"][:] = 0  # eps keeps 1/sqrt(var + eps) finite
    y = bn.forward(np.ones((3, 2), dtype), training=False)
    np.testing.assert_allclose(y, 1 / np.sqrt(bn.eps), rtol=1e-4)
    assert np.all(np.isfinite(bn.backward(np.ones_like(y))))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_large_spread_inputs(dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((8, 2, 4, 4)) * 1e4 + 1e4).astype(dtype)
    bn = BatchNorm2d(2).astype(dtype)
    y = bn.forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-3)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, rtol=1e-2)
    assert np.all(np.isfinite(bn.backward(np.ones_like(y))))
