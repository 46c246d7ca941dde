"""cnnframe.data.augment: each augmentation against a plain per-image numpy reference that
draws the same random numbers, their semantics on cases with known answers, determinism,
dtype/shape preservation, config round trips, errors, and the DataLoader's handling of the
epoch/index context and of batch mixers (mixup, cutmix -> (N, K) label probabilities)."""
import math

import numpy as np
import pytest

from cnnframe.data import DataLoader, build_transform, build_transforms
from cnnframe.data.augment import (AlternatingFlip, BatchContext, ColorJitter, CutMix, Cutout,
                                   Mixup, RandomErasing, RandomTranslate)
from cnnframe.distributed.sampling import ShardedLoader

SHAPES = [(1, 3, 8, 8), (5, 3, 7, 10), (4, 1, 9, 6)]


def batch(shape, seed=0, dtype=np.uint8):
    r = np.random.default_rng(seed)
    if dtype == np.uint8:
        return r.integers(0, 256, shape, dtype=np.uint8)
    return r.random(shape).astype(dtype)


# ----------------------------------------------------------------------------- references

def ref_random_erasing(x, seed, p, scale, ratio, value):
    """torchvision's RandomErasing.get_params + erase, one image at a time."""
    r = np.random.default_rng(seed)
    n, c, h, w = x.shape
    erase, u, pos = r.random(n) < p, r.random((n, 10, 2)), r.random((n, 2))
    out = x.copy()
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for k in range(n):
        if not erase[k]:
            continue
        for a in range(10):
            area = h * w * (scale[0] + u[k, a, 0] * (scale[1] - scale[0]))
            aspect = np.exp(log_lo + u[k, a, 1] * (log_hi - log_lo))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if eh < h and ew < w:
                i, j = int(pos[k, 0] * (h - eh + 1)), int(pos[k, 1] * (w - ew + 1))
                out[k, :, i:i + eh, j:j + ew] = np.asarray(value).reshape(-1, 1, 1)
                break
    return out


def ref_cutout(x, seed, size, p, value):
    r = np.random.default_rng(seed)
    n, _, h, w = x.shape
    erase, cy, cx = r.random(n) < p, r.integers(0, h, n), r.integers(0, w, n)
    out = x.copy()
    for k in np.flatnonzero(erase):
        y0, x0 = cy[k] - size // 2, cx[k] - size // 2
        out[k, :, max(y0, 0):max(y0 + size, 0), max(x0, 0):max(x0 + size, 0)] = value
    return out


def _gray(img):
    g = np.float32(0.2989) * img[0] + np.float32(0.587) * img[1] + np.float32(0.114) * img[2]
    return np.trunc(g)


def _blend(a, b, f):
    return np.trunc(np.clip(f * a + (np.float32(1) - f) * b, 0, 255))


def ref_color_jitter(x, seed, ranges):
    """torchvision's ColorJitter on uint8 images (float32 blends, truncation), per image."""
    r = np.random.default_rng(seed)
    n, c = x.shape[:2]
    u, keys = r.random((n, 3)), r.random((n, 3))
    lo, hi = np.array([q[0] for q in ranges]), np.array([q[1] for q in ranges])
    factors = (lo + u * (hi - lo)).astype(np.float32)
    enabled = [q != (1.0, 1.0) for q in ranges]
    if c == 1:
        enabled[2] = False
    out = np.empty_like(x)
    for k in range(n):
        img = x[k].astype(np.float32)
        for op in sorted((o for o in range(3) if enabled[o]), key=lambda o: keys[k, o]):
            f = factors[k, op]
            gray = _gray(img) if c == 3 else img[0]
            if op == 0:
                img = _blend(img, np.float32(0), f)
            elif op == 1:
                img = _blend(img, np.float32(gray.sum(dtype=np.float64) / gray.size), f)
            else:
                img = _blend(img, gray, f)
        out[k] = img.astype(np.uint8)
    return out


def ref_translate(x, seed, max_shift, mode, fill):
    r = np.random.default_rng(seed)
    n, _, h, w = x.shape
    oy, ox = r.integers(0, 2 * max_shift + 1, n), r.integers(0, 2 * max_shift + 1, n)
    out = np.empty_like(x)
    pad = ((0, 0), (max_shift, max_shift), (max_shift, max_shift))
    for k in range(n):
        padded = (np.pad(x[k], pad, mode="reflect") if mode == "reflect"
                  else np.pad(x[k], pad, constant_values=fill))
        out[k] = padded[:, oy[k]:oy[k] + h, ox[k]:ox[k] + w]
    return out


def ref_mix(x, t, seed, kind, alpha, p):
    """torchvision's MixUp / CutMix on a float batch: partner = the image before, one lam."""
    r = np.random.default_rng(seed)
    apply, lam = r.random() < p, float(r.beta(alpha, alpha))
    x, t = x.copy(), t.copy()
    if not apply:
        return x, t
    n, _, h, w = x.shape
    out_x, out_t = x.copy(), t.copy()
    if kind == "mixup":
        for k in range(n):
            out_x[k] = x[k] * np.float32(lam) + x[k - 1] * np.float32(1 - lam)
            out_t[k] = t[k] * np.float32(lam) + t[k - 1] * np.float32(1 - lam)
        return out_x, out_t
    cy, cx = int(r.integers(0, h)), int(r.integers(0, w))
    rr = 0.5 * math.sqrt(1.0 - lam)
    y1, y2 = max(cy - int(rr * h), 0), min(cy + int(rr * h), h)
    x1, x2 = max(cx - int(rr * w), 0), min(cx + int(rr * w), w)
    kept = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
    for k in range(n):
        out_x[k, :, y1:y2, x1:x2] = x[k - 1, :, y1:y2, x1:x2]
        out_t[k] = t[k] * np.float32(kept) + t[k - 1] * np.float32(1 - kept)
    return out_x, out_t


# ----------------------------------------------------------------------------- vs references

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p,scale,ratio,value", [
    (0.5, (0.02, 0.33), (0.3, 3.3), 0),
    (1.0, (0.1, 0.6), (0.5, 2.0), [10, 20, 30]),
    (0.8, (0.3, 0.9), (0.2, 5.0), 255),         # many attempts do not fit
])
def test_random_erasing_matches_per_image_reference(shape, p, scale, ratio, value):
    if np.size(value) > 1 and shape[1] == 1:
        value = 7
    x = batch(shape, 1)
    got = RandomErasing(p, scale, ratio, value)(x, np.random.default_rng(5))
    np.testing.assert_array_equal(got, ref_random_erasing(x, 5, p, scale, ratio, value))


def test_random_erasing_known_square():
    """area 10% of 10x10 with aspect 1: round(sqrt(10)) = 3, a 3x3 square in every image."""
    x = np.full((6, 3, 10, 10), 200, np.uint8)
    y = RandomErasing(p=1.0, scale=(0.1, 0.1), ratio=(1.0, 1.0), value=5)(
        x, np.random.default_rng(0))
    for img in y:
        rows, cols = np.nonzero(img[0] == 5)
        assert len(rows) == 9 and np.ptp(rows) == 2 and np.ptp(cols) == 2
        assert np.array_equal(img[0], img[2])


def test_random_erasing_random_value_is_noise_inside_the_box_only():
    x = np.zeros((8, 3, 16, 16), np.uint8)
    y = RandomErasing(p=1.0, scale=(0.2, 0.2), ratio=(1.0, 1.0), value="random")(
        x, np.random.default_rng(0))
    ref = ref_random_erasing(x, 0, 1.0, (0.2, 0.2), (1.0, 1.0), 1)  # the box, marked by 1s
    assert np.all(y[ref == 0] == 0)
    assert len(np.unique(y[ref == 1])) > 100  # uniform noise over 0..255


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size,p", [(4, 1.0), (3, 0.5), (20, 1.0)])
def test_cutout_matches_per_image_reference(shape, size, p):
    x = batch(shape, 2)
    got = Cutout(size, p, value=9)(x, np.random.default_rng(3))
    np.testing.assert_array_equal(got, ref_cutout(x, 3, size, p, 9))


def test_cutout_square_is_size_by_size_inside_and_clipped_at_the_border():
    x = np.ones((200, 1, 12, 12), np.uint8)
    erased = (Cutout(size=4, p=1.0)(x, np.random.default_rng(0)) == 0).sum(axis=(1, 2, 3))
    assert erased.max() == 16 and erased.min() >= 4 and (erased < 16).any()


JITTER = [dict(brightness=0.4), dict(contrast=0.5), dict(saturation=0.6),
          dict(brightness=0.3, contrast=0.3, saturation=0.3),
          dict(brightness=[0.2, 1.8], contrast=[0.9, 1.1], saturation=[0.0, 0.5])]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kwargs", JITTER)
def test_color_jitter_matches_per_image_reference(shape, kwargs):
    x = batch(shape, 4)
    jitter = ColorJitter(**kwargs)
    got = jitter(x, np.random.default_rng(6))
    np.testing.assert_array_equal(got, ref_color_jitter(x, 6, jitter._ranges))


def test_color_jitter_fixed_factors_have_known_answers():
    x = batch((4, 3, 6, 6), 7)
    rng = np.random.default_rng
    # brightness 0.5: trunc(x / 2)
    np.testing.assert_array_equal(ColorJitter(brightness=[0.5, 0.5])(x, rng(0)), x // 2)
    # saturation 0: every channel becomes the truncated grayscale
    gray = np.trunc(0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).astype(np.uint8)
    got = ColorJitter(saturation=[0.0, 0.0])(x, rng(0))
    assert np.abs(got.astype(int) - gray[:, None].astype(int)).max() <= 1  # float32 rounding
    # contrast 0: every pixel becomes the image's mean gray level
    got = ColorJitter(contrast=[0.0, 0.0])(x, rng(0))
    mean = np.trunc(gray.reshape(4, -1).mean(axis=1))
    assert np.all(got == got[:, :1, :1, :1]) and np.abs(got[:, 0, 0, 0] - mean).max() <= 1


def test_color_jitter_order_varies_between_images():
    """With brightness and contrast both on, the order matters and is drawn per image."""
    x = batch((64, 3, 5, 5), 8)
    j = ColorJitter(brightness=[2.0, 2.0], contrast=[0.0, 0.0])
    y = j(x, np.random.default_rng(0))
    # either order gives a flat image: contrast 0 makes it its gray mean
    assert np.all(y == y[:, :1, :1, :1])
    # contrast first, then brightness 2: twice the truncated mean gray level of the image
    means = np.array([np.float32(_gray(img.astype(np.float32)).sum(dtype=np.float64) / 25)
                      for img in x])
    brightness_last = y[:, 0, 0, 0] == np.minimum(2 * np.trunc(means), 255)
    assert 10 < brightness_last.sum() < 54


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("max_shift,mode,fill", [(2, "constant", 0), (3, "constant", 128),
                                                 (2, "reflect", 0), (0, "constant", 0)])
def test_random_translate_matches_per_image_reference(shape, max_shift, mode, fill):
    x = batch(shape, 9)
    got = RandomTranslate(max_shift, mode, fill)(x, np.random.default_rng(2))
    np.testing.assert_array_equal(got, ref_translate(x, 2, max_shift, mode, fill))


@pytest.mark.parametrize("kind,alpha,p", [("mixup", 0.4, 1.0), ("mixup", 1.0, 0.5),
                                          ("cutmix", 1.0, 1.0), ("cutmix", 0.3, 1.0)])
@pytest.mark.parametrize("seed", range(4))
def test_mixers_match_per_image_reference(kind, alpha, p, seed):
    x = batch((6, 3, 9, 7), seed, np.float32)
    t = np.eye(4, dtype=np.float32)[np.random.default_rng(seed).integers(0, 4, 6)]
    mixer = (Mixup if kind == "mixup" else CutMix)(alpha, p)
    want_x, want_t = ref_mix(x, t, seed, kind, alpha, p)
    got_x, got_t = mixer.mix(x.copy(), t.copy(), np.random.default_rng(seed))
    np.testing.assert_array_equal(got_x, want_x)
    np.testing.assert_allclose(got_t, want_t, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_t.sum(axis=1), 1.0, rtol=1e-6)


def test_cutmix_label_weight_is_the_pasted_area():
    x = np.stack([np.full((1, 10, 10), k, np.float32) for k in range(5)])
    t = np.eye(5, dtype=np.float32)
    for seed in range(20):
        got_x, got_t = CutMix(1.0).mix(x.copy(), t.copy(), np.random.default_rng(seed))
        pasted = (got_x[1] == 0).mean()  # image 1 gets image 0's pixels
        assert got_t[1, 0] == pytest.approx(pasted, abs=1e-6)
        assert got_t[1, 1] == pytest.approx(1 - pasted, abs=1e-6)


# ----------------------------------------------------------------------------- alternating flip

def _flip_states(loader, epochs):
    """flipped[e, i]: whether dataset image i came out mirrored in epoch e."""
    n = loader.num_samples
    states = np.zeros((epochs, n), bool)
    for e in range(epochs):
        loader.set_epoch(e)
        seen = 0
        for b, (x, _) in enumerate(loader):
            idx = loader.order(e)[b * loader.batch_size:(b + 1) * loader.batch_size]
            states[e, idx] = x[:, 0, 0, 0] > x[:, 0, 0, -1]  # images are increasing left->right
            seen += len(idx)
        assert seen == n
    return states


def _ramp_images(n, w=6):
    return np.broadcast_to(np.arange(w, dtype=np.uint8) * 40, (n, 1, 2, w)).copy()


@pytest.mark.parametrize("batch_size", [7, 64])
def test_alternating_flip_alternates_from_a_random_start(batch_size):
    n = 400
    loader = DataLoader((_ramp_images(n), np.zeros(n, np.int64)), batch_size, seed=3,
                        transform=[{"type": "alternating_flip"}], prefetch=False)
    states = _flip_states(loader, 4)
    assert np.all(states[1:] != states[:-1])         # every image alternates every epoch
    assert 0.4 < states[0].mean() < 0.6              # half of the images start flipped
    other = DataLoader((_ramp_images(n), np.zeros(n, np.int64)), batch_size, seed=4,
                       transform=[{"type": "alternating_flip"}], prefetch=False)
    assert np.array_equal(_flip_states(loader, 1), states[:1])   # deterministic given seed
    assert 0.3 < (_flip_states(other, 1)[0] != states[0]).mean() < 0.7


def test_alternating_flip_matches_a_per_image_reference():
    x, idx = batch((5, 3, 4, 6), 1), np.array([3, 10, 0, 7, 42])
    flip = AlternatingFlip()
    for epoch in (0, 1, 2):
        ctx = BatchContext(seed=1, epoch=epoch, indices=idx)
        got = flip(x, None, context=ctx)
        bits = flip.flips(ctx)
        for k in range(5):
            np.testing.assert_array_equal(got[k], x[k, :, :, ::-1] if bits[k] else x[k])


def test_alternating_flip_needs_the_loader_context():
    with pytest.raises(TypeError, match="alternating_flip needs each image's epoch and dataset"):
        build_transforms([{"type": "alternating_flip"}])(batch((2, 3, 4, 4)), None)
    loader = ShardedLoader((batch((8, 3, 4, 4)), np.zeros(8, np.int64)), 4, prefetch=False,
                           transform=[{"type": "alternating_flip"}])
    with pytest.raises(TypeError, match="ShardedLoader"):
        loader.get_batch(0, 0)


# ----------------------------------------------------------------------------- common properties

PER_IMAGE = [
    {"type": "random_erasing", "p": 0.7},
    {"type": "random_erasing", "value": "random"},
    {"type": "cutout", "size": 3},
    {"type": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4},
    {"type": "random_translate", "max_shift": 2},
    {"type": "random_translate", "max_shift": 1, "padding_mode": "reflect"},
]


@pytest.mark.parametrize("cfg,dtype", [(c, d) for c in PER_IMAGE for d in (np.uint8, np.float32)
                                       if d == np.uint8 or c["type"] != "color_jitter"],
                         ids=lambda v: v["type"] if isinstance(v, dict) else np.dtype(v).name)
@pytest.mark.parametrize("shape", SHAPES)
def test_per_image_augmentations_keep_dtype_shape_and_input(cfg, shape, dtype):
    t = build_transform(cfg)
    x = batch(shape, 0, dtype)
    before = x.copy()
    y = t(x, np.random.default_rng(0))
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(x, before)                       # inplace=False: untouched
    again = t(x.copy(), np.random.default_rng(0), inplace=True)    # same result in place
    np.testing.assert_array_equal(again, y)
    other = t(x, np.random.default_rng(1))
    assert not np.array_equal(other, y) or shape[0] == 1           # depends on the rng


@pytest.mark.parametrize("cfg", PER_IMAGE + [
    {"type": "alternating_flip"}, {"type": "mixup", "alpha": 0.2, "p": 0.5},
    {"type": "cutmix"}, {"type": "color_jitter", "brightness": [0.5, 1.5], "saturation": 0.1},
    {"type": "cutout", "size": 5, "p": 0.5, "value": [1, 2, 3]}], ids=lambda c: c["type"])
def test_config_round_trip(cfg):
    t = build_transform(cfg)
    cfg2 = t.get_config()
    for key, value in cfg.items():  # what was given comes back (ints may come back as floats)
        assert cfg2[key] == value, key
    t2 = build_transform(cfg2)
    assert t2.get_config() == cfg2 and type(t2) is type(t)
    if cfg["type"] in {c["type"] for c in PER_IMAGE}:
        x = batch((4, 3, 8, 8))
        np.testing.assert_array_equal(t(x, np.random.default_rng(0)),
                                      t2(x, np.random.default_rng(0)))


def test_random_translate_pickles_and_copies():
    import copy
    import pickle
    t = RandomTranslate(3, "constant", 17)
    for t2 in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert t2.get_config() == t.get_config()
        x = batch((3, 3, 8, 8))
        np.testing.assert_array_equal(t2(x, np.random.default_rng(0)),
                                      t(x, np.random.default_rng(0)))


@pytest.mark.parametrize("cfg,exc,match", [
    ({"type": "random_erasing", "p": 1.5}, ValueError, r"random_erasing: p must be a prob.*1\.5"),
    ({"type": "random_erasing", "scale": [0.5, 0.1]}, ValueError, "random_erasing: scale"),
    ({"type": "random_erasing", "scale": [0.1, 1.5]}, ValueError, "scale must be a pair"),
    ({"type": "random_erasing", "ratio": [0.0, 1.0]}, ValueError, "random_erasing: ratio"),
    ({"type": "random_erasing", "value": "noise"}, ValueError, "value must be.*'noise'"),
    ({"type": "random_erasing", "ratio": 3}, ValueError, "ratio must be a pair"),
    ({"type": "cutout", "size": 0}, ValueError, "cutout: size must be an int >= 1, got 0"),
    ({"type": "cutout", "size": 2.5}, ValueError, "cutout: size"),
    ({"type": "cutout", "p": -0.1}, ValueError, "cutout: p"),
    ({"type": "color_jitter", "brightness": -0.1}, ValueError, "color_jitter: brightness.*-0.1"),
    ({"type": "color_jitter", "contrast": [1.2, 0.8]}, ValueError, "color_jitter: contrast"),
    ({"type": "color_jitter", "saturation": "lots"}, ValueError, "color_jitter: saturation"),
    ({"type": "color_jitter", "hue": 0.1}, ValueError, "'hue'.*valid keys.*brightness"),
    ({"type": "random_translate", "max_shift": -1}, ValueError, "random_translate: max_shift"),
    ({"type": "random_translate", "padding_mode": "zeros"}, ValueError,
     r"padding_mode must be one of \['constant', 'reflect'\]"),
    ({"type": "random_translate", "fill": "white"}, ValueError, "random_translate: fill"),
    ({"type": "mixup", "alpha": 0}, ValueError, "mixup: alpha must be a finite number > 0"),
    ({"type": "cutmix", "p": 2}, ValueError, "cutmix: p"),
    ({"type": "mixup", "alpah": 1}, ValueError, "'alpah'.*did you mean 'alpha'"),
    ({"type": "alternating_flip", "p": 0.5}, ValueError, "unknown key.*alternating_flip"),
])
def test_bad_arguments_name_the_argument(cfg, exc, match):
    with pytest.raises(exc, match=match):
        build_transform(cfg)


def test_bad_batches_name_the_problem():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="color_jitter: expected a uint8 batch.*before to_float"):
        ColorJitter(0.2)(batch((2, 3, 4, 4), 0, np.float32), rng)
    with pytest.raises(ValueError, match=r"contrast and saturation need 1 or 3 channels, got 2"):
        ColorJitter(contrast=0.2)(batch((2, 2, 4, 4)), rng)
    with pytest.raises(ValueError, match="value has 2 numbers but the batch has 3 channels"):
        RandomErasing(value=[1, 2])(batch((2, 3, 4, 4)), rng)
    with pytest.raises(ValueError, match=r"value 300.*\[0, 255\]"):
        Cutout(value=300)(batch((2, 3, 4, 4)), rng)
    with pytest.raises(ValueError, match=r"fill 300.*\[0, 255\]"):
        RandomTranslate(fill=300)(batch((2, 3, 4, 4)), rng)
    with pytest.raises(ValueError, match="reflect needs max_shift 4 smaller"):
        RandomTranslate(4, "reflect")(batch((2, 3, 4, 4)), rng)
    with pytest.raises(ValueError, match=r"expected a batch array of shape \(N, C, H, W\)"):
        Cutout()(np.zeros((3, 4, 4), np.uint8), rng)
    with pytest.raises(TypeError, match="mixup mixes images and labels"):
        Mixup()(batch((2, 3, 4, 4)), rng)


# ----------------------------------------------------------------------------- the DataLoader

def _labelled(n=50, k=5, seed=0):
    r = np.random.default_rng(seed)
    return r.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), r.integers(0, k, n)


MIXED = [{"type": "random_translate", "max_shift": 2}, {"type": "alternating_flip"},
         {"type": "to_float"}, {"type": "normalize"}, {"type": "mixup", "alpha": 0.4},
         {"type": "cutmix", "p": 0.8}]


def test_loader_with_mixers_yields_label_probabilities():
    x, y = _labelled()
    loader = DataLoader((x, y), 16, seed=1, transform=MIXED, prefetch=False)
    for e in range(2):
        for b, (xb, yb) in enumerate(loader):
            idx = loader.order(e)[b * 16:(b + 1) * 16]
            assert xb.dtype == np.float32 and xb.flags.c_contiguous
            assert yb.dtype == np.float32 and yb.shape == (len(idx), 5)
            np.testing.assert_allclose(yb.sum(axis=1), 1.0, rtol=1e-6)
            # the mass is on the image's own label and its partner's (the one before it)
            own, partner = np.eye(5)[y[idx]], np.eye(5)[y[np.roll(idx, 1)]]
            assert np.all((yb > 0) <= ((own + partner) > 0))


def test_loader_mixers_are_deterministic_and_resume_exactly():
    x, y = _labelled()
    a = DataLoader((x, y), 16, seed=1, transform=MIXED)
    first = [(xb.copy(), yb.copy()) for _, (xb, yb) in zip(range(6), a)]  # into epoch 2
    b = DataLoader((x, y), 16, seed=1, transform=MIXED)
    again = [(xb, yb) for _, (xb, yb) in zip(range(6), b)]
    c = DataLoader((x, y), 16, seed=1, transform=MIXED)
    c.load_state_dict({**a.state_dict(), "epoch": 0, "position": 2})  # resume at batch 2
    resumed = [(xb, yb) for _, (xb, yb) in zip(range(4), c)]
    for (x1, y1), (x2, y2) in zip(first, again):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    for (x1, y1), (x2, y2) in zip(first[2:], resumed):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    d = DataLoader((x, y), 16, seed=2, transform=MIXED)
    assert not np.array_equal(next(iter(d))[0], first[0][0])


def test_loader_mixer_equals_mixing_the_plain_batch():
    """The pipeline is: per-image transforms, to float, then the mixer on the batch rng."""
    x, y = _labelled()
    plain = [{"type": "cutout", "size": 3}, {"type": "to_float"}]
    mixed = DataLoader((x, y), 16, seed=1, transform=plain + [{"type": "mixup"}])
    base = DataLoader((x, y), 16, seed=1, transform=plain)
    for b in range(3):
        xb, yb = mixed.get_batch(0, b)
        rng = base.batch_rng(0, b)
        x0 = build_transforms(plain)(x[base.order(0)[b * 16:(b + 1) * 16]], rng)
        t0 = np.eye(5, dtype=np.float32)[y[base.order(0)[b * 16:(b + 1) * 16]]]
        want_x, want_t = Mixup().mix(x0, t0, rng)
        assert np.array_equal(xb, want_x) and np.array_equal(yb, want_t)


def test_loader_with_several_mixers_picks_one_per_batch():
    x, y = _labelled(n=512)
    # cutmix leaves pixels of two images side by side, mixup blends every pixel
    loader = DataLoader((x, y), 8, seed=0, prefetch=False, transform=[
        {"type": "to_float"}, {"type": "mixup", "alpha": 1.0}, {"type": "cutmix"}])
    kinds = []
    for xb, _ in loader:
        plain = x[loader.order(0)[len(kinds) * 8:(len(kinds) + 1) * 8]] / np.float32(255)
        kinds.append(bool(np.any(np.isclose(xb, plain).all(axis=1).any(axis=(1, 2)))))
    assert 0.3 < np.mean(kinds) < 0.7


def test_loader_without_mixers_keeps_integer_labels_and_p0_gives_one_hot():
    x, y = _labelled()
    xb, yb = DataLoader((x, y), 16, transform=[{"type": "alternating_flip"}]).get_batch(0, 0)
    assert yb.dtype == np.int64 and xb.dtype == np.float32
    loader = DataLoader((x, y), 16, transform=[{"type": "mixup", "p": 0.0}])
    xb, yb = loader.get_batch(0, 1)
    idx = loader.order(0)[16:32]
    np.testing.assert_array_equal(yb, np.eye(5, dtype=np.float32)[y[idx]])
    np.testing.assert_allclose(xb, x[idx] / np.float32(255), rtol=1e-6)


def test_loader_num_classes_comes_from_the_dataset_classes():
    from cnnframe.data import ArrayDataset
    x, y = _labelled(k=3)
    ds = ArrayDataset(x, y, classes=[str(k) for k in range(7)])
    _, yb = DataLoader(ds, 8, transform=[{"type": "cutmix"}]).get_batch(0, 0)
    assert yb.shape == (8, 7)


def test_mixers_are_refused_by_the_sharded_loader():
    x, y = _labelled()
    loader = ShardedLoader((x, y), 8, prefetch=False, transform=[{"type": "mixup"}])
    with pytest.raises(TypeError, match="mixup mixes images and labels"):
        loader.get_batch(0, 0)


@pytest.mark.parametrize("cfg", PER_IMAGE, ids=lambda c: c["type"])
def test_per_image_augmentations_run_under_the_sharded_loader(cfg):
    """Per-image draws: an image is augmented the same whichever rank reads it."""
    x, y = _labelled(n=16)
    whole = ShardedLoader((x, y), 8, rank=0, world_size=1, transform=[cfg], prefetch=False)
    halves = [ShardedLoader((x, y), 8, rank=r, world_size=2, transform=[cfg], prefetch=False)
              for r in range(2)]
    xb, _ = whole.get_batch(0, 1)
    parts = np.concatenate([h.get_batch(0, 1)[0] for h in halves])
    np.testing.assert_array_equal(xb, parts)
