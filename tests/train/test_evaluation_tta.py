"""Test-time augmentation in `evaluate`: "flip" and airbench's 6-view "multicrop"."""
import numpy as np
import pytest

from cnnframe import Model
from cnnframe.losses import SoftmaxCrossEntropy
from cnnframe.train import Trainer
from cnnframe.train.evaluation import evaluate, tta_views


def shifted(x, dy, dx):
    """Image content moved by (dy, dx) pixels, the uncovered border mirrored (no edge
    repeat), by index arithmetic: out[i, j] = x[reflect(i - dy), reflect(j - dx)]."""
    h, w = x.shape[2:]

    def reflect(i, n):
        i = np.abs(i)
        return np.where(i >= n, 2 * (n - 1) - i, i)
    rows = reflect(np.arange(h) - dy, h)
    cols = reflect(np.arange(w) - dx, w)
    return x[:, :, rows][:, :, :, cols]


def mirror(x):
    return x[..., ::-1]


@pytest.fixture
def model():
    return Model.from_config({"input_shape": [2, 5, 6], "seed": 4, "layers": [
        {"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3},
        {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "in_features": 36, "out_features": 4}]})


@pytest.mark.parametrize("shape", [(3, 2, 5, 6), (1, 1, 2, 2), (2, 3, 7, 4)])
def test_multicrop_views_are_the_image_its_mirror_and_both_shifted_by_one_pixel(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    views = tta_views(x, "multicrop")
    expected = [(0.25, x), (0.25, mirror(x)),
                (0.125, shifted(x, 1, 1)), (0.125, mirror(shifted(x, 1, 1))),
                (0.125, shifted(x, -1, -1)), (0.125, mirror(shifted(x, -1, -1)))]
    assert [w for w, _ in views] == [w for w, _ in expected]
    for (_, got), (_, want) in zip(views, expected):
        np.testing.assert_array_equal(got, want)
        assert got.flags.c_contiguous and got.shape == x.shape
    assert sum(w for w, _ in views) == 1.0


@pytest.mark.parametrize("tta, n_views", [(False, 1), ("none", 1), (True, 2), ("flip", 2),
                                          ("multicrop", 6)])
def test_evaluate_averages_the_logits_of_the_views(model, tta, n_views):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 2, 5, 6)).astype(np.float32)
    y = rng.integers(0, 4, 10)
    views = tta_views(x, tta)
    assert len(views) == n_views
    want = sum(w * np.array(model.forward(v, training=False), np.float64) for w, v in views)
    res = evaluate(model, [(x[:6], y[:6]), (x[6:], y[6:])], SoftmaxCrossEntropy(), tta=tta)
    assert res["accuracy"] == pytest.approx(np.mean(want.argmax(1) == y))
    assert res["loss"] == pytest.approx(SoftmaxCrossEntropy().forward(want, y), rel=1e-5)
    trainer = Trainer(model, SoftmaxCrossEntropy(), optimizer=None, progress=False)
    assert trainer.evaluate([(x, y)], tta=tta)["loss"] == pytest.approx(res["loss"], rel=1e-5)


def test_multicrop_differs_from_flip_on_a_model_that_sees_position(model):
    x = np.random.default_rng(2).standard_normal((8, 2, 5, 6)).astype(np.float32)
    y = np.zeros(8, np.int64)
    assert evaluate(model, [(x, y)], tta="multicrop")["loss"] != \
        pytest.approx(evaluate(model, [(x, y)], tta="flip")["loss"], rel=1e-6)


@pytest.mark.parametrize("tta, x, message", [
    ("crops", np.zeros((2, 2, 5, 6), np.float32), "tta must be one of 'none', 'flip', "
                                                  "'multicrop'"),
    (1, np.zeros((2, 2, 5, 6), np.float32), "tta must be one of"),
    ("multicrop", np.zeros((2, 6), np.float32), "'multicrop' flips and shifts images and "
                                                r"needs batches of shape \(N, C, H, W\)"),
    ("multicrop", np.zeros((2, 2, 1, 6), np.float32), "at least 2 x 2"),
])
def test_bad_tta_is_a_clear_error(model, tta, x, message):
    with pytest.raises(ValueError, match=message):
        evaluate(model, [(x, np.zeros(2, np.int64))], tta=tta)
