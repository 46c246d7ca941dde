"""Batch transforms: scaling, per-channel normalisation, random crop, random horizontal flip
(and, registered here, random_resized_crop and resize from `cnnframe.data.resize` and the
augmentations of `cnnframe.data.augment`).

Every transform is a callable ``t(batch, rng) -> batch`` over a whole (N, C, H, W) batch (uint8 or
float), drawing any randomness from the numpy Generator `rng`, so a seeded rng reproduces the
batch exactly. ``t(batch, rng, inplace=True)`` may overwrite `batch` to save memory traffic (the
DataLoader and Compose pass it for arrays they own); by default the input is left untouched.
Each has a plain-dict config form (`get_config()`, `build_transform(cfg)`,
`build_transforms([...])`) so a TOML file can name the augmentation.
"""
import difflib
import inspect
import threading

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _check_batch(x, name):
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        shape = getattr(x, "shape", None)
        raise ValueError(f"{name}: expected a batch array of shape (N, C, H, W), got shape {shape}")


class Transform:
    """Base class: subclasses set `type_name` and define `__call__(batch, rng, inplace=False)`."""
    type_name = None

    def get_config(self):
        """The transform as a plain dict: ``{"type": ..., **constructor_arguments}``."""
        return {"type": self.type_name, **self._config()}

    def _config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


class ToFloat(Transform):
    """Integer images -> float32 times `scale` (1/255 maps uint8 to [0, 1]); float input is only
    cast to float32."""
    type_name = "to_float"

    def __init__(self, scale=1 / 255):
        self.scale = float(scale)

    def _config(self):
        return {"scale": self.scale}

    def __call__(self, x, rng=None, inplace=False):
        _check_batch(x, "to_float")
        if np.issubdtype(x.dtype, np.floating):
            return x.astype(np.float32, copy=False)
        return np.multiply(x, np.float32(self.scale), dtype=np.float32)


class Normalize(Transform):
    """Per-channel ``(x - mean[c]) / std[c]`` of a float batch (put to_float first).

    Parameters
    ----------
    mean, std : sequence of float, one per channel
    """
    type_name = "normalize"

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        self.mean = [float(m) for m in np.atleast_1d(mean)]
        self.std = [float(s) for s in np.atleast_1d(std)]
        if len(self.mean) != len(self.std) or not all(s > 0 for s in self.std):
            raise ValueError(f"normalize: mean {self.mean} and std {self.std} must have the same "
                             "length, with every std > 0")
        self._scale = (1.0 / np.asarray(self.std, np.float32))[:, None, None]
        self._shift = np.asarray(self.mean, np.float32)[:, None, None] * self._scale

    def _config(self):
        return {"mean": self.mean, "std": self.std}

    def __call__(self, x, rng=None, inplace=False):
        _check_batch(x, "normalize")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"normalize: expected a float batch, got {x.dtype}; put a "
                            "to_float transform before it")
        if x.shape[1] != len(self.mean):
            raise ValueError(f"normalize: {len(self.mean)} channel means for a batch with "
                             f"{x.shape[1]} channels (shape {x.shape})")
        out = x if inplace and x.dtype == np.float32 else None
        out = np.multiply(x, self._scale, out=out, dtype=np.float32)
        out -= self._shift
        return out


def _reflect_index(n, p):
    """Source indices of an axis of length n reflect-padded by p < n on both sides."""
    i = np.abs(np.arange(-p, n + p))
    return np.where(i >= n, 2 * (n - 1) - i, i)


class RandomCrop(Transform):
    """Pad each image by `padding` on every side, then crop a random size x size window.

    Parameters
    ----------
    size : int or (int, int)
        Output height and width; default: the input's.
    padding : int
        Pixels added on each side before cropping (CIFAR: 4).
    padding_mode : "zeros" or "reflect"
        Zeros (black borders, as torchvision's default) or the image mirrored at its
        edges without repeating the edge pixel (numpy.pad's "reflect"; needs padding
        smaller than the image).
    """
    type_name = "random_crop"
    MODES = ("zeros", "reflect")

    def __init__(self, size=None, padding=4, padding_mode="zeros"):
        if size is not None:
            size = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
        if int(padding) < 0:
            raise ValueError(f"random_crop: padding must be >= 0, got {padding}")
        if padding_mode not in self.MODES:
            raise ValueError(f"random_crop: padding_mode must be one of {list(self.MODES)}, "
                             f"got {padding_mode!r}")
        self.size, self.padding, self.padding_mode = size, int(padding), padding_mode
        self._local = threading.local()  # per-thread padded buffer, reused across batches

    def _config(self):
        return {"size": None if self.size is None else list(self.size), "padding": self.padding,
                "padding_mode": self.padding_mode}

    def __getstate__(self):  # copy/pickle without the thread-local buffer
        return self._config() | {"size": self.size}

    def __setstate__(self, state):
        self.__init__(**state)

    def _buffer(self, name, shape, dtype):
        """A zeroed array kept per thread and reused while the batch shape stays the same."""
        buf = getattr(self._local, name, None)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.zeros(shape, dtype)
            setattr(self._local, name, buf)
        return buf

    def __call__(self, x, rng, inplace=False):
        _check_batch(x, "random_crop")
        n, c, h, w = x.shape
        oh, ow = self.size or (h, w)
        p = self.padding
        if oh > h + 2 * p or ow > w + 2 * p:
            raise ValueError(f"random_crop: crop {oh}x{ow} is larger than the padded image "
                             f"{h + 2 * p}x{w + 2 * p} (batch shape {x.shape}, padding {p})")
        if self.padding_mode == "reflect" and p >= min(h, w):
            raise ValueError(f"random_crop: reflect padding {p} needs images larger than it, "
                             f"got {h}x{w} (batch shape {x.shape})")
        oy = rng.integers(0, h + 2 * p - oh + 1, n)
        ox = rng.integers(0, w + 2 * p - ow + 1, n)
        padded = self._buffer("padded", (n, c, h + 2 * p, w + 2 * p), x.dtype)
        if self.padding_mode == "reflect":  # rows, then columns, mirrored at the edges
            rows = self._buffer("rows", (n, c, h + 2 * p, w), x.dtype)
            np.take(x, _reflect_index(h, p), axis=2, out=rows, mode="clip")
            np.take(rows, _reflect_index(w, p), axis=3, out=padded, mode="clip")
        else:  # the border of the zeroed buffer stays 0
            padded[:, :, p:p + h, p:p + w] = x
        windows = sliding_window_view(padded, (oh, ow), axis=(2, 3))  # (n, c, dy, dx, oh, ow)
        return windows[np.arange(n), :, oy, ox]  # advanced indices first: (n, c, oh, ow)


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability `p`."""
    type_name = "random_horizontal_flip"

    def __init__(self, p=0.5):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"random_horizontal_flip: p must be in [0, 1], got {p}")
        self.p = float(p)

    def _config(self):
        return {"p": self.p}

    def __call__(self, x, rng, inplace=False):
        _check_batch(x, "random_horizontal_flip")
        flip = np.flatnonzero(rng.random(x.shape[0]) < self.p)
        out = x if inplace else x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out


class Compose(Transform):
    """Apply transforms in order, all drawing from the same rng."""
    type_name = "compose"

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"compose: {t!r} is not a transform (a callable (batch, rng))")

    def get_config(self):
        return [t.get_config() for t in self.transforms]

    def __call__(self, x, rng=None, inplace=False):
        for t in self.transforms:
            if isinstance(t, Transform):
                y = t(x, rng, inplace=inplace)
            else:
                y = t(x, rng)
            # later steps may overwrite an array this one made (not a view of the caller's)
            inplace = inplace or not np.may_share_memory(y, x)
            x = y
        return x

    def __repr__(self):
        return f"Compose({self.transforms!r})"


# resize.py subclasses Transform, so it is imported once Transform exists (the package's
# __init__ imports this module first).
from cnnframe.data.resize import RandomResizedCrop, Resize  # noqa: E402

TRANSFORMS = {cls.type_name: cls for cls in (ToFloat, Normalize, RandomCrop, RandomHorizontalFlip,
                                             RandomResizedCrop, Resize)}
ALIASES = {"random_flip": "random_horizontal_flip", "hflip": "random_horizontal_flip",
           "crop": "random_crop"}

# The augmentations of cnnframe.data.augment (erasing, cutout, colour jitter, translation,
# alternating flip, mixup, cutmix) add themselves to TRANSFORMS and ALIASES when imported;
# imported last because they build on the classes above (either module may come first).
import cnnframe.data.augment  # noqa: E402,F401


def build_transform(cfg):
    """A transform from its config dict, e.g. {"type": "random_crop", "padding": 4}.

    Raises
    ------
    ValueError
        Unknown type or key (the message names the valid ones).
    """
    if isinstance(cfg, str):
        cfg = {"type": cfg}
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"a transform config must be a dict with a 'type' key, got {cfg!r}")
    kind = ALIASES.get(cfg["type"], cfg["type"])
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform type {cfg['type']!r}; valid types: "
                         f"{', '.join(sorted(TRANSFORMS))} (aliases: {', '.join(sorted(ALIASES))})")
    cls = TRANSFORMS[kind]
    valid = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
    args = {k: v for k, v in cfg.items() if k != "type"}
    unknown = sorted(set(args) - set(valid))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, valid, n=1)
            if close:
                hints.append(f"{key!r}: did you mean {close[0]!r}?")
        raise ValueError(f"unknown key(s) {unknown} for transform {kind!r}"
                         + (f" ({'; '.join(hints)})" if hints else "")
                         + f"; valid keys: {['type'] + valid}")
    return cls(**args)


def build_transforms(cfgs):
    """A Compose from a list of transform configs (or None / empty list: no transform)."""
    if cfgs is None:
        return None
    if isinstance(cfgs, dict):
        cfgs = [cfgs]
    return Compose([build_transform(c) for c in cfgs])
