"""Resizing batch transforms: `random_resized_crop` for training and `resize` for evaluation.

Both cut a box out of every image of an (N, C, H, W) batch and resample it to the output size
(oh, ow), which may differ from the input's: they take an ImageFolder cached at, say, 72x72
down to a 64x64 training size. The resampling is Pillow's antialiased bilinear filter (a
triangle filter, widened by the reduction factor when shrinking, so that every input pixel
counts), with the box's own edge pixels repeated beyond it, as cropping then resizing does.

The batch is resampled at once: each image's box becomes a weight matrix per axis, (oh, H)
and (ow, W), zero outside its box, and the batch is two batched matrix products,
``Wy @ x @ Wx.T``. uint8 in gives uint8 out (rounded); float in gives float32 out.
"""
import threading

import numpy as np

from cnnframe.data.transforms import Transform, _check_batch


def _size_pair(size, name):
    if size is None:
        return None
    sizes = [size] * 2 if np.ndim(size) == 0 else list(size)
    if len(sizes) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                  and s >= 1 for s in sizes):
        raise ValueError(f"{name}: size must be an int or a pair [height, width] of ints >= 1, "
                         f"got {size!r}")
    return int(sizes[0]), int(sizes[1])


def _range_pair(values, name, what):
    try:
        lo, hi = (float(v) for v in values)
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or not 0 < lo <= hi or not np.isfinite(hi):
        raise ValueError(f"{name}: {what} must be a pair [low, high] with 0 < low <= high, got "
                         f"{values!r}")
    return lo, hi


def axis_weights(start, length, n_in, n_out):
    """The resampling matrices of one axis: row k of image i weighs the input pixels that make
    output pixel k of the box [start[i], start[i] + length[i]).

    Parameters
    ----------
    start, length : ndarray (N,) of float
        Each image's box along the axis, in input pixels (length > 0).
    n_in, n_out : int
        Input and output lengths of the axis.

    Returns
    -------
    weights : ndarray, float32 (N, n_out, n_in)
        Rows sum to 1; zero outside each box.
    """
    start = np.asarray(start, np.float64)[:, None, None]
    length = np.asarray(length, np.float64)[:, None, None]
    scale = length / n_out
    support = np.maximum(scale, 1.0)  # shrinking widens the filter: antialiasing
    centres = start + (np.arange(n_out, dtype=np.float64)[None, :, None] + 0.5) * scale
    pixel = np.arange(n_in, dtype=np.float64)[None, None, :]
    weights = np.maximum(1.0 - np.abs(pixel + 0.5 - centres) / support, 0.0)
    weights *= (pixel >= start) & (pixel < start + length)
    weights /= weights.sum(axis=2, keepdims=True)
    return weights.astype(np.float32)


class _Buffers(threading.local):
    """Float32 work arrays kept per thread and reused while the batch shape stays the same."""

    def get(self, name, shape):
        buf = getattr(self, name, None)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, np.float32)
            setattr(self, name, buf)
        return buf


def resize_boxes(x, boxes, size, buffers=None):
    """Cut box i out of image i of `x` and resample it to `size` (antialiased bilinear).

    Parameters
    ----------
    x : ndarray (N, C, H, W), uint8 or float
    boxes : ndarray (N, 4)
        (top, left, height, width) of each image's box, in pixels, inside the image.
    size : (int, int)
        (oh, ow) of the output.

    Returns
    -------
    ndarray (N, C, oh, ow)
        uint8 (rounded) for uint8 `x`, else float32.
    """
    n, c, h, w = x.shape
    oh, ow = size
    boxes = np.asarray(boxes, np.float64).reshape(n, 4)
    buffers = buffers if buffers is not None else _Buffers()
    wy = axis_weights(boxes[:, 0], boxes[:, 2], h, oh)  # (N, oh, H)
    wx = axis_weights(boxes[:, 1], boxes[:, 3], w, ow)  # (N, ow, W)
    xf = x
    if x.dtype != np.float32:
        xf = buffers.get("x", x.shape)
        np.copyto(xf, x)
    rows = np.matmul(wy[:, None], xf, out=buffers.get("rows", (n, c, oh, w)))
    out = np.matmul(rows, wx.transpose(0, 2, 1)[:, None], out=buffers.get("out", (n, c, oh, ow)))
    if not np.issubdtype(x.dtype, np.integer):
        return out.copy()
    np.rint(out, out=out)
    np.clip(out, 0, np.iinfo(x.dtype).max, out=out)
    return out.astype(x.dtype)


class RandomResizedCrop(Transform):
    """Crop a random box of random area and aspect ratio out of each image, resized to `size`.

    The box is drawn as torchvision's ``RandomResizedCrop`` draws it: up to 10 tries of an area
    uniform in `scale` times the image's and an aspect ratio (width / height) log-uniform in
    `ratio`, the first that fits placed uniformly at random; if none fits, the largest centred
    box with an aspect ratio within `ratio`. Then antialiased bilinear resampling to `size`
    (see `cnnframe.data.resize`).

    Parameters
    ----------
    size : int or (int, int), optional
        Output (height, width); default: the input's.
    scale : (float, float)
        Range of the box's area as a fraction of the image's.
    ratio : (float, float)
        Range of the box's aspect ratio, width / height.

    Input shape: (N, C, H, W), uint8 or float. Output shape: (N, C, size[0], size[1]), same dtype
    (float input: float32).
    """
    type_name = "random_resized_crop"

    def __init__(self, size=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size = _size_pair(size, self.type_name)
        self.scale = _range_pair(scale, self.type_name, "scale")
        self.ratio = _range_pair(ratio, self.type_name, "ratio")
        self._buffers = _Buffers()

    def _config(self):
        return {"size": None if self.size is None else list(self.size),
                "scale": list(self.scale), "ratio": list(self.ratio)}

    def __getstate__(self):  # copy/pickle without the thread-local buffers
        return self._config()

    def __setstate__(self, state):
        self.__init__(**state)

    def crop_boxes(self, n, h, w, rng):
        """(N, 4) int64 boxes (top, left, height, width) for n images of h x w."""
        tries = rng.random((n, 2, 10))
        area = h * w * (self.scale[0] + (self.scale[1] - self.scale[0]) * tries[:, 0])
        lo, hi = np.log(self.ratio[0]), np.log(self.ratio[1])
        aspect = np.exp(lo + (hi - lo) * tries[:, 1])
        cw = np.rint(np.sqrt(area * aspect)).astype(np.int64)
        ch = np.rint(np.sqrt(area / aspect)).astype(np.int64)
        fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = np.argmax(fits, axis=1)
        rows = np.arange(n)
        cw, ch, found = cw[rows, first], ch[rows, first], fits.any(axis=1)
        # None fits: the whole image, trimmed to the nearest end of the ratio range.
        if w / h < self.ratio[0]:
            fw, fh = w, int(round(w / self.ratio[0]))
        elif w / h > self.ratio[1]:
            fw, fh = int(round(h * self.ratio[1])), h
        else:
            fw, fh = w, h
        place = rng.random((n, 2))
        top = np.floor(place[:, 0] * (h - ch + 1)).astype(np.int64)
        left = np.floor(place[:, 1] * (w - cw + 1)).astype(np.int64)
        boxes = np.stack([top, left, ch, cw], axis=1)
        boxes[~found] = [(h - fh) // 2, (w - fw) // 2, fh, fw]
        return boxes

    def __call__(self, x, rng, inplace=False):
        _check_batch(x, self.type_name)
        n, _, h, w = x.shape
        boxes = self.crop_boxes(n, h, w, rng)
        return resize_boxes(x, boxes, self.size or (h, w), self._buffers)


class Resize(Transform):
    """Resize every image to `size` (antialiased bilinear), optionally from a centred crop.

    The evaluation counterpart of `random_resized_crop`: ``resize`` to the training size, or,
    as torchvision's evaluation recipe does, ``crop_fraction = 0.875`` to keep the central
    87.5% of each side first.

    Parameters
    ----------
    size : int or (int, int)
        Output (height, width).
    crop_fraction : float in (0, 1]
        Fraction of the height and width kept (centred) before resizing.

    Input shape: (N, C, H, W), uint8 or float. Output shape: (N, C, size[0], size[1]), same dtype
    (float input: float32).
    """
    type_name = "resize"

    def __init__(self, size, crop_fraction=1.0):
        self.size = _size_pair(size, self.type_name)
        if self.size is None:
            raise ValueError("resize: size is required (an int or [height, width])")
        if not 0.0 < float(crop_fraction) <= 1.0:
            raise ValueError(f"resize: crop_fraction must be in (0, 1], got {crop_fraction!r}")
        self.crop_fraction = float(crop_fraction)
        self._buffers = _Buffers()

    def _config(self):
        return {"size": list(self.size), "crop_fraction": self.crop_fraction}

    def __getstate__(self):
        return self._config()

    def __setstate__(self, state):
        self.__init__(**state)

    def __call__(self, x, rng=None, inplace=False):
        _check_batch(x, self.type_name)
        n, _, h, w = x.shape
        ch = max(1, int(round(h * self.crop_fraction)))
        cw = max(1, int(round(w * self.crop_fraction)))
        if (ch, cw) == (h, w) == self.size:
            return x if inplace else x.copy()
        box = [int(round((h - ch) / 2)), int(round((w - cw) / 2)), ch, cw]
        return resize_boxes(x, np.tile(box, (n, 1)), self.size, self._buffers)
