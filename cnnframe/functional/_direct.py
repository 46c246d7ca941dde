"""Direct (no im2col) stride-1 convolution: see cnnframe_ext/direct.pyx for the kernel."""
import numpy as np

from cnnframe._threads import get_num_threads, threads_for
from cnnframe.functional._args import ConvGeometry, output_array
from cnnframe.functional._workspace import scratch
from cnnframe.functional.conv_dispatch import TILE_SPEED, tiles
from cnnframe_ext import direct as _kernel
from cnnframe_ext import runtime as _runtime

# Target size of one band's shifted input copies (C * KW * (R + KH - 1) * OW elements):
# about a core's L2 cache.  Whole maps beat bands of rows where they fit (measured, 5x5
# 32->32 on 32x32: 8 rows 39.6 ms, 16 rows 37.7 ms, 32 rows 36.3 ms).
BAND_BYTES = 1 << 20


def _lanes(dtype):
    return 64 // np.dtype(dtype).itemsize


def _band_rows(c, kh, kw, oh, ow, itemsize):
    """Output rows per band: the whole map when its copies fit in BAND_BYTES."""
    rows = BAND_BYTES // max(1, c * kw * ow * itemsize) - (kh - 1)
    return max(1, min(oh, rows))


def _tile(f, pixels, lanes):
    """The first of tiles() with the least padded work (channels to FB, pixels to V vectors)
    for its speed; (2, 1) only when nothing else runs."""
    def cost(tile):
        fb, v = tile
        padded = -(-f // fb) * fb * -(-pixels // (v * lanes)) * v * lanes
        return (tile == (2, 1), padded / TILE_SPEED.get(tile, 1.0))
    return min(tiles(), key=cost)


def direct_plan(g, dtype, threads=1):
    """(R, FB, V): band rows and micro-kernel for the stride-1 conv of geometry `g`.

    Bands of R output rows of one image are the work items: fewer rows than fit
    BAND_BYTES when the batch alone has fewer images than `threads`.  Neither R nor
    the micro-kernel changes any result (every output element is summed in the same
    order whatever its band, strip or tile), so they may depend on the thread count.
    """
    r = _band_rows(g.c, g.kh, g.kw, g.out_h, g.out_w, np.dtype(dtype).itemsize)
    if 0 < g.n < threads:
        r = min(r, -(-g.out_h // -(-threads // g.n)))
    fb, v = _tile(g.f, r * g.out_w, _lanes(dtype))
    return r, fb, v


def _packed_weight(weight, fb, transposed=False, cache=None):
    """The weights as the micro-kernels read them: (ceil(Fo/FB), Ci, KW, KH, FB),
    zero-padded (see cnnframe_ext.direct.pack_weight); kept in `cache` (a WeightCache),
    else in a reused buffer."""
    f, c, kh, kw = weight.shape
    fo, ci = (c, f) if transposed else (f, c)
    nfb = -(-fo // fb)
    if cache is not None:
        return cache.lookup(weight, ("direct", fb, transposed), lambda: _kernel_packed(
            weight, np.empty((nfb, ci, kw, kh, fb), weight.dtype), transposed))
    packed = scratch("direct conv2d weights", weight.dtype, 1, nfb * ci * kw * kh * fb)
    return _kernel_packed(weight, packed.reshape(nfb, ci, kw, kh, fb), transposed)


def _kernel_packed(weight, packed, transposed):
    _kernel.pack_weight(weight, packed, transposed)
    return packed


def _run(x, packed, bias, g, out, plan, fn, what, inputs):
    """y (N, F, OH, OW) of the direct conv `g` of x with packed weights and padded bias."""
    r, fb, v = plan
    nbands = -(-g.out_h // r)
    threads = threads_for(g.n * g.f * g.out_h * g.out_w * g.c * g.kh * g.kw, g.n * nbands)
    buf = scratch("direct conv2d band", x.dtype, threads,
                  _kernel.band_scratch(x.itemsize, g.c, g.kh, g.kw, r, g.out_w, v))
    y = output_array(g.out_shape, x.dtype, fn, what, out=out, inputs=inputs)
    _kernel.direct_conv2d(x, packed, bias, y, buf, *g.padding, r, v, threads)
    return y


def _checked_plan(plan, g, dtype, fn):
    if not isinstance(g, ConvGeometry):
        raise TypeError(f"{fn}: geometry must be a ConvGeometry (cnnframe.functional._args."
                        f"conv_geometry), got {type(g).__name__}")
    if plan is None:
        plan = direct_plan(g, dtype, get_num_threads())
    if not _kernel.has_tile(plan[1], plan[2]):
        raise ValueError(f"{fn}: no micro-kernel for FB={plan[1]}, V={plan[2]} on "
                         f"{_runtime.active_isa()}; one of {tiles()}")
    return plan


def direct_conv2d(x, weight, bias, geometry, out=None, plan=None, cache=None):
    """conv2d(x, weight, bias, stride=1, padding) computed directly (no im2col).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64, C-contiguous
    weight : ndarray, shape (F, C, KH, KW), dtype of x, C-contiguous
    bias : ndarray, shape (F,), or None (or empty) for no bias
    geometry : ConvGeometry
        The conv's geometry (cnnframe.functional._args.conv_geometry): stride 1,
        dilation 1, groups 1; its padding is used.
    out : ndarray, optional
        C-contiguous (N, F, OH, OW) array of x's dtype to write y into.
    plan : (R, FB, V), optional
        Band rows and micro-kernel (default `direct_plan`); for tests and tuning.
    cache : WeightCache, optional
        Keeps the packed weights for the next call with the same weight.

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW) with OH = H + 2*ph - KH + 1, likewise OW.

    The caller validates the arguments (as cnnframe.functional.conv2d does).
    """
    g = geometry
    plan = _checked_plan(plan, g, x.dtype, "direct_conv2d")
    packed = _packed_weight(weight, plan[1], cache=cache)
    padded_bias = np.zeros(packed.shape[0] * plan[1], x.dtype)
    if bias is not None and bias.size:
        padded_bias[:g.f] = bias
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return _run(x, packed, padded_bias, g, out, plan, "direct_conv2d", "output", inputs)


def direct_conv2d_grad_x(grad_y, weight, geometry, out=None, plan=None):
    """grad_x of y = conv2d(x, weight, stride=1, padding), computed directly.

    The input gradient of a stride-1 conv is a stride-1 conv of grad_y with the
    flipped, in/out-transposed kernel (conv._transposed_kernel) and padding K-1-p
    (`ConvGeometry.grad_x_conv`); this packs that kernel straight from `weight`
    instead of building it.

    Parameters
    ----------
    grad_y : ndarray, shape (N, F, OH, OW), float32 or float64, C-contiguous
    weight : ndarray, shape (F, C, KH, KW), dtype of grad_y, C-contiguous
    geometry : ConvGeometry
        The forward conv's geometry: stride 1, dilation 1, groups 1, padding
        0 <= p <= K - 1 on each axis.
    out : ndarray, optional
        C-contiguous (N, C, H, W) array to write grad_x into.
    plan : (R, FB, V), optional
        As for direct_conv2d (FB blocks the C input channels here).

    Returns
    -------
    grad_x : ndarray, shape (N, C, H, W).

    Raises
    ------
    ValueError
        For a padding above K - 1 (its gradient would need negative padding).
    """
    g = geometry
    if not isinstance(g, ConvGeometry):
        raise TypeError(f"direct_conv2d_grad_x: geometry must be a ConvGeometry, got "
                        f"{type(g).__name__}")
    if not g.has_grad_x_conv():
        raise ValueError(f"direct_conv2d_grad_x: padding {g.padding} must be at most the "
                         f"kernel size - 1 ({g.kh - 1}, {g.kw - 1}) for weight {weight.shape}")
    gx = g.grad_x_conv()
    plan = _checked_plan(plan, gx, grad_y.dtype, "direct_conv2d_grad_x")
    packed = _packed_weight(weight, plan[1], transposed=True)
    zero_bias = np.zeros(packed.shape[0] * plan[1], grad_y.dtype)
    return _run(grad_y, packed, zero_bias, gx, out, plan, "direct_conv2d_grad_x", "grad_x",
                (grad_y, weight))


def direct_conv2d_grad_weight(x, grad_y, geometry, parts):
    """(grad_weight, grad_bias) of y = conv2d(x, weight, stride=1, padding), computed directly.

    grad_weight[f, c, kh, kw] = sum over n, oh, ow of
        grad_y[n, f, oh, ow] * xpad[n, c, oh + kh, ow + kw]
    from the band copies the forward kernel reads (no im2col), float32, on every
    instruction set (conv2d_backward takes it where its dispatch table says).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32, C-contiguous
    grad_y : ndarray, shape (N, F, OH, OW), float32, C-contiguous
    geometry : ConvGeometry
        The conv's geometry: stride 1, dilation 1, groups 1.
    parts : int
        The images are cut into this many fixed partitions whose sums are added in order,
        so the result does not depend on the thread count (conv2d_backward passes its PARTS).

    Returns
    -------
    grad_weight : ndarray, shape (F, C, KH, KW), float32
    grad_bias : ndarray, shape (F,), float32

    The caller validates the arguments (as cnnframe.functional.conv2d_backward does).
    """
    g = geometry
    if not _kernel.has_grad_weight():
        raise RuntimeError("direct_conv2d_grad_weight: the kernel was built without GCC "
                           "vector extensions")
    r = _band_rows(g.c, g.kh, g.kw, g.out_h, g.out_w, x.itemsize)
    threads = threads_for(g.n * g.f * g.out_h * g.out_w * g.c * g.kh * g.kw, g.n)
    threads = min(threads, parts)
    buf = scratch("direct conv2d band", x.dtype, threads,
                  _kernel.band_scratch(x.itemsize, g.c, g.kh, g.kw, r, g.out_w, 1,
                                       grad_channels=g.f))
    grad_w = scratch("direct conv2d grad_weight", x.dtype, parts, g.f * g.c * g.kh * g.kw)
    grad_b = scratch("conv2d grad_bias", x.dtype, parts, g.f)
    _kernel.direct_conv2d_grad_weight(x, grad_y, grad_w, grad_b, buf, g.kh, g.kw, *g.padding,
                                      r, threads)
    return grad_w.sum(axis=0).reshape(g.weight_shape), grad_b.sum(axis=0)
