"""Direct (no im2col) stride-1 convolution: see cnnframe_ext/direct.pyx for the kernel."""
import numpy as np

from cnnframe._threads import get_num_threads, threads_for
from cnnframe.functional._args import output_array, pair
from cnnframe.functional._workspace import scratch
from cnnframe_ext import direct as _kernel
from cnnframe_ext import runtime as _runtime

# Target size of one band's shifted input copies (C * KW * (R + KH - 1) * OW elements):
# about a core's L2 cache.  Whole maps beat bands of rows where they fit (measured, 5x5
# 32->32 on 32x32: 8 rows 39.6 ms, 16 rows 37.7 ms, 32 rows 36.3 ms).
BAND_BYTES = 1 << 20
# The micro-kernels of each instruction set (cnnframe_ext/src/direct.h): FB output
# channels x V vectors of 64 bytes of pixels, in order of preference among equal padded
# work.  AVX-512 (measured on one core: (8, 2) and (16, 1) 88-94% of peak on 8x8 and
# 32x32 maps; (4, 4) up to 5% lower; FB = 6, 12, 24 only where they divide F).  AVX2
# (12 or 8 accumulators of 8 floats): see TILE_SPEED.  (2, 1) runs everywhere; it is
# the only one of the generic path.
TILES = {"avx512": ((16, 1), (8, 2), (4, 4), (12, 2), (6, 4), (24, 1), (2, 1)),
         "avx2": ((6, 1), (4, 1), (2, 1)),
         "generic": ((2, 1),)}
# Speed per unit of padded work relative to the others, where it differs: on AVX2, (4, 1)
# (8 accumulators) measured ~10% slower than (6, 1) at equal work (2 threads, ms (6, 1) /
# (4, 1): 128->128 3x3 8x8 9.4/10.3, 64->64 16x16 9.0/10.0), so (6, 1) takes F = 64 and
# 128 despite 3% padding and (4, 1) F = 16 and 32 (3->32 3x3 32x32 1.48/1.23).
TILE_SPEED = {(4, 1): 0.9}


def tiles():
    """The micro-kernels of the instruction set the kernels use now (cnnframe.use_isa)."""
    return TILES[_runtime.active_isa()]


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


def direct_plan(x_shape, weight_shape, padding, dtype, threads=1):
    """(R, FB, V): band rows and micro-kernel for a conv.

    Bands of R output rows of one image are the work items: fewer rows than fit
    BAND_BYTES when the batch alone has fewer images than `threads`.  Neither R nor
    the micro-kernel changes any result (every output element is summed in the same
    order whatever its band, strip or tile), so they may depend on the thread count.
    """
    n, c, h, w = x_shape
    f, _, kh, kw = weight_shape
    ph, pw = pair(padding, "padding", 0)
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    r = _band_rows(c, kh, kw, oh, ow, np.dtype(dtype).itemsize)
    if 0 < n < threads:
        r = min(r, -(-oh // -(-threads // n)))
    fb, v = _tile(f, r * ow, _lanes(dtype))
    return r, fb, v


def _packed_weight(weight, fb, transposed=False):
    """The weights as the micro-kernels read them, in a reused buffer:
    (ceil(Fo/FB), Ci, KW, KH, FB), zero-padded; see cnnframe_ext.direct.pack_weight."""
    f, c, kh, kw = weight.shape
    fo, ci = (c, f) if transposed else (f, c)
    nfb = -(-fo // fb)
    packed = scratch("direct conv2d weights", weight.dtype, 1, nfb * ci * kw * kh * fb)
    packed = packed.reshape(nfb, ci, kw, kh, fb)
    _kernel.pack_weight(weight, packed, transposed)
    return packed


def _run(x, packed, bias, fo, kh, kw, padding, out, plan, fn, what, inputs):
    """y (N, Fo, OH, OW) of the direct conv of x with packed weights and padded bias."""
    n, c, h, w = x.shape
    ph, pw = padding
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    r, fb, v = plan
    nbands = -(-oh // r)
    threads = threads_for(n * fo * oh * ow * c * kh * kw, n * nbands)
    buf = scratch("direct conv2d band", x.dtype, threads,
                  _kernel.band_scratch(x.itemsize, c, kh, kw, r, ow, v))
    y = output_array((n, fo, oh, ow), x.dtype, fn, what, out=out, inputs=inputs)
    _kernel.direct_conv2d(x, packed, bias, y, buf, ph, pw, r, v, threads)
    return y


def _checked_plan(plan, x_shape, w_shape, padding, dtype, fn):
    if plan is None:
        plan = direct_plan(x_shape, w_shape, padding, dtype, get_num_threads())
    if not _kernel.has_tile(plan[1], plan[2]):
        raise ValueError(f"{fn}: no micro-kernel for FB={plan[1]}, V={plan[2]} on "
                         f"{_runtime.active_isa()}; one of {tiles()}")
    return plan


def direct_conv2d(x, weight, bias, padding, out=None, plan=None):
    """conv2d(x, weight, bias, stride=1, padding) computed directly (no im2col).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64, C-contiguous
    weight : ndarray, shape (F, C, KH, KW), dtype of x, C-contiguous
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
    f, _, kh, kw = weight.shape
    padding = pair(padding, "padding", 0)
    plan = _checked_plan(plan, x.shape, weight.shape, padding, x.dtype, "direct_conv2d")
    packed = _packed_weight(weight, plan[1])
    padded_bias = np.zeros(packed.shape[0] * plan[1], x.dtype)
    if bias is not None and bias.size:
        padded_bias[:f] = bias
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return _run(x, packed, padded_bias, f, kh, kw, padding, out, plan, "direct_conv2d",
                "output", inputs)


def direct_conv2d_grad_x(grad_y, weight, padding, out=None, plan=None):
    """grad_x of y = conv2d(x, weight, stride=1, padding), computed directly.

    The input gradient of a stride-1 conv is a stride-1 conv of grad_y with the
    flipped, in/out-transposed kernel (conv._transposed_kernel) and padding K-1-p;
    this packs that kernel straight from `weight` instead of building it.

    Parameters
    ----------
    grad_y : ndarray, shape (N, F, OH, OW), float32 or float64, C-contiguous
    weight : ndarray, shape (F, C, KH, KW), dtype of grad_y, C-contiguous
    padding : int or (int, int)
        The forward padding p, 0 <= p <= K - 1 on each axis.
    out : ndarray, optional
        C-contiguous (N, C, H, W) array to write grad_x into.
    plan : (R, FB, V), optional
        As for direct_conv2d (FB blocks the C input channels here).

    Returns
    -------
    grad_x : ndarray, shape (N, C, H, W), H = OH + KH - 1 - 2*ph, likewise W.

    Raises
    ------
    ValueError
        For a padding above K - 1 (its gradient would need negative padding).
    """
    f, c, kh, kw = weight.shape
    ph, pw = pair(padding, "padding", 0)
    if ph > kh - 1 or pw > kw - 1:
        raise ValueError(f"direct_conv2d_grad_x: padding {(ph, pw)} must be at most the "
                         f"kernel size - 1 ({kh - 1}, {kw - 1}) for weight {weight.shape}")
    padding = (kh - 1 - ph, kw - 1 - pw)
    w_shape = (c, f, kh, kw)
    plan = _checked_plan(plan, grad_y.shape, w_shape, padding, grad_y.dtype,
                         "direct_conv2d_grad_x")
    packed = _packed_weight(weight, plan[1], transposed=True)
    zero_bias = np.zeros(packed.shape[0] * plan[1], grad_y.dtype)
    return _run(grad_y, packed, zero_bias, c, kh, kw, padding, out, plan,
                "direct_conv2d_grad_x", "grad_x", (grad_y, weight))


def direct_conv2d_grad_weight(x, grad_y, weight_shape, padding, parts):
    """(grad_weight, grad_bias) of y = conv2d(x, weight, stride=1, padding), computed directly.

    grad_weight[f, c, kh, kw] = sum over n, oh, ow of
        grad_y[n, f, oh, ow] * xpad[n, c, oh + kh, ow + kw]
    from the band copies the forward kernel reads (no im2col), float32, on every
    instruction set (conv2d_backward takes it where `direct_grad_weight_pays()`).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32, C-contiguous
    grad_y : ndarray, shape (N, F, OH, OW), float32, C-contiguous
    weight_shape : (F, C, KH, KW)
    padding : int or (int, int)
        The forward padding; OH = H + 2*ph - KH + 1, likewise OW.
    parts : int
        The images are cut into this many fixed partitions whose sums are added in order,
        so the result does not depend on the thread count (conv2d_backward passes its PARTS).

    Returns
    -------
    grad_weight : ndarray, shape (F, C, KH, KW), float32
    grad_bias : ndarray, shape (F,), float32

    The caller validates the arguments (as cnnframe.functional.conv2d_backward does).
    """
    if not _kernel.has_grad_weight():
        raise RuntimeError("direct_conv2d_grad_weight: the kernel was built without GCC "
                           "vector extensions")
    n, c, h, w = x.shape
    f, _, kh, kw = weight_shape
    ph, pw = pair(padding, "padding", 0)
    oh, ow = grad_y.shape[2:]
    r = _band_rows(c, kh, kw, oh, ow, x.itemsize)
    threads = threads_for(n * f * oh * ow * c * kh * kw, n)
    threads = min(threads, parts)
    buf = scratch("direct conv2d band", x.dtype, threads,
                  _kernel.band_scratch(x.itemsize, c, kh, kw, r, ow, 1))
    grad_w = scratch("direct conv2d grad_weight", x.dtype, parts, f * c * kh * kw)
    grad_b = scratch("conv2d grad_bias", x.dtype, parts, f)
    _kernel.direct_conv2d_grad_weight(x, grad_y, grad_w, grad_b, buf, kh, kw, ph, pw, r,
                                      threads)
    return grad_w.sum(axis=0).reshape(weight_shape), grad_b.sum(axis=0)


def direct_grad_weight_pays():
    """True where conv2d_backward may take direct_conv2d_grad_weight (for the layers its
    rule in functional/conv.py names): with AVX-512 or AVX2.  The generic kernel (no FMA on
    x86-64) measured slower than im2col + BLAS GEMM for most of them (2 threads, ms
    direct / im2col: 32->32 5x5 32x32 25.6/18.9, 64->64 5x5 16x16 28.5/14.5; 3->32 3x3
    32x32 3.1/3.7)."""
    return _kernel.has_grad_weight() and _runtime.active_isa() != "generic"


def direct_applies(x_shape, weight_shape, padding, dtype, winograd):
    """True where direct_conv2d is measured faster than conv2d's im2col + GEMM or Winograd.

    For stride-1, undilated, ungrouped convs (the caller checks those), float32, with
    AVX-512 or AVX2 (the generic path's only micro-kernel never is); `winograd` says
    whether conv2d would take Winograd for it.  Measured with
    benchmarks/bench_conv_algos.py (float32, 2 threads, batch 128 or as many images as
    make ~2.5 GFLOP, interleaved medians, ms direct / best other).

    AVX-512:
      3x3 Winograd takes (min(C, F) >= 16, even maps), forward | grad_x:
        maps of 4x4 to 16x16, 16 to 256 channels: 0.37-0.94x | 0.35-1.08x, e.g.
          32->64 16x16 4.5/6.3 | 4.9/5.2, 64->128 8x8 4.8/9.2 | 4.3/7.0  -> direct
        28x28: C*F <= 16384 0.54-1.09x | 0.54-1.13x (64->64 11.2/12.1, 128->128
          21.3/23.0), 128->256 1.00x | 1.00x, 256->256 1.13x | 1.10x   -> direct to 16384
        32x32: C*F <= 2048 0.67-1.06x | 0.71-1.00x (32->32 12.7/16.8 | 10.7/11.6),
          above 1.10-1.37x | 1.02-1.25x                               -> Winograd above
      (These crossovers depend on the CPU: on another AVX-512 CPU, where the direct
      kernel ran at 0.7x and Winograd at 2x the speeds above, Winograd was faster from
      32 channels on 16x16 and for most layers with C*F > 4096 on 8x8.  Re-measure
      with the benchmark on a new CPU.)
      3x3 Winograd does not take: 3->32 32x32 1.2/3.6, 3->128 32x32 5.7/8.0,
        64->128 15x15 11.2/14.4, 16->16 7x7 0.18/0.45                 -> direct
      5x5 and 7x7, 8x8 to 56x56, 3 to 64 channels in, 32 or 128 out: 0.29-0.75x
        (32->32 5x5 32x32 batch 128: 33 / 70 ms); 1x3, 3x1, 1x7, 7x1, 3x5: 0.63-0.75x
      1x1 on maps of 16..256 pixels: 0.29-0.86x (16->32 8x8 1.03x); on 5x5 1.02x, 32x32
        0.6-1.14x, 56x56 0.9-1.45x                                  -> GEMM
      maps whose pixels fill under 3/4 of the 16-lane vectors: 3x3 256->256 2x2 1.86x,
        3x3 1.07x; 1x1 256->256 2x2 1.86x                         -> im2col + GEMM
      (4x4 0.35-0.83x, 5x5 0.88x, 6x6 0.89x, 7x7 0.39-0.79x still direct)

    AVX2 (a 2-core AMD EPYC with AVX2 + FMA, shared and noisy: medians of 5-11 rounds; the
    same rules as AVX-512 except for 3x3 convs Winograd takes and for 1x1):
      3x3 Winograd takes, forward | grad_x:
        4x4 and 8x8, 16 to 256 channels: 0.56-0.89x | 0.52-1.14x, e.g. 64->128 8x8
          9.5/11.5 | 7.8/8.1, 256->256 4x4 17.8/29.1 | 19.0/33.8      -> direct
          (the 16->32 to 64->64 4x4 rows were disturbed: every algorithm ~15 ms)
        16x16: C*F <= 2048 0.70-0.87x | 0.73-0.88x (32->64 9.2/10.6 | 10.2/11.6);
          64->64 1.23x | 1.44x, 64->128 1.56x | 1.25x, 128->128 1.23x | 1.14x,
          256->256 0.88x | 1.06x                                       -> Winograd above
        28x28 and 32x32: 16->32 forward 0.68x (28x28), 1.02x (32x32) but grad_x
          1.08-1.59x; 32->32 and wider 1.04-3.5x                       -> Winograd
        (F <= 16 output channels stays direct, as on AVX-512: Winograd's GEMMs are
        narrow there; not measured separately on AVX2)
      3x3 Winograd does not take: 3->32 32x32 1.2/2.9                  -> direct
      5x5 and 7x7: 32->32 5x5 32x32 11.9/19.0, 64->64 5x5 16x16 10.1/14.8, 16->16 7x7
        28x28 12.4/28.4                                                -> direct
      1x1 on maps of 16..256 pixels, 16 to 128 channels: 0.92-1.72x | 1.02-1.68x (16->32
        8x8 0.24/0.26 | 0.26/0.19, 128->128 16x16 9.8/5.7 | 10.0/6.0)  -> GEMM
    """
    n, c, h, w = x_shape
    f, _, kh, kw = weight_shape
    ph, pw = pair(padding, "padding", 0)
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    isa = _runtime.active_isa()
    if np.dtype(dtype) != np.float32 or isa == "generic":
        return False
    pixels = oh * ow
    if pixels < 0.75 * -(-pixels // 16) * 16:
        return False
    if (kh, kw) == (1, 1):
        return isa == "avx512" and pixels <= 256 and pixels % 16 == 0
    if (kh, kw) != (3, 3) or not winograd:
        return True
    if isa == "avx2":
        return f <= 16 or pixels <= 64 or (pixels <= 256 and c * f <= 2048)
    if f <= 16 or pixels <= 256:
        return True
    return c * f <= (16384 if pixels <= 784 else 2048)
