"""Class-weighted and soft-target cross-entropy and BCE-with-logits: values against plain
formulas written from PyTorch's definitions, gradients against central differences,
stability at extreme logits, config round trips and input validation."""
import numpy as np
import pytest
from scipy.special import log_softmax

from cnnframe.gradcheck import numeric_gradient
from cnnframe.losses import BCEWithLogits, SoftmaxCrossEntropy, get_loss

DTYPES = [np.float32, np.float64]


def naive_log_softmax(z):
    z = z.astype(np.float64)
    return np.log(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))


def naive_ce_labels(z, labels, weight=None, eps=0.0):
    """PyTorch's weighted mean: sum_i [(1-eps) w_y nll_i + eps/K sum_k w_k (-log p_ik)] / W,
    W = sum_i w_y."""
    n, k = z.shape
    w = np.ones(k) if weight is None else np.asarray(weight, np.float64)
    logp = naive_log_softmax(z)
    total = denom = 0.0
    for i in range(n):
        y = labels[i]
        total += (1 - eps) * w[y] * -logp[i, y] + eps / k * sum(w[c] * -logp[i, c]
                                                                for c in range(k))
        denom += w[y]
    return total / denom


def naive_ce_probs(z, t, weight=None, eps=0.0):
    """PyTorch's soft-target loss: -sum_ik w_k t'_ik log p_ik / N with t' = (1-eps) t + eps/K."""
    n, k = z.shape
    w = np.ones(k) if weight is None else np.asarray(weight, np.float64)
    t = (1 - eps) * t + eps / k
    return -(w * t * naive_log_softmax(z)).sum() / n


def naive_bce(z, y, pos_weight=None):
    z, y = z.astype(np.float64), y.astype(np.float64)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    s = 1 / (1 + np.exp(-z))
    return float(np.mean(-(pw * y * np.log(s) + (1 - y) * np.log(1 - s))))


WEIGHTS = [None, [0.5, 2.0, 1.0, 3.0], [1.0, 0.0, 1.0, 2.0]]


@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("eps", [0.0, 0.15])
def test_cross_entropy_integer_labels_with_class_weights(rng, weight, eps):
    z = rng.normal(size=(9, 4)) * 2
    labels = rng.integers(0, 4, 9)
    labels[0] = 0  # at least one label with a non-zero weight
    fn = SoftmaxCrossEntropy(label_smoothing=eps, weight=weight)
    assert fn.forward(z, labels) == pytest.approx(naive_ce_labels(z, labels, weight, eps),
                                                  rel=1e-12)
    numeric = numeric_gradient(lambda: SoftmaxCrossEntropy(eps, weight).forward(z, labels), z)
    np.testing.assert_allclose(fn.backward(), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("eps", [0.0, 0.15])
def test_cross_entropy_probability_targets(rng, weight, eps):
    z = rng.normal(size=(7, 4)) * 2
    t = rng.dirichlet(np.ones(4), 7)
    fn = SoftmaxCrossEntropy(label_smoothing=eps, weight=weight)
    assert fn.forward(z, t) == pytest.approx(naive_ce_probs(z, t, weight, eps), rel=1e-12)
    numeric = numeric_gradient(lambda: SoftmaxCrossEntropy(eps, weight).forward(z, t), z)
    np.testing.assert_allclose(fn.backward(), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_one_hot_probabilities_equal_integer_labels_without_weights(rng, eps):
    z = rng.normal(size=(6, 5))
    labels = rng.integers(0, 5, 6)
    a, b = SoftmaxCrossEntropy(eps), SoftmaxCrossEntropy(eps)
    assert a.forward(z, labels) == pytest.approx(b.forward(z, np.eye(5)[labels]), rel=1e-13)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-12, atol=1e-16)


def test_unit_weights_change_nothing(rng):
    z, labels = rng.normal(size=(6, 3)), rng.integers(0, 3, 6)
    a, b = SoftmaxCrossEntropy(0.1), SoftmaxCrossEntropy(0.1, weight=[1, 1, 1])
    assert a.forward(z, labels) == pytest.approx(b.forward(z, labels), rel=1e-13)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("soft", [False, True])
def test_weighted_cross_entropy_keeps_dtype_and_is_finite_at_extreme_logits(dtype, soft):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    target = np.eye(3, dtype=np.float32)[[1, 1, 2]] if soft else np.array([1, 1, 2])
    fn = SoftmaxCrossEntropy(0.1, weight=[1.0, 2.0, 0.5])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = fn.forward(z, target)
        grad = fn.backward()
    assert np.isfinite(loss) and grad.dtype == dtype and np.all(np.isfinite(grad))
    # the definition with scipy's stable log_softmax in float64
    w, k = np.array([1.0, 2.0, 0.5]), 3
    q = (0.9 * (target if soft else np.eye(3)[target]) + 0.1 / k) * w
    denom = 3 if soft else w[target].sum()
    expected = -(q * log_softmax(z.astype(np.float64), axis=1)).sum() / denom
    assert loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("target_kind", ["binary", "probs", "int01"])
@pytest.mark.parametrize("pos_weight", [None, 2.5, [1.0, 3.0, 0.5, 0.0]])
def test_bce_matches_definition_and_central_differences(rng, target_kind, pos_weight):
    z = rng.normal(size=(5, 4)) * 2
    y = {"binary": (rng.random((5, 4)) < 0.4).astype(np.float64),
         "probs": rng.random((5, 4)),
         "int01": rng.integers(0, 2, (5, 4))}[target_kind]
    fn = BCEWithLogits(pos_weight)
    assert fn.forward(z, y) == pytest.approx(naive_bce(z, y, pos_weight), rel=1e-12)
    numeric = numeric_gradient(lambda: BCEWithLogits(pos_weight).forward(z, y), z)
    np.testing.assert_allclose(fn.backward(), numeric, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("shape", [(6,), (3, 2, 2, 2)])
def test_bce_elementwise_over_any_shape(rng, shape):
    z, y = rng.normal(size=shape), rng.random(shape)
    fn = BCEWithLogits()
    assert fn.forward(z, y) == pytest.approx(naive_bce(z, y), rel=1e-12)
    assert fn.backward().shape == shape


def test_bce_class_indices_are_one_hot_rows(rng):
    z, labels = rng.normal(size=(6, 3)), rng.integers(0, 3, 6)
    a, b = BCEWithLogits([1.0, 2.0, 3.0]), BCEWithLogits([1.0, 2.0, 3.0])
    assert a.forward(z, labels) == pytest.approx(b.forward(z, np.eye(3)[labels]), rel=1e-14)
    np.testing.assert_array_equal(a.backward(), b.backward())


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_extreme_logits_stay_finite(dtype):
    z = np.array([[1e4, -1e4], [-1e4, 1e4], [0.0, 50.0]], dtype)
    y = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 1.0]])
    fn = BCEWithLogits([2.0, 3.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = fn.forward(z, y)
        grad = fn.backward()
    # per element: 0, 0, 2 * 1e4, 1e4, (1 + 0.5) log 2 (log_weight 1.5 at z=0), ~3 e^-50
    expected = (2e4 + 1e4 + 1.5 * np.log(2.0)) / 6
    assert loss == pytest.approx(expected, rel=1e-6)
    assert grad.dtype == dtype
    expected_grad = np.array([[0, 0], [-2, 1], [1 - 0.5 - 1.5 * 0.5, 0]]) / 6
    np.testing.assert_allclose(grad, expected_grad, atol=1e-7)


def test_config_round_trip_and_get_loss():
    ce = get_loss("cross_entropy", weight=[1, 2], label_smoothing=0.1)
    assert ce.get_config() == {"label_smoothing": 0.1, "weight": [1.0, 2.0]}
    assert get_loss("cross_entropy", **ce.get_config()).get_config() == ce.get_config()
    bce = get_loss("bce_with_logits", pos_weight=[1, 3])
    assert isinstance(bce, BCEWithLogits) and bce.get_config() == {"pos_weight": [1.0, 3.0]}
    assert get_loss("binary_cross_entropy_with_logits", pos_weight=2).get_config() == {
        "pos_weight": 2.0}
    with pytest.raises(ValueError, match="pos_weigth.*valid.*pos_weight"):
        get_loss("bce_with_logits", pos_weigth=2)


@pytest.mark.parametrize("kwargs,match", [
    ({"weight": [1.0, -1.0]}, r"weight must hold finite values >= 0.*-1"),
    ({"weight": [1.0, np.nan]}, "weight must hold finite"),
    ({"weight": []}, "weight must be a number or a non-empty list"),
    ({"weight": ["a", "b"]}, "weight must be"),
    ({"weight": 2.0}, "weight must be a list of one weight per class"),
    ({"weight": [[1.0]]}, "weight must be"),
])
def test_cross_entropy_rejects_bad_weights(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SoftmaxCrossEntropy(**kwargs)


def test_cross_entropy_input_errors_name_the_argument(rng):
    z = rng.normal(size=(3, 4))
    with pytest.raises(ValueError, match=r"weight has 3 class weights.*\(3, 4\).*K=4"):
        SoftmaxCrossEntropy(weight=[1, 1, 1]).forward(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"probability targets.*\(3, 4\).*\(3, 5\)"):
        SoftmaxCrossEntropy().forward(z, np.full((3, 5), 0.2))
    with pytest.raises(ValueError, match="probability targets must be finite"):
        SoftmaxCrossEntropy().forward(z, np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match=r"every label.*\[1\].*weight 0"):
        SoftmaxCrossEntropy(weight=[1, 0, 1, 1]).forward(z, np.array([1, 1, 1]))


def test_bce_input_errors_name_the_argument(rng):
    z = rng.normal(size=(3, 4))
    with pytest.raises(ValueError, match=r"target must have the shape.*\(3, 4\).*\(4, 3\)"):
        BCEWithLogits().forward(z, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 4\)"):
        BCEWithLogits().forward(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="pos_weight has 3 values.*last axis has 4"):
        BCEWithLogits([1, 2, 3]).forward(z, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="pos_weight must hold finite values >= 0"):
        BCEWithLogits(-1.0)
    with pytest.raises(TypeError, match="logits"):
        BCEWithLogits().forward(np.zeros((3, 4), np.int32), np.zeros((3, 4)))
    with pytest.raises(TypeError, match="target must be numeric"):
        BCEWithLogits().forward(z, np.full((3, 4), "a"))
    with pytest.raises(ValueError, match="logits must be non-empty"):
        BCEWithLogits().forward(np.zeros((0, 4)), np.zeros((0, 4)))
    with pytest.raises(RuntimeError, match="before forward"):
        BCEWithLogits().backward()
