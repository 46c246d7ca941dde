"""Direct (no im2col) stride-1 convolution: see cnnframe_ext/direct.pyx for the kernel."""
import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import output_array, pair
from cnnframe.functional._workspace import scratch
from cnnframe_ext import direct as _kernel

# Target size of one band's shifted input copies (C * KW * (R + KH - 1) * OW elements):
# about a core's L2 cache.  Whole maps beat bands of rows where they fit (measured, 5x5
# 32->32 on 32x32: 8 rows 39.6 ms, 16 rows 37.7 ms, 32 rows 36.3 ms).
BAND_BYTES = 1 << 20
# Micro-kernels that run on this CPU: FB output channels x V vectors of 64 bytes of
# pixels, in order of preference among equal padded work (measured on one core: (8, 2)
# and (16, 1) 88-94% of peak on 8x8 and 32x32 maps; (4, 4) up to 5% lower; FB = 6, 12,
# 24 only where they divide F).  (2, 1) runs everywhere; the others need AVX-512.
TILES = tuple(tile for tile in ((16, 1), (8, 2), (4, 4), (12, 2), (6, 4), (24, 1), (2, 1))
              if _kernel.has_tile(*tile))


def _lanes(dtype):
    return 64 // np.dtype(dtype).itemsize


def _band_rows(c, kh, kw, oh, ow, itemsize):
    """Output rows per band: the whole map when its copies fit in BAND_BYTES."""
    rows = BAND_BYTES // max(1, c * kw * ow * itemsize) - (kh - 1)
    return max(1, min(oh, rows))


def _tile(f, pixels, lanes):
    """The first of TILES with the least padded work (channels to FB, pixels to V vectors);
    (2, 1) only when nothing else runs."""
    def cost(tile):
        fb, v = tile
        padded = -(-f // fb) * fb * -(-pixels // (v * lanes)) * v * lanes
        return (tile == (2, 1), padded)
    return min(TILES, key=cost)


def direct_plan(x_shape, weight_shape, padding, dtype):
    """(R, FB, V): band rows and micro-kernel for a conv; independent of the thread count."""
    n, c, h, w = x_shape
    f, _, kh, kw = weight_shape
    ph, pw = pair(padding, "padding", 0)
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    itemsize = np.dtype(dtype).itemsize
    r = _band_rows(c, kh, kw, oh, ow, itemsize)
    fb, v = _tile(f, r * ow, _lanes(dtype))
    return r, fb, v


def pack_weight(weight, fb):
    """(F, C, KH, KW) -> (ceil(F/FB), C, KW, KH, FB), zero-padded channels."""
    f, c, kh, kw = weight.shape
    nfb = -(-f // fb)
    packed = np.zeros((nfb * fb, c, kw, kh), weight.dtype)
    packed[:f] = weight.transpose(0, 1, 3, 2)
    return np.ascontiguousarray(packed.reshape(nfb, fb, c, kw, kh).transpose(0, 2, 3, 4, 1))


def direct_conv2d(x, weight, bias, padding, out=None, plan=None):
    """conv2d(x, weight, bias, stride=1, padding) computed directly (no im2col).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64, C-contiguous
    weight : ndarray, shape (F, C, KH, KW), dtype of x
    bias : ndarray, shape (F,), or None (or empty) for no bias
    padding : int or (int, int)
        Zero padding on each side.
    out : ndarray, optional
        C-contiguous (N, F, OH, OW) array of x's dtype to write y into.
    plan : (R, FB, V), optional
        Band rows and micro-kernel (default `direct_plan`); for tests and tuning.

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW) with OH = H + 2*ph - KH + 1, likewise OW.

    The caller validates the arguments (as cnnframe.functional.conv2d does):
    stride 1, dilation 1, groups 1, an output size >= 1, matching dtypes.
    """
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    ph, pw = pair(padding, "padding", 0)
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    r, fb, v = plan if plan is not None else direct_plan(x.shape, weight.shape, (ph, pw), x.dtype)
    if not _kernel.has_tile(fb, v):
        raise ValueError(f"direct_conv2d: no micro-kernel for FB={fb}, V={v}; one of {TILES}")
    packed = pack_weight(weight, fb)
    padded_bias = np.zeros(packed.shape[0] * fb, x.dtype)
    if bias is not None and bias.size:
        padded_bias[:f] = bias
    nbands = -(-oh // r)
    threads = threads_for(n * f * oh * ow * c * kh * kw, n * nbands)
    buf = scratch("direct conv2d band", x.dtype, threads,
                  _kernel.band_scratch(x.itemsize, c, kh, kw, r, ow, v))
    y = output_array((n, f, oh, ow), x.dtype, "direct_conv2d", out=out,
                     inputs=(x, weight) if bias is None else (x, weight, bias))
    _kernel.direct_conv2d(x, packed, padded_bias, y, buf, ph, pw, r, v, threads)
    return y


def direct_applies(x_shape, weight_shape, padding, dtype):
    """True where direct_conv2d is measured faster than im2col + GEMM and Winograd.

    For stride-1, undilated, ungrouped convs (the caller checks those).  Preliminary:
    float32, kernels of at least 3 x 3 that Winograd does not take.
    """
    n, c, h, w = x_shape
    f, _, kh, kw = weight_shape
    ph, pw = pair(padding, "padding", 0)
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    if np.dtype(dtype) != np.float32 or min(kh, kw) < 3:
        return False
    if (kh, kw) == (3, 3):
        return c < 16 or oh * ow < 256
    return True
