"""Augmentations beyond crop and flip: random erasing and cutout, colour jitter, random
translation, the derandomized alternating flip, and the batch mixers mixup and cutmix.

Per-image augmentations follow the `cnnframe.data.transforms` protocol: ``t(batch, rng,
inplace=False)`` on a whole (N, C, H, W) batch, every random number drawn with one value
(or row) per image, so they vectorise over the batch and also run under the distributed
loader's per-image generators.  Two kinds need more than the batch:

- `AlternatingFlip` (a `ContextTransform`) needs the epoch and each image's dataset index;
  `cnnframe.data.DataLoader` passes them as ``context=BatchContext(seed, epoch, indices)``.
- `Mixup` and `CutMix` (`BatchMix`) mix images *and labels*: the DataLoader applies them
  last, to the finished float32 batch (after to_float / normalize, whatever their place in
  the list), and then yields the labels as (N, K) float32 class probabilities.  With several
  mixers listed, each batch uses one of them, chosen uniformly at random (as timm's
  ``switch_prob=0.5`` / torchvision's ``RandomChoice([CutMix, MixUp])``).

`BatchPipeline` is what the DataLoader runs when a pipeline holds either kind.
"""
import math
from typing import NamedTuple

import numpy as np

from cnnframe.data import transforms as _transforms
from cnnframe.data.transforms import Compose, RandomCrop, ToFloat, Transform, _check_batch

__all__ = ["BatchContext", "ContextTransform", "BatchMix", "RandomErasing", "Cutout",
           "ColorJitter", "RandomTranslate", "AlternatingFlip", "Mixup", "CutMix",
           "BatchPipeline", "AUGMENTATIONS"]


class BatchContext(NamedTuple):
    """Where a batch comes from: the loader's `seed`, the `epoch` and the dataset `indices`
    (N,) of its images."""
    seed: int
    epoch: int
    indices: np.ndarray


class ContextTransform(Transform):
    """A per-image transform that also needs the `BatchContext` (passed as ``context=``)."""

    def _require(self, context):
        if context is None:
            raise TypeError(
                f"{self.type_name} needs each image's epoch and dataset index, which "
                "cnnframe.data.DataLoader passes as context=BatchContext(...); it was called "
                "without them (a Compose called directly, or the distributed ShardedLoader, "
                "which does not support it)")
        return context


class BatchMix(Transform):
    """A batch mixer: ``mix(x, targets, rng) -> (x, targets)`` on a float batch (N, C, H, W)
    and its (N, K) class probabilities; run by the DataLoader, never as a plain transform."""

    def __call__(self, x, rng=None, inplace=False):
        raise TypeError(
            f"{self.type_name} mixes images and labels, so cnnframe.data.DataLoader applies it "
            "(its batches then carry (N, K) class probabilities); it cannot run as a plain "
            "(batch, rng) transform (a Compose called directly, or the distributed "
            "ShardedLoader, which does not support it)")

    def mix(self, x, targets, rng):
        raise NotImplementedError


# ----------------------------------------------------------------------------- checks

def _probability(name, value, where):
    try:
        p = float(value)
    except (TypeError, ValueError):
        p = math.nan
    if isinstance(value, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}: {name} must be a probability in [0, 1], got {value!r}")
    return p


def _positive(name, value, where):
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{where}: {name} must be a finite number > 0, got {value!r}")
    return v


def _range(name, value, where, low=0.0, high=math.inf):
    """A pair (lo, hi) with low <= lo <= hi <= high, as a tuple of floats."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (low <= lo <= hi <= high):
        raise ValueError(f"{where}: {name} must be a pair [min, max] with {low:g} <= min <= "
                         f"max <= {high:g}, got {value!r}")
    return lo, hi


def _fill_value(value, x, where):
    """`value` (a number or one number per channel) as an array broadcasting to (1, C, 1, 1)."""
    v = np.asarray(value, np.float64).reshape(-1)
    c = x.shape[1]
    if v.size not in (1, c):
        raise ValueError(f"{where}: value has {v.size} numbers but the batch has {c} channels "
                         f"(shape {x.shape}); give one number or one per channel")
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        if np.any(v < info.min) or np.any(v > info.max) or np.any(v != np.round(v)):
            raise ValueError(f"{where}: value {value!r} is not a whole number in "
                             f"[{info.min}, {info.max}], as a {x.dtype} batch needs")
    return v.astype(x.dtype).reshape(1, -1, 1, 1)


def _box_mask(top, left, height, width, h, w):
    """Bool (N, 1, h, w): True inside each image's box rows [top, top+height) x columns
    [left, left+width)."""
    rows, cols = np.arange(h), np.arange(w)
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])
    return (in_rows[:, None, :, None] & in_cols[:, None, None, :])


def _fill_boxes(x, mask, value, rng, inplace):
    """x with the masked pixels set to `value` (array) or, for "random", uniform noise."""
    out = x if inplace else x.copy()
    if isinstance(value, str):  # "random": uniform over the dtype's range ([0, 1) for floats)
        if np.issubdtype(x.dtype, np.integer):
            info = np.iinfo(x.dtype)
            noise = rng.integers(info.min, info.max, x.shape, dtype=x.dtype, endpoint=True)
        else:
            noise = rng.random(x.shape).astype(x.dtype, copy=False)
        np.copyto(out, noise, where=mask)
    else:
        np.copyto(out, value, where=mask)
    return out


# ----------------------------------------------------------------------------- erasing

class RandomErasing(Transform):
    """Erase a random rectangle of each image with probability `p`: torchvision's
    ``RandomErasing`` (Zhong et al. 2017) on a whole batch.

    For each image: up to 10 attempts draw an area ``H*W*U(scale)`` and an aspect ratio
    ``exp(U(log ratio))``, giving ``h = round(sqrt(area * aspect))`` and ``w = round(sqrt(area
    / aspect))``; the first attempt with ``h < H`` and ``w < W`` is placed uniformly at random
    and filled with `value`; when none fits, the image is left alone.

    Parameters
    ----------
    p : float in [0, 1]
        Probability that an image is erased.
    scale : (float, float), 0 <= min <= max <= 1
        Range of the erased fraction of the image area.
    ratio : (float, float), 0 < min <= max
        Range of the aspect ratio h / w (drawn log-uniformly).
    value : number, list of one number per channel, or "random"
        The fill: a constant (0..255 for uint8 batches), or "random": uniform noise over the
        dtype's range per pixel (torchvision draws normal noise, meant for normalised floats;
        here the batch is usually still uint8).

    Notes
    -----
    Random numbers per batch of n images: ``random(n)`` (erase or not), ``random((n, 10,
    2))`` (area and aspect of the attempts), ``random((n, 2))`` (position), then the noise.
    """
    type_name = "random_erasing"

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0):
        self.p = _probability("p", p, self.type_name)
        self.scale = _range("scale", scale, self.type_name, 0.0, 1.0)
        self.ratio = _range("ratio", ratio, self.type_name)
        if self.ratio[0] <= 0:
            raise ValueError(f"{self.type_name}: ratio must be a pair [min, max] with "
                             f"0 < min <= max, got {ratio!r}")
        self.value = _check_value(value, self.type_name)

    def _config(self):
        return {"p": self.p, "scale": list(self.scale), "ratio": list(self.ratio),
                "value": self.value}

    def params(self, n, h, w, rng):
        """(erase, top, left, height, width), each (n,): torchvision's get_params per image
        (height = width = 0 where nothing is erased)."""
        erase = rng.random(n) < self.p
        u = rng.random((n, 10, 2))
        position = rng.random((n, 2))
        area = (h * w) * (self.scale[0] + u[..., 0] * (self.scale[1] - self.scale[0]))
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = np.exp(log_lo + u[..., 1] * (log_hi - log_lo))
        eh = np.round(np.sqrt(area * aspect)).astype(np.int64)    # round half to even, as
        ew = np.round(np.sqrt(area / aspect)).astype(np.int64)    # Python's round()
        fits = (eh < h) & (ew < w)
        first = fits.argmax(axis=1)            # the first attempt that fits (0 if none does)
        rows = np.arange(n)
        ok = erase & fits[rows, first]
        height = np.where(ok, eh[rows, first], 0)
        width = np.where(ok, ew[rows, first], 0)
        top = np.minimum((position[:, 0] * (h - height + 1)).astype(np.int64), h - height)
        left = np.minimum((position[:, 1] * (w - width + 1)).astype(np.int64), w - width)
        return ok, top, left, height, width

    def __call__(self, x, rng, inplace=False):
        _check_batch(x, self.type_name)
        n, _, h, w = x.shape
        value = self.value if isinstance(self.value, str) else \
            _fill_value(self.value, x, self.type_name)
        _, top, left, height, width = self.params(n, h, w, rng)
        return _fill_boxes(x, _box_mask(top, left, height, width, h, w), value, rng, inplace)


def _check_value(value, where):
    if isinstance(value, str):
        if value != "random":
            raise ValueError(f"{where}: value must be a number, a list of numbers (one per "
                             f"channel) or \"random\", got {value!r}")
        return value
    try:
        v = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        v = None
    if v is None or v.ndim > 1 or v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"{where}: value must be a number, a list of numbers (one per "
                         f"channel) or \"random\", got {value!r}")
    return v.tolist()


class Cutout(Transform):
    """Erase a fixed `size` x `size` square of each image with probability `p` (DeVries &
    Taylor 2017): the square is centred on a uniformly random pixel and clipped at the image
    border, so near the edges less is erased.  The fixed-size variant of `RandomErasing`.

    Parameters
    ----------
    size : int >= 1
        Side of the square (CIFAR-10: 16 in the paper, 8-12 for short runs).
    p : float in [0, 1]
    value : number, list of one number per channel, or "random" (as `RandomErasing`)

    Notes
    -----
    Random numbers per batch of n images: ``random(n)`` (erase or not), then
    ``integers(0, H, n)`` and ``integers(0, W, n)`` (the centre), then the noise.
    """
    type_name = "cutout"

    def __init__(self, size=8, p=1.0, value=0):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"cutout: size must be an int >= 1, got {size!r}")
        self.size = int(size)
        self.p = _probability("p", p, self.type_name)
        self.value = _check_value(value, self.type_name)

    def _config(self):
        return {"size": self.size, "p": self.p, "value": self.value}

    def params(self, n, h, w, rng):
        """(top, left, height, width), each (n,): the clipped squares (height 0: not erased)."""
        erase = rng.random(n) < self.p
        cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
        y0, x0 = cy - self.size // 2, cx - self.size // 2
        top, left = np.clip(y0, 0, h), np.clip(x0, 0, w)
        height = np.where(erase, np.clip(y0 + self.size, 0, h) - top, 0)
        width = np.where(erase, np.clip(x0 + self.size, 0, w) - left, 0)
        return top, left, height, width

    def __call__(self, x, rng, inplace=False):
        _check_batch(x, self.type_name)
        n, _, h, w = x.shape
        value = self.value if isinstance(self.value, str) else \
            _fill_value(self.value, x, self.type_name)
        top, left, height, width = self.params(n, h, w, rng)
        return _fill_boxes(x, _box_mask(top, left, height, width, h, w), value, rng, inplace)


# ----------------------------------------------------------------------------- colour

_GRAY = (np.float32(0.2989), np.float32(0.587), np.float32(0.114))  # torchvision's weights


def gray_uint8(x):
    """torchvision's ``rgb_to_grayscale`` of integer-valued float32 images (N, 3, ...):
    ``0.2989 R + 0.587 G + 0.114 B`` in float32, truncated as the uint8 cast does; (N, 1, ...).
    """
    g = x[:, 0] * _GRAY[0]
    g += x[:, 1] * _GRAY[1]
    g += x[:, 2] * _GRAY[2]
    return np.trunc(g, out=g)[:, None]


class ColorJitter(Transform):
    """Randomly change the brightness, contrast and saturation of each uint8 image, as
    torchvision's ``ColorJitter`` (without hue) does to uint8 tensors.

    Each argument is a number ``b >= 0``, meaning factors in ``[max(0, 1 - b), 1 + b]``, or a
    pair ``[min, max]`` with ``0 <= min <= max``; 0 (or [1, 1]) leaves that property alone.
    Per image, a factor is drawn uniformly from each range and the enabled operations run in
    a random order, each a blend ``clip(f * img + (1 - f) * ref, 0, 255)`` truncated to an
    integer (torchvision's ``_blend``): brightness with ``ref = 0``, contrast with ``ref`` the
    mean of the image's grayscale, saturation with ``ref`` its grayscale (``0.2989 R + 0.587
    G + 0.114 B``, truncated).  Single-channel images have no saturation and use themselves
    as grayscale.

    Parameters
    ----------
    brightness, contrast, saturation : float or (float, float)

    Notes
    -----
    Random numbers per batch of n images: ``random((n, 3))`` (the factors of brightness,
    contrast, saturation) and ``random((n, 3))`` (sort keys giving each image's order).
    """
    type_name = "color_jitter"
    OPS = ("brightness", "contrast", "saturation")
    BLOCK = 32  # images per block of the float32 computation

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self._ranges = [self._factor_range(name, value) for name, value in
                        zip(self.OPS, (brightness, contrast, saturation))]

    def _factor_range(self, name, value):
        if np.ndim(value) == 0:
            try:
                b = float(value)
            except (TypeError, ValueError):
                b = math.nan
            if isinstance(value, bool) or not (b >= 0 and math.isfinite(b)):
                raise ValueError(f"color_jitter: {name} must be a number >= 0 or a pair "
                                 f"[min, max] with 0 <= min <= max, got {value!r}")
            return max(0.0, 1.0 - b), 1.0 + b
        lo, hi = _range(name, value, "color_jitter")
        if not math.isfinite(hi):
            raise ValueError(f"color_jitter: {name} must be finite, got {value!r}")
        return lo, hi

    def _config(self):
        def plain(v):
            return [float(u) for u in v] if np.ndim(v) else float(v)
        return {name: plain(getattr(self, name)) for name in self.OPS}

    def params(self, n, rng):
        """(factors (n, 3), keys (n, 3)): per image the factor of each operation (brightness,
        contrast, saturation) and sort keys: the enabled operations run by increasing key."""
        u, keys = rng.random((n, 3)), rng.random((n, 3))
        lo = np.array([r[0] for r in self._ranges])
        hi = np.array([r[1] for r in self._ranges])
        return lo + u * (hi - lo), keys

    def enabled(self, channels):
        """Which operations change an image of `channels` channels (list of 3 bools)."""
        enabled = [r != (1.0, 1.0) for r in self._ranges]
        if channels == 1:
            enabled[2] = False  # no saturation to change in a gray image
        elif channels != 3 and (enabled[1] or enabled[2]):
            raise ValueError(f"color_jitter: contrast and saturation need 1 or 3 channels, "
                             f"got {channels}")
        return enabled

    def __call__(self, x, rng, inplace=False):
        _check_batch(x, self.type_name)
        if x.dtype != np.uint8:
            raise TypeError(f"color_jitter: expected a uint8 batch, got {x.dtype}; put it "
                            "before to_float")
        n, c = x.shape[:2]
        factors, keys = self.params(n, rng)
        enabled = self.enabled(c)
        if not any(enabled):
            return x if inplace else x.copy()
        # Each image's enabled operations, by increasing key (disabled ones sort last).
        order = np.argsort(np.where(enabled, keys, np.inf), axis=1, kind="stable")
        op_factors = np.take_along_axis(factors, order, axis=1).astype(np.float32)
        out = x if inplace else np.empty_like(x)
        # Blocks of images small enough to stay in the L2 cache through all the passes.
        for lo in range(0, n, self.BLOCK):
            hi = min(lo + self.BLOCK, n)
            # (images, channels, pixels): long contiguous inner loops for the broadcasts
            y = x[lo:hi].reshape(hi - lo, c, -1).astype(np.float32)
            for slot in range(sum(enabled)):
                self._blend(y, order[lo:hi, slot], op_factors[lo:hi, slot], c)
            # y holds integer-valued floats in [0, 255]: the cast is exact
            np.copyto(out[lo:hi], y.reshape(x[lo:hi].shape), casting="unsafe")
        return out

    @staticmethod
    def _blend(y, op, f, c):
        """One operation per image on y (N, C, H*W), in place: ``y = trunc(clip(f * y + (1 - f)
        * ref, 0, 255))``, ref chosen by the image's `op` (0: 0, 1: mean gray, 2: grayscale)."""
        one_minus_f = np.float32(1) - f
        gray_coef = np.where(op == 2, one_minus_f, np.float32(0))  # (1 - f) or an exact 0
        mean_coef = np.where(op == 1, one_minus_f, np.float32(0))
        ref = None
        if gray_coef.any() or mean_coef.any():
            gray = gray_uint8(y) if c == 3 else y
            # integer sums are exact in float64: the mean does not depend on the summing order
            mean = (gray.sum(axis=(1, 2), dtype=np.float64) / gray[0].size).astype(np.float32)
            ref = gray * gray_coef[:, None, None]
            ref += (mean_coef * mean)[:, None, None]
        y *= f[:, None, None]
        if ref is not None:
            y += ref
        np.clip(y, 0, 255, out=y)
        np.trunc(y, out=y)


# ----------------------------------------------------------------------------- geometry

class RandomTranslate(RandomCrop):
    """Shift each image by a random (dy, dx), each uniform in [-max_shift, max_shift],
    keeping its size: airbench's translation.  The uncovered border gets `fill`
    (padding_mode "constant") or the image mirrored at its edge ("reflect", what airbench
    uses; needs max_shift smaller than the image).

    Parameters
    ----------
    max_shift : int >= 0
    padding_mode : "constant" or "reflect"
    fill : number
        The border value for "constant" (0..255 for uint8 batches).

    Notes
    -----
    The same as ``random_crop`` with ``padding = max_shift`` and no size (the shift is
    ``max_shift - offset`` for its crop offsets), with a choice of fill.  Random numbers
    per batch of n images: ``integers(0, 2 * max_shift + 1, n)`` twice (rows, then columns).
    """
    type_name = "random_translate"
    TRANSLATE_MODES = ("constant", "reflect")

    def __init__(self, max_shift=2, padding_mode="constant", fill=0):
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) \
                or max_shift < 0:
            raise ValueError(f"random_translate: max_shift must be an int >= 0, got "
                             f"{max_shift!r}")
        if padding_mode not in self.TRANSLATE_MODES:
            raise ValueError(f"random_translate: padding_mode must be one of "
                             f"{list(self.TRANSLATE_MODES)}, got {padding_mode!r}")
        if isinstance(fill, bool) or not isinstance(fill, (int, float, np.number)) \
                or not math.isfinite(fill):
            raise ValueError(f"random_translate: fill must be a finite number, got {fill!r}")
        super().__init__(size=None, padding=int(max_shift),
                         padding_mode="zeros" if padding_mode == "constant" else "reflect")
        self.max_shift, self.translate_mode, self.fill = int(max_shift), padding_mode, fill

    def _config(self):
        return {"max_shift": self.max_shift, "padding_mode": self.translate_mode,
                "fill": self.fill}

    def __getstate__(self):
        return self._config()

    def _buffer(self, name, shape, dtype):
        # The padded buffer's border is never written after creation: start it at `fill`.
        buf = getattr(self._local, name, None)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.full(shape, self.fill, dtype)
            setattr(self._local, name, buf)
        return buf

    def __call__(self, x, rng, inplace=False):
        _check_batch(x, self.type_name)
        if self.translate_mode == "reflect" and self.max_shift >= min(x.shape[2:]):
            raise ValueError(f"random_translate: reflect needs max_shift {self.max_shift} "
                             f"smaller than the images, got shape {x.shape}")
        if np.issubdtype(x.dtype, np.integer) and self.translate_mode == "constant":
            info = np.iinfo(x.dtype)
            if not (info.min <= self.fill <= info.max and float(self.fill).is_integer()):
                raise ValueError(f"random_translate: fill {self.fill!r} is not a whole number "
                                 f"in [{info.min}, {info.max}], as a {x.dtype} batch needs")
        return super().__call__(x, rng, inplace)


def _flip_start_bits(seed, indices):
    """A fixed pseudo-random bit per (seed, dataset index): splitmix64 of the index mixed
    with a key from the seed, vectorised (uint64 arithmetic wraps around)."""
    key = np.random.SeedSequence([int(seed), 3]).generate_state(1, np.uint64)[0]
    z = np.asarray(indices, np.uint64) * np.uint64(0x9E3779B97F4A7C15) + key
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(63)).astype(bool)


class AlternatingFlip(ContextTransform):
    """Derandomized horizontal flip (airbench, Jordan 2024): each image is mirrored in every
    other epoch, starting from a per-image random choice, so over any two epochs every image
    is seen both ways.

    Image i is flipped in epoch e when ``start(seed, i) XOR (e odd)``, where ``start`` is a
    fixed pseudo-random bit of the loader's seed and the dataset index (half the images
    start flipped).  It draws nothing from the batch rng; the batch must come from
    `cnnframe.data.DataLoader`, which passes the epoch and indices (``context=``).
    """
    type_name = "alternating_flip"

    def flips(self, context):
        """Bool (N,): which images of the batch `context` describes are flipped."""
        return _flip_start_bits(context.seed, context.indices) ^ bool(int(context.epoch) % 2)

    def __call__(self, x, rng=None, inplace=False, context=None):
        _check_batch(x, self.type_name)
        context = self._require(context)
        if len(context.indices) != x.shape[0]:
            raise ValueError(f"alternating_flip: context has {len(context.indices)} indices "
                             f"for a batch of shape {x.shape}")
        flip = np.flatnonzero(self.flips(context))
        out = x if inplace else x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out


# ----------------------------------------------------------------------------- mixing

class _Mixer(BatchMix):
    def __init__(self, alpha=1.0, p=1.0):
        self.alpha = _positive("alpha", alpha, self.type_name)
        self.p = _probability("p", p, self.type_name)

    def _config(self):
        return {"alpha": self.alpha, "p": self.p}

    def _draw(self, rng):
        """(mix this batch?, lam ~ Beta(alpha, alpha)); both drawn always."""
        return rng.random() < self.p, float(rng.beta(self.alpha, self.alpha))

    @staticmethod
    def _mix_targets(targets, lam):
        """lam * t + (1 - lam) * t rolled by one image (each image's partner is the one
        before it in the batch, as in torchvision's MixUp/CutMix)."""
        out = np.roll(targets, 1, axis=0)
        out *= targets.dtype.type(1.0 - lam)
        out += targets.dtype.type(lam) * targets
        return out


class Mixup(_Mixer):
    """Mixup (Zhang et al. 2018), torchvision's ``MixUp``: one ``lam ~ Beta(alpha, alpha)``
    per batch, each image blended with the image before it in the batch (the batch rolled
    by one), ``x = lam * x + (1 - lam) * x_rolled``, and the labels alike.

    Parameters
    ----------
    alpha : float > 0
        Beta distribution parameter (0.2-0.4 for CIFAR/ImageNet, 1.0 uniform).
    p : float in [0, 1]
        Probability that a batch is mixed (else its labels are one-hot).

    Notes
    -----
    Random numbers per batch: ``random()`` then ``beta(alpha, alpha)``.
    """
    type_name = "mixup"

    def mix(self, x, targets, rng):
        """Mix a float batch in place and return (x, mixed targets).

        Parameters
        ----------
        x : ndarray, float (N, C, H, W), overwritten
        targets : ndarray, float (N, K), class probabilities
        rng : numpy.random.Generator

        Returns
        -------
        (ndarray (N, C, H, W), ndarray (N, K))
        """
        apply, lam = self._draw(rng)
        if not apply:
            return x, targets
        other = np.roll(x, 1, axis=0)
        other *= x.dtype.type(1.0 - lam)
        x *= x.dtype.type(lam)
        x += other
        return x, self._mix_targets(targets, lam)


class CutMix(_Mixer):
    """CutMix (Yun et al. 2019), torchvision's ``CutMix``: one ``lam ~ Beta(alpha, alpha)``
    per batch and one box for the whole batch, of sides ``sqrt(1 - lam)`` times the image's,
    centred on a uniformly random pixel and clipped at the border; inside it each image gets
    the pixels of the image before it in the batch.  The labels are mixed with the area
    actually kept, ``lam' = 1 - box area / image area``.

    Parameters
    ----------
    alpha : float > 0
        Beta distribution parameter (1.0 in the paper).
    p : float in [0, 1]
        Probability that a batch is mixed.

    Notes
    -----
    Random numbers per batch: ``random()``, ``beta(alpha, alpha)``, then ``integers(0, H)``
    and ``integers(0, W)`` for the centre.
    """
    type_name = "cutmix"

    def box(self, lam, h, w, rng):
        """(y1, y2, x1, x2) of torchvision's CutMix box."""
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        r = 0.5 * math.sqrt(1.0 - lam)
        half_h, half_w = int(r * h), int(r * w)
        return max(cy - half_h, 0), min(cy + half_h, h), max(cx - half_w, 0), min(cx + half_w, w)

    def mix(self, x, targets, rng):
        """Paste the box in place and return (x, mixed targets); see `Mixup.mix`."""
        apply, lam = self._draw(rng)
        if not apply:
            return x, targets
        h, w = x.shape[2:]
        y1, y2, x1, x2 = self.box(lam, h, w, rng)
        x[:, :, y1:y2, x1:x2] = np.roll(x[:, :, y1:y2, x1:x2], 1, axis=0)
        kept = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        return x, self._mix_targets(targets, kept)


# ----------------------------------------------------------------------------- pipeline

def _flatten(transform):
    if isinstance(transform, Compose):
        return [t for inner in transform.transforms for t in _flatten(inner)]
    return [transform]


class BatchPipeline:
    """What the DataLoader runs on a batch when its transforms include a `ContextTransform`
    or a `BatchMix`: the other transforms in order (context transforms get the
    `BatchContext`), the conversion to float32, then one of the mixers.

    Parameters
    ----------
    transform : Transform or Compose (nested Composes are flattened)
    num_classes : int, optional
        K of the (N, K) targets; needed when there is a mixer.
    """

    def __init__(self, transform, num_classes=None):
        steps = _flatten(transform)
        self.steps = [t for t in steps if not isinstance(t, BatchMix)]
        self.mixers = [t for t in steps if isinstance(t, BatchMix)]
        if self.mixers and (num_classes is None or int(num_classes) < 1):
            raise ValueError(f"{self.mixers[0].type_name} needs the number of classes of the "
                             f"dataset to make (N, K) label probabilities, got {num_classes!r}")
        self.num_classes = None if num_classes is None else int(num_classes)

    @staticmethod
    def needed(transform):
        """Whether `transform` holds a transform that only a BatchPipeline can run."""
        return transform is not None and any(isinstance(t, (ContextTransform, BatchMix))
                                             for t in _flatten(transform))

    def __call__(self, x, labels, rng, context):
        """Run the pipeline on a batch the caller owns (it may be overwritten).

        Parameters
        ----------
        x : ndarray (N, C, H, W), usually uint8
        labels : ndarray, int (N,)
        rng : numpy.random.Generator of the batch
        context : BatchContext

        Returns
        -------
        x : ndarray, float32 (N, C, H, W), C-contiguous
        y : `labels` unchanged, or with mixers float32 (N, K) class probabilities
        """
        inplace = True
        for t in self.steps:
            if isinstance(t, ContextTransform):
                y = t(x, rng, inplace=inplace, context=context)
            elif isinstance(t, Transform):
                y = t(x, rng, inplace=inplace)
            else:
                y = t(x, rng)
            inplace = inplace or not np.may_share_memory(y, x)
            x = y
        if x.dtype != np.float32:  # as the DataLoader does: integers are scaled to [0, 1]
            x = ToFloat()(x)
        x = np.ascontiguousarray(x)
        if not self.mixers:
            return x, labels
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"{self.mixers[0].type_name} needs integer class labels, got dtype "
                            f"{labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes}) for "
                             f"{self.mixers[0].type_name}, got [{labels.min()}, {labels.max()}]")
        targets = np.zeros((len(labels), self.num_classes), np.float32)
        targets[np.arange(len(labels)), labels] = 1
        mixer = self.mixers[0]
        if len(self.mixers) > 1:  # one mixer per batch, chosen uniformly
            mixer = self.mixers[int(rng.integers(0, len(self.mixers)))]
        return mixer.mix(x, targets, rng)


AUGMENTATIONS = {cls.type_name: cls for cls in (RandomErasing, Cutout, ColorJitter,
                                                RandomTranslate, AlternatingFlip, Mixup, CutMix)}

# Make them buildable from configs (build_transform); see the end of transforms.py.
_transforms.TRANSFORMS.update(AUGMENTATIONS)
_transforms.ALIASES["translate"] = "random_translate"
