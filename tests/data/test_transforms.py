import numpy as np
import pytest
from hypothesis import given, strategies as st

from cnnframe.data import (CIFAR10_MEAN, CIFAR10_STD, Compose, Normalize, RandomCrop,
                           RandomHorizontalFlip, ToFloat, build_transform, build_transforms)


def batch(rng, n=6, c=3, h=10, w=12):
    return rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)


def test_to_float_scales_to_unit_interval(rng):
    x = batch(rng)
    y = ToFloat()(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float64) / 255, rtol=1e-6)
    f = rng.standard_normal((2, 1, 3, 3))
    np.testing.assert_allclose(ToFloat()(f), f.astype(np.float32))  # floats are only cast


def test_normalize_per_channel(rng):
    x = rng.random((4, 3, 5, 5)).astype(np.float32)
    y = Normalize(CIFAR10_MEAN, CIFAR10_STD)(x)
    expected = (x - np.array(CIFAR10_MEAN)[:, None, None]) / np.array(CIFAR10_STD)[:, None, None]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32 and y is not x


def test_normalize_errors(rng):
    with pytest.raises(TypeError, match="to_float"):
        Normalize()(batch(rng))
    with pytest.raises(ValueError, match="3 channel means for a batch with 1 channels"):
        Normalize()(np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="std"):
        Normalize([0.5], [0.0])


def brute_force_windows(image, padding, size):
    """Every crop of the zero-padded image, as a set of bytes."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * padding, w + 2 * padding), image.dtype)
    padded[:, padding:padding + h, padding:padding + w] = image
    return {padded[:, i:i + size[0], j:j + size[1]].tobytes()
            for i in range(h + 2 * padding - size[0] + 1)
            for j in range(w + 2 * padding - size[1] + 1)}


@given(n=st.integers(1, 5), h=st.integers(3, 9), w=st.integers(3, 9), pad=st.integers(0, 3),
       shrink=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_random_crop_is_a_window_of_the_padded_image(n, h, w, pad, shrink, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 256, (n, 2, h, w), dtype=np.uint8)
    size = (h - shrink, w - shrink)
    y = RandomCrop(size, padding=pad)(x, np.random.default_rng(seed))
    assert y.shape == (n, 2, *size) and y.dtype == x.dtype
    for image, crop in zip(x, y):
        assert crop.tobytes() in brute_force_windows(image, pad, size)


def test_random_crop_varies_and_is_seeded(rng):
    x = rng.integers(1, 256, (64, 3, 32, 32), dtype=np.uint8)  # no zeros: padding shows
    crop = RandomCrop(32, padding=4)
    a = crop(x, np.random.default_rng(1))
    np.testing.assert_array_equal(a, crop(x, np.random.default_rng(1)))
    assert not np.array_equal(a, crop(x, np.random.default_rng(2)))
    # with 81 possible offsets, most of 64 images are shifted (and get zero borders)
    assert (a != x).any((1, 2, 3)).mean() > 0.8 and (a == 0).any()
    np.testing.assert_array_equal(RandomCrop(padding=0)(x, rng), x)
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCrop(50, padding=4)(x, rng)


@given(n=st.integers(1, 4), h=st.integers(2, 9), w=st.integers(2, 9), pad=st.integers(0, 8),
       shrink=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_reflect_padded_crop_is_a_window_of_numpy_reflect_padding(n, h, w, pad, shrink, seed):
    pad = min(pad, h - 1, w - 1)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 2, h, w), dtype=np.uint8)
    size = (h - shrink + pad, w - shrink + pad)
    y = RandomCrop(size, padding=pad, padding_mode="reflect")(x, np.random.default_rng(seed))
    assert y.shape == (n, 2, *size) and y.dtype == x.dtype
    for image, crop in zip(x, y):
        padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        windows = {padded[:, i:i + size[0], j:j + size[1]].tobytes()
                   for i in range(h + 2 * pad - size[0] + 1)
                   for j in range(w + 2 * pad - size[1] + 1)}
        assert crop.tobytes() in windows


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_random_crop_reuses_its_buffers_without_leaks_between_batches(rng, mode):
    # One crop object over batches of changing content and shape (its padded buffers are
    # kept between calls): each output is exactly the windows of numpy's padding.
    crop = RandomCrop(None, padding=2, padding_mode=mode)
    for shape in [(4, 3, 8, 8), (4, 3, 8, 8), (2, 1, 5, 7), (4, 3, 8, 8)]:
        x = rng.integers(1, 256, shape, dtype=np.uint8)
        y = crop(x, np.random.default_rng(0))
        n, _, h, w = shape
        padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)),
                        mode="constant" if mode == "zeros" else "reflect")
        offsets = np.random.default_rng(0)
        oy, ox = offsets.integers(0, 5, n), offsets.integers(0, 5, n)
        expected = [padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(n)]
        np.testing.assert_array_equal(y, np.stack(expected))


def test_reflect_padding_mode_config_and_errors(rng):
    crop = RandomCrop(padding=2, padding_mode="reflect")
    assert crop.get_config() == {"type": "random_crop", "size": None, "padding": 2,
                                 "padding_mode": "reflect"}
    x = rng.integers(1, 256, (8, 3, 6, 6), dtype=np.uint8)
    assert not (crop(x, rng) == 0).any()  # no black borders
    with pytest.raises(ValueError, match=r"padding_mode must be one of \['zeros', 'reflect'\], "
                                         "got 'wrap'"):
        RandomCrop(padding=2, padding_mode="wrap")
    with pytest.raises(ValueError, match="reflect padding 6 needs images larger than it, got 6x6"):
        RandomCrop(padding=6, padding_mode="reflect")(x, rng)


def test_random_crop_works_on_float_batches(rng):
    x = rng.random((3, 1, 6, 6)).astype(np.float32) + 1
    y = RandomCrop(padding=2)(x, rng)
    assert y.dtype == np.float32
    for image, crop in zip(x, y):
        assert crop.tobytes() in brute_force_windows(image, 2, (6, 6))


def test_horizontal_flip(rng):
    x = batch(rng, n=200)
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(x, rng), x)
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(x, rng), x[..., ::-1])
    y = RandomHorizontalFlip(0.5)(x, np.random.default_rng(3))
    flipped = (y == x[..., ::-1]).all((1, 2, 3))
    kept = (y == x).all((1, 2, 3))
    assert (flipped | kept).all() and 0.35 < flipped.mean() < 0.65
    np.testing.assert_array_equal(y, RandomHorizontalFlip(0.5)(x, np.random.default_rng(3)))


def test_inputs_are_untouched_unless_inplace(rng):
    x = batch(rng)
    original = x.copy()
    pipeline = build_transforms(["random_crop", "hflip", "to_float", "normalize"])
    y = pipeline(x, np.random.default_rng(0))
    np.testing.assert_array_equal(x, original)
    f = ToFloat()(x)
    f_copy = f.copy()
    Normalize()(f)
    RandomHorizontalFlip(1.0)(f, rng)
    np.testing.assert_array_equal(f, f_copy)
    # inplace=True gives the same values
    z = pipeline(x.copy(), np.random.default_rng(0), inplace=True)
    np.testing.assert_array_equal(y, z)


def test_compose_matches_manual_chain(rng):
    x = batch(rng, h=32, w=32)
    steps = [RandomCrop(32, 4), RandomHorizontalFlip(), ToFloat(), Normalize()]
    g = np.random.default_rng(7)
    manual = x
    for t in steps:
        manual = t(manual, g)
    np.testing.assert_array_equal(Compose(steps)(x, np.random.default_rng(7)), manual)
    # plain callables (batch, rng) may be mixed in
    double = Compose([ToFloat(), lambda b, r: b * 2])
    np.testing.assert_allclose(double(x), x / 255 * 2, rtol=1e-6)


def test_config_round_trip():
    cfgs = [{"type": "random_crop", "size": 28, "padding": 2}, {"type": "random_flip", "p": 0.3},
            {"type": "to_float"}, {"type": "normalize", "mean": [0.5], "std": [0.25]}]
    pipeline = build_transforms(cfgs)
    assert [type(t) for t in pipeline.transforms] == [RandomCrop, RandomHorizontalFlip, ToFloat,
                                                      Normalize]
    config = pipeline.get_config()
    assert config[0] == {"type": "random_crop", "size": [28, 28], "padding": 2,
                         "padding_mode": "zeros"}
    assert config[1] == {"type": "random_horizontal_flip", "p": 0.3}
    assert build_transforms(config).get_config() == config
    assert build_transforms(None) is None


def test_config_errors_name_valid_choices():
    with pytest.raises(ValueError, match=r"unknown transform type 'blur'.*normalize.*random_crop"):
        build_transform({"type": "blur"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['pad'\].*'padding'"):
        build_transform({"type": "random_crop", "pad": 4})
    with pytest.raises(ValueError, match="'type' key"):
        build_transform({"padding": 4})
    with pytest.raises(ValueError, match="p must be in"):
        build_transform({"type": "hflip", "p": 2})
