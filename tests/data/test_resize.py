"""random_resized_crop and resize (cnnframe/data/resize.py): boxes as torchvision draws them,
pixels as Pillow resamples a crop."""
import math

import numpy as np
import pytest

from cnnframe.data import build_transform, build_transforms
from cnnframe.data.resize import RandomResizedCrop, Resize, resize_boxes
from cnnframe.distributed.sampling import PerImageRNG

Image = pytest.importorskip("PIL.Image", reason="Pillow is the reference resampler")


def batch(n, c, h, w, seed=0):
    """Random images with some smooth structure (gradients plus noise), uint8 (N, C, H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = (xx * 200 // max(w - 1, 1) + yy * 50 // max(h - 1, 1))[None, None]
    return np.clip(smooth + rng.integers(-40, 40, (n, c, h, w)), 0, 255).astype(np.uint8)


def pillow_crop_resize(image, box, size):
    """The reference: crop (top, left, height, width) out of (C, H, W), then Pillow's bilinear
    resize to (oh, ow), channel by channel."""
    top, left, h, w = (int(v) for v in box)
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(ch[top:top + h, left:left + w]))
                      .resize(size[::-1], Image.BILINEAR)) for ch in image]
    return np.stack(out)


@pytest.mark.parametrize("shape, size", [((6, 3, 40, 40), (24, 24)), ((5, 1, 30, 50), (32, 20)),
                                         ((4, 3, 17, 23), (40, 40))],
                         ids=["shrink", "gray-non-square", "enlarge"])
def test_random_resized_crop_matches_pillow_on_each_crop(shape, size):
    x = batch(*shape)
    t = RandomResizedCrop(size=size, scale=(0.1, 1.0))
    boxes = t.crop_boxes(shape[0], shape[2], shape[3], np.random.default_rng(3))
    out = t(x, np.random.default_rng(3))
    assert out.shape == (shape[0], shape[1], *size) and out.dtype == np.uint8
    for image, box, got in zip(x, boxes, out):
        want = pillow_crop_resize(image, box, size)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # Pillow rounds twice


@pytest.mark.parametrize("crop_fraction", [1.0, 0.875])
def test_resize_matches_pillow(crop_fraction):
    x = batch(3, 3, 36, 48)
    out = Resize(size=(20, 24), crop_fraction=crop_fraction)(x)
    h, w = round(36 * crop_fraction), round(48 * crop_fraction)
    box = (round((36 - h) / 2), round((48 - w) / 2), h, w)
    for image, got in zip(x, out):
        want = pillow_crop_resize(image, box, (20, 24))
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def torchvision_box(h, w, scale, ratio, tries, place):
    """torchvision's RandomResizedCrop.get_params, one image at a time, fed the same uniform
    draws: tries (2, 10) for the area and log-ratio, place (2,) for the position."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for k in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * tries[0, k])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * tries[1, k])
        cw = int(round(math.sqrt(target_area * aspect)))
        ch = int(round(math.sqrt(target_area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(place[0] * (h - ch + 1)), int(place[1] * (w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


@pytest.mark.parametrize("h, w, scale, ratio", [
    (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),
    (20, 60, (0.5, 1.0), (0.9, 1.1)),      # many tries fail: falls back to a centred box
    (50, 10, (2.0, 3.0), (3 / 4, 4 / 3)),  # never fits: always the fallback
    (40, 30, (0.3, 0.3), (1.0, 1.0)),
])
def test_crop_boxes_follow_torchvisions_algorithm(h, w, scale, ratio):
    n = 200
    t = RandomResizedCrop(scale=scale, ratio=ratio)
    boxes = t.crop_boxes(n, h, w, np.random.default_rng(7))
    draws = np.random.default_rng(7)
    tries, place = draws.random((n, 2, 10)), draws.random((n, 2))
    want = [torchvision_box(h, w, scale, ratio, tries[i], place[i]) for i in range(n)]
    np.testing.assert_array_equal(boxes, want)
    top, left, bh, bw = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() \
        and (left + bw <= w).all() and (bh > 0).all() and (bw > 0).all()


def test_per_image_draws_do_not_depend_on_the_batch():
    # distributed training draws per image (PerImageRNG): an image gets the same crop alone
    x = batch(4, 3, 20, 20)
    t = RandomResizedCrop(size=12)
    gens = lambda: [np.random.default_rng([1, i]) for i in range(4)]  # noqa: E731
    whole = t(x, PerImageRNG(gens()))
    alone = t(x[2:3], PerImageRNG(gens()[2:3]))
    np.testing.assert_array_equal(whole[2:3], alone)


def test_float_input_gives_float32_and_identity_box_is_exact():
    x = batch(2, 3, 9, 9)
    same = resize_boxes(x, [[0, 0, 9, 9]] * 2, (9, 9))
    np.testing.assert_array_equal(same, x)
    f = resize_boxes(x.astype(np.float64) / 255, [[0, 0, 9, 9]] * 2, (5, 5))
    assert f.dtype == np.float32
    np.testing.assert_allclose(f * 255, resize_boxes(x, [[0, 0, 9, 9]] * 2, (5, 5)), atol=0.51)
    assert Resize(9)(x) is not x and np.array_equal(Resize(9)(x), x)


def test_config_round_trip_and_default_size():
    t = build_transform({"type": "random_resized_crop", "scale": [0.2, 0.9]})
    assert t.get_config() == {"type": "random_resized_crop", "size": None, "scale": [0.2, 0.9],
                              "ratio": [0.75, 4 / 3]}
    assert build_transform(t.get_config()).get_config() == t.get_config()
    x = batch(3, 3, 14, 18)
    assert t(x, np.random.default_rng(0)).shape == x.shape  # size: the input's
    pipeline = build_transforms([{"type": "resize", "size": [7, 8], "crop_fraction": 0.5},
                                 {"type": "to_float"}])
    assert pipeline(x, None).shape == (3, 3, 7, 8)


@pytest.mark.parametrize("cfg, message", [
    ({"type": "random_resized_crop", "scale": [0.9, 0.1]}, "scale must be a pair"),
    ({"type": "random_resized_crop", "ratio": [0, 1]}, "ratio must be a pair"),
    ({"type": "random_resized_crop", "size": [4, 0]}, "size must be an int or a pair"),
    ({"type": "resize"}, "missing 1 required positional argument: 'size'"),
    ({"type": "resize", "size": 4, "crop_fraction": 1.5}, "crop_fraction must be in"),
    ({"type": "resize", "size": 4, "crop": 0.5}, "unknown key"),
])
def test_bad_configs_are_errors_naming_the_argument(cfg, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build_transform(cfg)
