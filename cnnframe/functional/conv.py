"""2-D convolution of NCHW batches (the cross-correlation CNN layers call convolution)."""
import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import (check_flag, contiguous, float_array, nonempty_planes,
                                       out_size, output_array, pair, positive_int)
from cnnframe.functional._workspace import scratch
from cnnframe.functional._direct import (direct_applies, direct_conv2d, direct_conv2d_grad_weight,
                                         direct_conv2d_grad_x, direct_grad_weight_pays)
from cnnframe.functional.depthwise import (depthwise_applies, depthwise_conv2d,
                                          depthwise_conv2d_backward)
from cnnframe_ext import conv as _kernels
from cnnframe_ext import winograd as _winograd

# Target size of one thread's column buffer: small enough to stay in a core's L2 cache.
BLOCK_BYTES = 1 << 19
# GEMMs much narrower than this many columns run far below peak.
MIN_COLS = 256
# The batch is cut into this many fixed partitions whose weight gradients are summed
# separately and then in order, so results do not depend on the thread count (<= PARTS).
PARTS = 8


def _geometry(x, weight, stride, padding, dilation, groups, fn):
    """Validate a conv call; return (x, weight, (sh, sw), (ph, pw), (dh, dw), groups, (OH, OW))."""
    x = float_array(x, "x", 4, copy=False)
    weight = float_array(weight, "weight", 4, dtype=x.dtype.newbyteorder("="), copy=False)
    stride = pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    dilation = pair(dilation, "dilation", 1)
    groups = positive_int(groups, "groups")
    nonempty_planes(x, "x")
    n, c, h, w = x.shape
    f, cg, kh, kw = weight.shape
    if f == 0 or kh == 0 or kw == 0 or cg == 0:
        raise ValueError(f"{fn}: weight has shape {weight.shape}; every dimension must be >= 1")
    if c % groups or f % groups:
        raise ValueError(f"{fn}: groups={groups} must divide the input channels ({c}) and the "
                         f"output channels ({f}); x has shape {x.shape}, weight {weight.shape}")
    if cg * groups != c:
        raise ValueError(f"{fn}: weight has shape {weight.shape}, so it expects "
                         f"{cg} x groups={groups} = {cg * groups} input channels, "
                         f"but x has shape {x.shape} ({c} channels)")
    oh = out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = out_size(w, kw, stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{fn}: output size would be {oh} x {ow} (< 1) for input {h} x {w}, kernel {kh} x {kw}, "
            f"stride {stride}, padding {padding}, dilation {dilation}; the dilated kernel "
            f"({dilation[0] * (kh - 1) + 1} x {dilation[1] * (kw - 1) + 1}) must fit in the "
            f"padded input ({h + 2 * padding[0]} x {w + 2 * padding[1]})")
    x, weight = contiguous(x), contiguous(weight)  # only now: the shapes are consistent
    return x, weight, stride, padding, dilation, groups, (oh, ow)


# 3x3 stride-1 convolutions with even output sizes, at least this many channels per
# group (in and out) and output maps of at least this many pixels use Winograd
# F(2x2, 3x3) in the forward pass: 2.25x fewer multiplies than im2col + GEMM.  Measured
# (batch 128, 2 threads): 32->32 on 32x32 forward 23.2 -> 13.1 ms, 64->64 on 16x16
# 17.8 -> 11.9 ms; thinner layers (an RGB input) leave its GEMMs too narrow.  Where the
# direct kernel runs (float32, AVX-512) it takes most of these convs instead
# (`direct_applies`); Winograd's forward is left the float64 convs, CPUs without
# AVX-512 and wide layers on large maps.
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_PIXELS = 256
# Tiles per Winograd block (small images side by side): enough rows for the GEMMs.
WINOGRAD_TILES = 128
# The kernels space the 16 transformed planes of a block this many elements further
# apart than their size: at a power-of-two stride the 16 rows one row transform writes
# (or reads) together share cache sets and evict each other.
PLANE_SKEW = 32
# Winograd's weight transform: U = G g G^T.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
# F(4x4, 3x3): 6x6 tiles, 36 multiplies per 16 outputs (F(2x2, 3x3) spends 64).
_G43 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                 [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
WINOGRAD43_TILES = 64
WINOGRAD43_MIN_PIXELS = 64
# The weight gradient has its own rule: Winograd is the fastest weight gradient for every
# 3x3 layer wide enough for it, except very wide layers on small maps.  Measured (2
# threads, float32, batch 128 or as many images as make ~2.5 GFLOP; ms F(2x2) / F(4x4) /
# im2col + GEMM / direct, benchmarks/bench_conv_algos.py):
#   8x8:   32->64 2.2/2.4/2.7/4.9, 64->128 6.2/7.1/7.4/20.6, 128->128 11.0/13.6/14.0/30.0
#   16x16: 32->64 6.0/6.2/8.1/11.2, 64->64 9.7/9.9/14.7/31.0
#   32x32: 32->32 26.9/21.5/40.7/42.6, 64->64 14.6/9.6/18.2/33.6 (33 images)
#   wide on maps <= 16x16: 128->256 8x8 13.9/18.5/12.5, 256->256 16x16 26.0/41.5/21.5
# so F(2x2) on maps up to 28x28 (F(4x4) takes 0.91-1.24x its time there), F(4x4) from
# 32x32 up, and im2col + GEMM for C*F >= 32768 on maps of up to 256 pixels.
GRAD_WEIGHT_WINOGRAD_MIN_PIXELS = 16
GRAD_WEIGHT_WINOGRAD43_MIN_PIXELS = 1024
GRAD_WEIGHT_IM2COL_MIN_PAIRS = 32768
# Stride-1, undilated, ungrouped float32 convs go to the direct kernel (functional/_direct.py)
# where `direct_applies` says it is faster: 5x5 32->32 on 32x32 forward 62 -> 32 ms, 3->32
# 3x3 on 32x32 4.3 -> 2.0 ms (batch 128, 2 threads).  Tests switch it off to reach the others.
DIRECT = True


def _direct_applies(x_shape, weight_shape, stride, padding, dilation, groups, dtype, winograd):
    return (DIRECT and stride == (1, 1) and dilation == (1, 1) and groups == 1
            and direct_applies(x_shape, weight_shape, padding, dtype, bool(winograd)))


def _direct_grad_weight_applies(x_shape, weight_shape, stride, dilation, groups, dtype):
    """The direct weight gradient where it measured faster (batch 64-128, 2 threads, ms direct /
    im2col + GEMM): few input channels (3->32 3x3 32x32 3.5/7.0, 5x5 2.2/6.5) and kernels of
    25+ taps on up to 4096 channel pairs (32->32 5x5 32x32 41/95, 64->64 5x5 16x16 26/29,
    16->16 7x7 56x56 37/72); not 3x3 with 32+ channels (64->128 8x8 23/12).  AVX2 alike
    (ms direct / conv2d_backward's other choice: 3->32 3x3 32x32 1.5/3.9, 32->32 5x5 32x32 13.0/18.5, 64->64 5x5 16x16 13.6/14.3,
    16->16 7x7 28x28 12.8/30.0; 64->128 3x3 8x8 12.6/7.6); not generic."""
    f, c, kh, kw = weight_shape
    return (DIRECT and stride == (1, 1) and dilation == (1, 1) and groups == 1
            and np.dtype(dtype) == np.float32 and direct_grad_weight_pays()
            and (c <= 4 or (kh * kw >= 25 and c * f <= 4096)))


def _winograd_applies(weight, stride, dilation, groups, oh, ow, grad_weight=False):
    """The Winograd tile for this conv: 4 for F(4x4, 3x3), 2 for F(2x2, 3x3), 0 for none.

    ``grad_weight=True`` asks for the weight gradient, which has its own measured rule.
    """
    f, cg, kh, kw = weight.shape
    if not ((kh, kw) == (3, 3) and stride == (1, 1) and dilation == (1, 1)
            and min(cg, f // groups) >= WINOGRAD_MIN_CHANNELS):
        return 0
    pixels = oh * ow
    if grad_weight:
        if pixels <= 256 and cg * (f // groups) >= GRAD_WEIGHT_IM2COL_MIN_PAIRS:
            return 0
        min4, min2 = GRAD_WEIGHT_WINOGRAD43_MIN_PIXELS, GRAD_WEIGHT_WINOGRAD_MIN_PIXELS
    else:
        min4, min2 = WINOGRAD43_MIN_PIXELS, WINOGRAD_MIN_PIXELS
    if oh % 4 == 0 and ow % 4 == 0 and pixels >= min4:
        return 4
    if oh % 2 == 0 and ow % 2 == 0 and pixels >= min2:
        return 2
    return 0


def _padded_size(c, oh, ow, tile):
    """Elements of the kernels' zero-padded image copy: F(4x4) splits each row into 4 phases."""
    return c * (oh + 2) * (ow + 2 if tile == 2 else 4 * (ow // 4 + 1))


def _winograd_conv3x3(x, weight, bias, padding, groups, out=None, fn="conv2d", what="output",
                      tile=2):
    """conv2d(x, weight, bias, stride=1, padding, groups) of a 3x3 weight by Winograd F(m x m, 3x3).

    tile m = 2 (output sizes even) or 4 (multiples of 4).
    """
    n, c, h, w = x.shape
    f, cg = weight.shape[:2]
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    g = (_G if tile == 2 else _G43).astype(x.dtype)
    p = (tile + 2) ** 2
    # U = G g G^T per (f, c) as two small matmuls (a plain einsum loops over every index)
    u = np.ascontiguousarray((g @ weight @ g.T).reshape(f, cg, p).transpose(2, 0, 1))
    tiles = (oh // tile) * (ow // tile)
    b = max(1, min(-(-n // PARTS), (WINOGRAD_TILES if tile == 2 else WINOGRAD43_TILES) // tiles))
    threads = min(threads_for(n * tiles * p * c * f // groups, n), PARTS, max(1, -(-n // b)))
    padded = scratch("winograd padded image", x.dtype, threads, _padded_size(c, oh, ow, tile))
    v = scratch("winograd inputs", x.dtype, threads, p * (c * b * tiles + PLANE_SKEW))
    m = scratch("winograd products", x.dtype, threads, p * (f * b * tiles + PLANE_SKEW))
    y = output_array((n, f, oh, ow), x.dtype, fn, what, out=out, inputs=(x, weight, bias))
    _winograd.winograd_conv3x3(x, u, bias, y, padded, v, m, *padding, groups, b, threads)
    return y


def _winograd_grad_weight3x3(x, grad_y, weight_shape, padding, groups, tile=2):
    """(grad_weight, grad_bias) of a 3x3 stride-1 conv2d by Winograd F(m x m, 3x3), m = tile.

    The kernel sums dL/dU = sum over tiles of (A dY A^T) * (B^T d B) per partition;
    dW = G^T (dL/dU) G is the transpose of the forward's weight transform.
    """
    n, c, h, w = x.shape
    f, cg = weight_shape[:2]
    oh, ow = grad_y.shape[2:]
    p = (tile + 2) ** 2
    tiles = (oh // tile) * (ow // tile)
    b = max(1, min(-(-n // PARTS), (WINOGRAD_TILES if tile == 2 else WINOGRAD43_TILES) // tiles))
    threads = min(threads_for(n * tiles * p * c * f // groups, n), PARTS, max(1, -(-n // b)))
    padded = scratch("winograd padded image", x.dtype, threads, _padded_size(c, oh, ow, tile))
    v = scratch("winograd inputs", x.dtype, threads, p * (c * b * tiles + PLANE_SKEW))
    z = scratch("winograd products", x.dtype, threads, p * (f * b * tiles + PLANE_SKEW))
    grad_m = scratch("winograd grad_weight", x.dtype, PARTS, p * f * cg)
    grad_b = scratch("conv2d grad_bias", x.dtype, PARTS, f)
    _winograd.winograd_grad_weight3x3(x, grad_y, grad_m, grad_b, padded, v, z, *padding, groups,
                                      b, tile, threads)
    g = (_G if tile == 2 else _G43).astype(x.dtype)
    grad_u = grad_m.sum(axis=0).reshape(tile + 2, tile + 2, f, cg)
    grad_weight = np.ascontiguousarray(g.T @ grad_u.transpose(2, 3, 0, 1) @ g)
    return grad_weight, grad_b.sum(axis=0)


def _transposed_shape(weight_shape, groups):
    f, cg, kh, kw = weight_shape
    return (groups * cg, f // groups, kh, kw)


def _transposed_kernel(weight, groups):
    """(F, C/g, KH, KW) -> (C, F/g, KH, KW), flipped in both spatial axes, per group.

    The input gradient of a stride-1 conv2d is conv2d of grad_y with this kernel
    and padding K - 1 - p.
    """
    f, cg, kh, kw = weight.shape
    w = weight.reshape(groups, f // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w[..., ::-1, ::-1]).reshape(groups * cg, f // groups, kh, kw)


def _blocking(n, c, kh, kw, oh, ow, itemsize):
    """Choose (B, R): B small images side by side, or R output rows of one large image.

    Aims for a column buffer of about BLOCK_BYTES with at least 256 columns
    (GEMMs much narrower than that run far below peak), and enough blocks to
    keep every partition busy.  It does not depend on the thread count.
    """
    k = c * kh * kw
    cols = min(8192, max(MIN_COLS, BLOCK_BYTES // (k * itemsize)))
    if oh * ow >= cols:
        return 1, max(1, cols // ow)
    per_part = -(-n // PARTS) if n else 1
    return max(1, min(cols // (oh * ow), per_part)), oh


def _plan(x, weight, oh, ow):
    """Threads, blocking (B, R) and per-thread scratch buffers (column matrix, product block)."""
    n, c = x.shape[:2]
    f, cg, kh, kw = weight.shape
    threads = threads_for(n * f * oh * ow * cg * kh * kw, n)
    b, r = _blocking(n, c, kh, kw, oh, ow, x.itemsize)
    threads = min(threads, PARTS, max(1, -(-n // b)))
    cols = b * r * ow
    col = scratch("conv2d im2col", x.dtype, threads, c * kh * kw * cols)
    tmp = scratch("conv2d block", x.dtype, threads, f * cols if b > 1 else 1)
    return threads, b, r, col, tmp


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, out=None):
    """2-D convolution (cross-correlation) of a batch of images, as torch.nn.functional.conv2d.

    y[n, f, i, j] = bias[f] + sum_{c, a, b} weight[f, c, a, b]
                    * xpad[n, g*C/groups + c, i*sh + a*dh, j*sw + b*dw]
    where xpad is x zero-padded and g is the group of output channel f.  The kernel
    is not flipped: this is cross-correlation, which CNN layers call convolution
    (see `convolve2d` for the flipped, true convolution).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64
    weight : ndarray, shape (F, C / groups, KH, KW), same dtype as x
    bias : ndarray, shape (F,), optional
    stride, padding, dilation : int or (int, int)
        Stride >= 1, zero padding >= 0 on each side, dilation >= 1.
    groups : int
        Input and output channels are split into `groups` independent groups
        (groups == C is a depthwise convolution).
    out : ndarray, optional
        C-contiguous array of the output's shape and dtype to write y into
        (a layer reuses one between steps: fresh memory costs page faults).

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW), dtype of x, where
        OH = floor((H + 2*ph - dh*(KH-1) - 1) / sh) + 1, and likewise OW.

    Raises
    ------
    TypeError
        For a non-float dtype, or x, weight and bias of different dtypes.
    ValueError
        For wrong dimensions, channel counts, groups, strides, paddings, or an
        output size < 1; the message names the argument and the shapes.
    """
    x, weight, stride, padding, dilation, groups, (oh, ow) = _geometry(
        x, weight, stride, padding, dilation, groups, "conv2d")
    f = weight.shape[0]
    if bias is None:
        bias = np.empty(0, x.dtype)
    else:
        bias = float_array(bias, "bias", 1, dtype=x.dtype)
        if bias.shape != (f,):
            raise ValueError(f"conv2d: bias must have shape ({f},) for weight {weight.shape}, "
                             f"got {bias.shape}")
    if depthwise_applies(x.shape, weight.shape, groups):
        return depthwise_conv2d(x, weight, bias, stride, padding, dilation, (oh, ow), out=out)
    tile = _winograd_applies(weight, stride, dilation, groups, oh, ow)
    if _direct_applies(x.shape, weight.shape, stride, padding, dilation, groups, x.dtype, tile):
        return direct_conv2d(x, weight, bias, padding, out=out)
    if tile:
        return _winograd_conv3x3(x, weight, bias, padding, groups, out=out, tile=tile)
    threads, b, r, col, tmp = _plan(x, weight, oh, ow)
    y = output_array((x.shape[0], f, oh, ow), x.dtype, "conv2d", out=out,
                     inputs=(x, weight, bias))
    _kernels.conv2d_forward(x, weight, bias, y, col, tmp, *stride, *padding, *dilation, groups,
                            b, r, threads)
    return y


def conv2d_backward(x, weight, grad_y, stride=1, padding=0, dilation=1, groups=1,
                    need_grad_x=True, *, out=None):
    """Gradients of `conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        The input of the forward call.
    weight : ndarray, shape (F, C / groups, KH, KW)
    grad_y : ndarray, shape (N, F, OH, OW)
        Gradient of the loss with respect to conv2d's output.
    stride, padding, dilation, groups
        As given to `conv2d`.
    need_grad_x : bool
        False skips grad_x (a first layer needs none) and returns None for it.
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, shape (N, C, H, W) (None when need_grad_x is False)
    grad_weight : ndarray, shape (F, C / groups, KH, KW)
    grad_bias : ndarray, shape (F,)
        All with the dtype of x.  The bias gradient is returned whether or not
        the forward call used a bias.
    """
    need_grad_x = check_flag(need_grad_x, "need_grad_x", "conv2d_backward")
    x, weight, stride, padding, dilation, groups, (oh, ow) = _geometry(
        x, weight, stride, padding, dilation, groups, "conv2d_backward")
    grad_y = float_array(grad_y, "grad_y", 4, dtype=x.dtype)
    n, c = x.shape[:2]
    f, _, kh, kw = weight.shape
    if grad_y.shape != (n, f, oh, ow):
        raise ValueError(f"conv2d_backward: grad_y must have the output shape {(n, f, oh, ow)} "
                         f"for x {x.shape} and weight {weight.shape}, got {grad_y.shape}")
    if depthwise_applies(x.shape, weight.shape, groups):
        return depthwise_conv2d_backward(x, weight, grad_y, stride, padding, dilation,
                                         need_grad_x, out=out)
    # grad_x is conv2d of grad_y with the flipped, transposed kernel and padding K - 1 - p:
    # the direct kernel where it is faster, else Winograd where it applies, else im2col.
    tile_x = (_winograd_applies(weight, stride, dilation, groups, *x.shape[2:])
              if max(padding) <= 2 else 0)
    direct_x = (need_grad_x and padding[0] < kh and padding[1] < kw
                and _direct_applies(grad_y.shape, _transposed_shape(weight.shape, groups),
                                    stride, (kh - 1 - padding[0], kw - 1 - padding[1]),
                                    dilation, groups, x.dtype, tile_x))
    winograd_x = need_grad_x and not direct_x and bool(tile_x)
    im2col_x = need_grad_x and not (direct_x or winograd_x)
    # The weight gradient: Winograd or the direct kernel where measured faster, else
    # im2col + GEMM, which with an im2col grad_x computes both from one column matrix.
    tile_w = 0 if im2col_x else _winograd_applies(weight, stride, dilation, groups, oh, ow,
                                                  grad_weight=True)
    grad_x = None
    if tile_w:
        grad_weight, grad_bias = _winograd_grad_weight3x3(x, grad_y, weight.shape, padding, groups,
                                                          tile=tile_w)
    elif not im2col_x and _direct_grad_weight_applies(x.shape, weight.shape, stride, dilation,
                                                      groups, x.dtype):
        grad_weight, grad_bias = direct_conv2d_grad_weight(x, grad_y, weight.shape, padding,
                                                            PARTS)
    else:
        grad_x, grad_weight, grad_bias = _im2col_backward(x, weight, grad_y, stride, padding,
                                                          dilation, groups, (oh, ow), im2col_x,
                                                          out)
    if direct_x:
        grad_x = direct_conv2d_grad_x(grad_y, weight, padding, out=out)
    if winograd_x:
        grad_x = _winograd_conv3x3(grad_y, _transposed_kernel(weight, groups),
                                   np.empty(0, x.dtype), (2 - padding[0], 2 - padding[1]), groups,
                                   out=out, fn="conv2d_backward", what="grad_x", tile=tile_x)
    return grad_x, grad_weight, grad_bias


def _im2col_backward(x, weight, grad_y, stride, padding, dilation, groups, out_hw, want_x,
                     out):
    """(grad_x or None, grad_weight, grad_bias) by im2col + GEMM; grad_x only if want_x."""
    threads, b, r, col, tmp = _plan(x, weight, *out_hw)
    if want_x:
        grad_x = output_array(x.shape, x.dtype, "conv2d_backward", "grad_x", out=out,
                              inputs=(x, weight, grad_y))
    else:
        grad_x = np.empty((0, 1, 1, 1), x.dtype)
    grad_w = scratch("conv2d grad_weight", x.dtype, PARTS, weight.size)
    grad_b = scratch("conv2d grad_bias", x.dtype, PARTS, weight.shape[0])
    _kernels.conv2d_backward(x, weight, grad_y, grad_x, grad_w, grad_b, col, tmp,
                             *stride, *padding, *dilation, groups, b, r, threads)
    grad_weight = grad_w.sum(axis=0).reshape(weight.shape)
    return (grad_x if want_x else None), grad_weight, grad_b.sum(axis=0)
