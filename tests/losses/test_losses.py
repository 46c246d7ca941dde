"""Losses: values against naive formulas, gradients against central differences,
stability at extreme logits, dtype handling and input validation."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from cnnframe.gradcheck import numeric_gradient
from cnnframe.losses import MeanSquaredError, SoftmaxCrossEntropy, available_losses, get_loss

DTYPES = [np.float32, np.float64]


def naive_cross_entropy(logits, labels, eps=0.0):
    """-mean_i sum_k t_ik log softmax(z_i)_k, straight from the definition (float64, small logits)."""
    z = logits.astype(np.float64)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n, k = z.shape
    t = np.full((n, k), eps / k)
    t[np.arange(n), labels] += 1.0 - eps
    return -(t * np.log(p)).sum(axis=1).mean()


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("n,k", [(1, 2), (5, 3), (8, 10)])
def test_cross_entropy_value_matches_definition(rng, n, k, eps):
    logits = rng.normal(size=(n, k)) * 3
    labels = rng.integers(0, k, size=n)
    loss = SoftmaxCrossEntropy(label_smoothing=eps).forward(logits, labels)
    assert isinstance(loss, float)
    assert loss == pytest.approx(naive_cross_entropy(logits, labels, eps), rel=1e-12)


@given(n=st.integers(1, 6), k=st.integers(2, 7), eps=st.sampled_from([0.0, 0.05, 0.3]),
       seed=st.integers(0, 2**16), scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_cross_entropy_gradient_matches_central_differences(n, k, eps, seed, scale):
    r = np.random.default_rng(seed)
    logits = r.normal(size=(n, k)) * scale
    labels = r.integers(0, k, size=n)
    loss_fn = SoftmaxCrossEntropy(label_smoothing=eps)
    loss_fn.forward(logits, labels)
    grad = loss_fn.backward()
    numeric = numeric_gradient(lambda: SoftmaxCrossEntropy(eps).forward(logits, labels), logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # softmax and the target distribution both sum to one
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)


@given(shift=st.floats(-1e3, 1e3), seed=st.integers(0, 1000))
def test_cross_entropy_is_invariant_to_row_shifts(shift, seed):
    r = np.random.default_rng(seed)
    logits = r.normal(size=(4, 5))
    labels = r.integers(0, 5, size=4)
    a = SoftmaxCrossEntropy()
    b = SoftmaxCrossEntropy()
    assert b.forward(logits + shift, labels) == pytest.approx(a.forward(logits, labels), abs=1e-9)
    np.testing.assert_allclose(b.backward(), a.backward(), atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_extreme_logits_stay_finite(dtype, eps):
    logits = np.array([[1e4, -1e4, 0.0],
                       [-1e4, -1e4, -1e4],
                       [1e4, 1e4, -1e4],
                       [1e4, -1e4, 0.0]], dtype=dtype)
    labels = np.array([0, 1, 2, 1])
    loss_fn = SoftmaxCrossEntropy(label_smoothing=eps)
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # underflow to 0 is fine
        loss = loss_fn.forward(logits, labels)
        grad = loss_fn.backward()
    assert np.isfinite(loss)
    assert grad.dtype == dtype and np.all(np.isfinite(grad))
    if eps == 0.0:
        # per sample -log p[y]: 0, log 3, 2e4 + log 2, 2e4 (the e^-1e4 terms vanish)
        expected = (0.0 + np.log(3.0) + 2e4 + np.log(2.0) + 2e4) / 4
        assert loss == pytest.approx(expected, rel=1e-6)
        expected_grad = np.array([[0, 0, 0],
                                  [1 / 3, 1 / 3 - 1, 1 / 3],
                                  [0.5, 0.5, -1],
                                  [1, -1, 0]]) / 4
        np.testing.assert_allclose(grad, expected_grad, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_keeps_dtype_and_returns_fresh_gradient(rng, dtype):
    logits = rng.normal(size=(6, 4)).astype(dtype)
    labels = rng.integers(0, 4, size=6).astype(np.int32)
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(logits, labels)
    g1 = loss_fn.backward()
    g2 = loss_fn.backward()
    assert g1.dtype == dtype and g1.shape == (6, 4)
    assert g1 is not g2 and np.array_equal(g1, g2)
    assert loss_fn.probs.dtype == dtype
    np.testing.assert_allclose(loss_fn.probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(g1, (loss_fn.probs - np.eye(4)[labels]) / 6, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("labels,exc,match", [
    (np.array([0.0, 1.0, 2.0]), TypeError, "integer"),
    (np.array([True, False, True]), TypeError, "integer"),
    (np.array([[0, 1, 2]]), ValueError, r"\(3,\).*\(1, 3\)"),
    (np.array([0, 1]), ValueError, r"\(3,\).*\(2,\)"),
    (np.array([0, 1, 4]), ValueError, r"\[0, 4\).*label 4"),
    (np.array([0, -1, 2]), ValueError, "label -1"),
])
def test_cross_entropy_rejects_bad_labels(rng, labels, exc, match):
    with pytest.raises(exc, match=match):
        SoftmaxCrossEntropy().forward(rng.normal(size=(3, 4)), labels)


@pytest.mark.parametrize("logits,exc", [
    (np.zeros((3, 4), dtype=np.int64), TypeError),
    (np.zeros((3, 4, 1)), ValueError),
    (np.zeros((3, 0)), ValueError),
    ([[0.0, 1.0]], TypeError),
])
def test_cross_entropy_rejects_bad_logits(logits, exc):
    with pytest.raises(exc, match="logits"):
        SoftmaxCrossEntropy().forward(logits, np.zeros(len(logits), dtype=np.int64))


def test_cross_entropy_misc_errors():
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftmaxCrossEntropy(label_smoothing=1.0)
    with pytest.raises(RuntimeError, match="before forward"):
        SoftmaxCrossEntropy().backward()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 2, 2)])
def test_mse_value_and_gradient(rng, dtype, shape):
    pred = rng.normal(size=shape).astype(dtype)
    target = rng.normal(size=shape)
    loss_fn = MeanSquaredError()
    loss = loss_fn.forward(pred, target)
    diff = pred.astype(np.float64) - target.astype(dtype).astype(np.float64)
    assert loss == pytest.approx(np.sum(diff ** 2) / diff.size, rel=1e-6)
    grad = loss_fn.backward()
    assert grad.dtype == dtype and grad.shape == shape
    if dtype == np.float64:
        numeric = numeric_gradient(lambda: MeanSquaredError().forward(pred, target), pred)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_mse_errors(rng):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        MeanSquaredError().forward(rng.normal(size=(2, 3)), rng.normal(size=(3, 2)))
    with pytest.raises(TypeError, match="pred"):
        MeanSquaredError().forward(np.zeros(3, dtype=np.int32), np.zeros(3))
    with pytest.raises(RuntimeError, match="before forward"):
        MeanSquaredError().backward()


def test_get_loss_names_and_errors():
    assert isinstance(get_loss("softmax_cross_entropy"), SoftmaxCrossEntropy)
    assert isinstance(get_loss("cross_entropy", label_smoothing=0.2), SoftmaxCrossEntropy)
    assert get_loss("cross_entropy", label_smoothing=0.2).label_smoothing == 0.2
    assert isinstance(get_loss("mse"), MeanSquaredError)
    assert {"softmax_cross_entropy", "cross_entropy", "mse"} <= set(available_losses())
    with pytest.raises(ValueError, match="valid losses:.*cross_entropy.*mse.*did you mean 'mse'"):
        get_loss("msee")
    with pytest.raises(ValueError, match="label_smoothin.*valid.*label_smoothing"):
        get_loss("cross_entropy", label_smoothin=0.1)
