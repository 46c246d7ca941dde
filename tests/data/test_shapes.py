import numpy as np
import pytest

from cnnframe.data import Shapes
from cnnframe.data.shapes import CLASSES


def test_shape_dtype_balance():
    ds = Shapes(800, size=32, seed=3)
    assert ds.images.shape == (800, 3, 32, 32) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and ds.classes == CLASSES and 6 <= len(CLASSES) <= 10
    np.testing.assert_array_equal(np.bincount(ds.labels, minlength=len(CLASSES)), [100] * 8)
    assert ds.images.std() > 30  # not blank


def test_deterministic_per_seed_and_split():
    a, b = Shapes(64, seed=5), Shapes(64, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(Shapes(64, seed=6).images, a.images)


def test_train_and_test_share_no_image():
    train, test = Shapes(400, seed=0, train=True), Shapes(400, seed=0, train=False)
    flat_train = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in flat_train for img in test.images)


@pytest.mark.parametrize("size", [12, 28, 48])
def test_other_sizes(size):
    ds = Shapes(16, size=size)
    assert ds.images.shape == (16, 3, size, size)


def foreground_masks(ds):
    """Pixels far from each image's background colour (the median of its border)."""
    imgs = ds.images.astype(np.float32)
    border = np.concatenate([imgs[:, :, 0], imgs[:, :, -1], imgs[:, :, :, 0], imgs[:, :, :, -1]], 2)
    bg = np.median(border, axis=2)[:, :, None, None]
    return np.abs(imgs - bg).mean(1) > 40


def test_shapes_look_like_their_class():
    ds = Shapes(800, seed=1)
    masks = foreground_masks(ds)
    height = masks.any(2).sum(1)  # rows touched
    width = masks.any(1).sum(1)   # columns touched
    area = masks.sum((1, 2))
    by = {name: ds.labels == k for k, name in enumerate(ds.classes)}
    assert (width[by["horizontal_bar"]] > 2 * height[by["horizontal_bar"]]).mean() > 0.95
    assert (height[by["vertical_bar"]] > 2 * width[by["vertical_bar"]]).mean() > 0.95
    diag = by["diagonal_bar"]
    assert (np.abs(width[diag] - height[diag]) < 0.5 * width[diag]).mean() > 0.9
    # filled shapes cover much more of their bounding box than bars, crosses and rings
    fill = area / np.maximum(width * height, 1)
    for filled in ("square", "circle"):
        for thin in ("cross", "ring", "diagonal_bar"):
            assert np.median(fill[by[filled]]) > np.median(fill[by[thin]]) + 0.2
    # a ring's centre is background, a circle's is not
    centre = lambda sel: np.array([m[int(np.mean(np.nonzero(m)[0])), int(np.mean(np.nonzero(m)[1]))]
                                   for m in masks[sel]])  # noqa: E731
    assert centre(by["ring"]).mean() < 0.1 and centre(by["circle"]).mean() > 0.9


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        Shapes(-1)
    with pytest.raises(ValueError, match="size must be"):
        Shapes(10, size=4)
    assert len(Shapes(0)) == 0
