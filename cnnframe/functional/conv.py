"""2-D convolution of NCHW batches (the cross-correlation CNN layers call convolution).

Four algorithms: the direct kernel (_direct.py), Winograd F(2x2, 3x3) / F(4x4, 3x3),
im2col + GEMM (here) and, for depthwise convs, a per-plane kernel (depthwise.py);
conv_dispatch.py says which one each pass runs.
"""
import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import (check_flag, contiguous, conv_geometry, float_array,
                                       output_array)
from cnnframe.functional._direct import (direct_conv2d, direct_conv2d_grad_weight,
                                         direct_conv2d_grad_x)
from cnnframe.functional._weight_cache import WeightCache
from cnnframe.functional._workspace import scratch
from cnnframe.functional.conv_dispatch import backward_algorithms, resolve, tile_grid
from cnnframe.functional.depthwise import depthwise_conv2d, depthwise_conv2d_backward
from cnnframe_ext import conv as _kernels
from cnnframe_ext import winograd as _winograd

# Target size of one thread's column buffer: small enough to stay in a core's L2 cache.
BLOCK_BYTES = 1 << 19
# GEMMs much narrower than this many columns run far below peak.
MIN_COLS = 256
# The batch is cut into this many fixed partitions whose weight gradients are summed
# separately and then in order, so results do not depend on the thread count (<= PARTS).
PARTS = 8


def _checked(x, weight, stride, padding, dilation, groups, fn):
    """Validate a conv call once; return (x, weight, ConvGeometry), the arrays C-contiguous."""
    x = float_array(x, "x", 4, copy=False)
    weight = float_array(weight, "weight", 4, dtype=x.dtype.newbyteorder("="), copy=False)
    g = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups, fn)
    return contiguous(x), contiguous(weight), g  # only now: the shapes are consistent


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
# G (x) G per tile: row (i, j), column (a, b) is G[i, a] G[j, b], so U = G g G^T of a
# filter is _KRON @ g.ravel() (float64: the products are rounded once, to the weights' dtype).
_KRON = {2: np.kron(_G, _G), 4: np.kron(_G43, _G43)}


def _padded_size(c, oh, ow, tile):
    """Elements of the kernels' zero-padded image copy: F(4x4) splits each row into 4 phases.
    oh and ow are the output sizes rounded up to whole tiles."""
    return c * (oh + 2) * (ow + 2 if tile == 2 else 4 * (ow // 4 + 1))



def _winograd_weights(weight, tile, groups, out=None):
    """U = G g G^T of every 3x3 filter g: (P, F, C/groups), P = (tile + 2)^2 positions.

    One GEMM, (P x 9) @ (9 x F*C/g) with the Kronecker product G (x) G, writes U straight
    in the kernels' layout (a per-filter G @ g @ G^T loops over F*C tiny products in numpy:
    11 ms for a 128 x 64 weight here, against 0.2 ms).  `out`: the array to write U into.
    """
    f, cg = weight.shape[:2]
    p = (tile + 2) ** 2
    if out is None:
        out = np.empty((p, f, cg), weight.dtype)
    np.matmul(_KRON[tile].astype(weight.dtype), weight.reshape(f * cg, 9).T,
              out=out.reshape(p, f * cg))
    return out


def _winograd_conv3x3(x, weight, bias, g, tile, out=None, fn="conv2d", what="output",
                      cache=None):
    """conv2d of a 3x3 stride-1 conv of geometry `g` by Winograd F(m x m, 3x3), m = tile.

    tile m = 2 or 4; output sizes that are not multiples of m end in ragged tiles (their
    extra outputs are computed and dropped).  `cache`: a WeightCache keeping
    the transformed weights between calls (else they go into a reused scratch buffer).
    """
    p = (tile + 2) ** 2
    cg = g.c // g.groups
    if cache is not None:
        u = cache.lookup(weight, ("winograd", tile),
                         lambda: _winograd_weights(weight, tile, g.groups))
    else:
        u = _winograd_weights(weight, tile, g.groups,
                              scratch("winograd weights", x.dtype, 1, p * g.f * cg)
                              .reshape(p, g.f, cg))
    b, threads, padded, v, m, edge = _winograd_workspace(g, tile, x.dtype)
    y = output_array(g.out_shape, x.dtype, fn, what, out=out, inputs=(x, weight, bias))
    _winograd.winograd_conv3x3(x, u, bias, y, padded, v, m, edge, *g.padding, g.groups, b,
                               threads)
    return y


def _winograd_workspace(g, tile, dtype):
    """(images per block b, threads, padded, inputs, products, edge): the blocking and the
    reused scratch that the Winograd forward pass and weight gradient share for conv `g`."""
    p = (tile + 2) ** 2
    th, tw = tile_grid(g, tile)
    tiles = th * tw
    b = max(1, min(-(-g.n // PARTS),
                   (WINOGRAD_TILES if tile == 2 else WINOGRAD43_TILES) // tiles))
    threads = min(threads_for(g.n * tiles * p * g.c * g.f // g.groups, g.n), PARTS,
                  max(1, -(-g.n // b)))
    padded = scratch("winograd padded image", dtype, threads,
                     _padded_size(g.c, th * tile, tw * tile, tile))
    inputs = scratch("winograd inputs", dtype, threads, p * (g.c * b * tiles + PLANE_SKEW))
    products = scratch("winograd products", dtype, threads, p * (g.f * b * tiles + PLANE_SKEW))
    edge = scratch("winograd edge rows", dtype, threads, tile * tw * tile)
    return b, threads, padded, inputs, products, edge


def _winograd_grad_weight3x3(x, grad_y, g, tile):
    """(grad_weight, grad_bias) of a 3x3 stride-1 conv2d by Winograd F(m x m, 3x3), m = tile.

    The kernel sums dL/dU = sum over tiles of (A dY A^T) * (B^T d B) per partition;
    dW = G^T (dL/dU) G is the transpose of the forward's weight transform.
    """
    p = (tile + 2) ** 2
    cg = g.c // g.groups
    b, threads, padded, v, z, edge = _winograd_workspace(g, tile, x.dtype)
    grad_m = scratch("winograd grad_weight", x.dtype, PARTS, p * g.f * cg)
    grad_b = scratch("conv2d grad_bias", x.dtype, PARTS, g.f)
    _winograd.winograd_grad_weight3x3(x, grad_y, grad_m, grad_b, padded, v, z, edge,
                                      *g.padding, g.groups, b, tile, threads)
    # dW = G^T dU G per filter: one GEMM with (G (x) G)^T, as in _winograd_weights
    grad_u = grad_m.sum(axis=0).reshape(p, g.f * cg)
    grad_weight = _KRON[tile].T.astype(x.dtype) @ grad_u
    return np.ascontiguousarray(grad_weight.T).reshape(g.f, cg, 3, 3), grad_b.sum(axis=0)


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


def _plan(x, g):
    """Threads, blocking (B, R) and per-thread scratch buffers (column matrix, product block)."""
    threads = threads_for(g.n * g.f * g.out_h * g.out_w * (g.c // g.groups) * g.kh * g.kw, g.n)
    b, r = _blocking(g.n, g.c, g.kh, g.kw, g.out_h, g.out_w, x.itemsize)
    threads = min(threads, PARTS, max(1, -(-g.n // b)))
    cols = b * r * g.out_w
    col = scratch("conv2d im2col", x.dtype, threads, g.c * g.kh * g.kw * cols)
    tmp = scratch("conv2d block", x.dtype, threads, g.f * cols if b > 1 else 1)
    return threads, b, r, col, tmp


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, out=None,
           algorithm="auto", weight_cache=None):
    """2-D convolution (cross-correlation) of a batch of images, as torch.nn.functional.conv2d::

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
    algorithm : {"auto", "direct", "winograd", "winograd2", "winograd4", "im2col"}
        "auto" (default) takes the fastest measured for this conv on this CPU's
        instruction set (cnnframe.functional.conv_dispatch).  The others force one:
        the direct kernel (stride 1, dilation 1, groups 1), Winograd for 3x3 stride-1
        undilated convs (F(4x4, 3x3), or F(2x2, 3x3) where its tiles fit the output
        more closely; "winograd2" / "winograd4" force the tile), or im2col +
        GEMM (any conv).  Every algorithm gives the same result up to rounding.
    weight_cache : WeightCache, optional
        Keeps what the algorithm derives from `weight` (Winograd's transformed weights,
        the direct kernel's packed ones) for the next call with the same weight, bytes
        compared on every call (cnnframe.functional.WeightCache): the result is the same
        as without it.  Layers pass one in inference passes.

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
        output size < 1, the message naming the argument and the shapes; for an
        unknown `algorithm` or one that cannot compute this conv, saying why.
    """
    x, weight, g = _checked(x, weight, stride, padding, dilation, groups, "conv2d")
    if bias is None:
        bias = np.empty(0, x.dtype)
    else:
        bias = float_array(bias, "bias", 1, dtype=x.dtype)
        if bias.shape != (g.f,):
            raise ValueError(f"conv2d: bias must have shape ({g.f},) for weight {weight.shape}, "
                             f"got {bias.shape}")
    chosen = resolve(algorithm, "forward", g, x.dtype, "conv2d")
    if chosen == "depthwise" and not np.isfinite(weight).all():
        chosen = "im2col"   # see _depthwise_passes_nonfinite
    if chosen == "depthwise":
        return depthwise_conv2d(x, weight, bias, g.stride, g.padding, g.dilation,
                                (g.out_h, g.out_w), out=out)
    if weight_cache is not None and not isinstance(weight_cache, WeightCache):
        raise TypeError(f"conv2d: weight_cache must be a cnnframe.functional.WeightCache or "
                        f"None, got {type(weight_cache).__name__}")
    if chosen == "direct":
        return direct_conv2d(x, weight, bias, g, out=out, cache=weight_cache)
    if chosen.startswith("winograd"):
        return _winograd_conv3x3(x, weight, bias, g, int(chosen[-1]), out=out,
                                 cache=weight_cache)
    threads, b, r, col, tmp = _plan(x, g)
    y = output_array(g.out_shape, x.dtype, "conv2d", out=out, inputs=(x, weight, bias))
    _kernels.conv2d_forward(x, weight, bias, y, col, tmp, *g.stride, *g.padding, *g.dilation,
                            g.groups, b, r, threads)
    return y


def conv2d_backward(x, weight, grad_y, stride=1, padding=0, dilation=1, groups=1,
                    need_grad_x=True, *, need_grad_weight=True, out=None, algorithm="auto"):
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
    need_grad_weight : bool
        False skips grad_weight and grad_bias (a frozen conv needs neither) and
        returns None for both; im2col and the depthwise kernel still form them
        inside their one shared pass, the other algorithms do no weight-gradient work.
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.
    algorithm : str or dict
        As for `conv2d`, for both gradients, or a dict {"grad_x": name,
        "grad_weight": name} per gradient (a missing key is "auto").  grad_x by
        the direct kernel or Winograd is a stride-1 conv of grad_y with the flipped
        kernel: it needs stride 1, dilation 1 and padding <= KH - 1, KW - 1 too, and
        Winograd's output sizes are x's.  With "auto", grad_weight takes im2col
        whenever grad_x does (one column matrix serves both).

    Returns
    -------
    grad_x : ndarray, shape (N, C, H, W) (None when need_grad_x is False)
    grad_weight : ndarray, shape (F, C / groups, KH, KW) (None when need_grad_weight is False)
    grad_bias : ndarray, shape (F,) (None when need_grad_weight is False)
        All with the dtype of x.  The bias gradient is returned whether or not
        the forward call used a bias.

    Raises
    ------
    TypeError, ValueError
        As `conv2d`, and for a grad_y not of the output's shape.
    """
    fn = "conv2d_backward"
    need_grad_x = check_flag(need_grad_x, "need_grad_x", fn)
    need_grad_weight = check_flag(need_grad_weight, "need_grad_weight", fn)
    x, weight, g = _checked(x, weight, stride, padding, dilation, groups, fn)
    grad_y = float_array(grad_y, "grad_y", 4, dtype=x.dtype)
    if grad_y.shape != g.out_shape:
        raise ValueError(f"conv2d_backward: grad_y must have the output shape {g.out_shape} "
                         f"for x {x.shape} and weight {weight.shape}, got {grad_y.shape}")
    algo_x, algo_w = backward_algorithms(algorithm, g, x.dtype, need_grad_x, fn,
                                         need_grad_weight=need_grad_weight)
    if "depthwise" in (algo_x, algo_w) and not np.isfinite(weight).all():
        # see _depthwise_passes_nonfinite
        algo_x, algo_w = ("im2col" if a == "depthwise" else a for a in (algo_x, algo_w))
    grad_x = grad_weight = grad_bias = None
    if algo_w is None:
        pass
    elif algo_w == "depthwise":  # with a depthwise grad_x, both in one call
        grad_x, grad_weight, grad_bias = depthwise_conv2d_backward(
            x, weight, grad_y, g.stride, g.padding, g.dilation, algo_x == "depthwise", out=out)
        if any(g.padding) and not np.isfinite(grad_bias).all():   # a NaN or inf in grad_y
            grad_x, grad_weight, grad_bias = _im2col_backward(x, weight, grad_y, g,
                                                              algo_x is not None, out)
    elif algo_w == "im2col":  # with an im2col grad_x, both from one column matrix
        grad_x, grad_weight, grad_bias = _im2col_backward(x, weight, grad_y, g,
                                                          algo_x == "im2col", out)
    elif algo_w == "direct":
        grad_weight, grad_bias = direct_conv2d_grad_weight(x, grad_y, g, PARTS)
    else:
        grad_weight, grad_bias = _winograd_grad_weight3x3(x, grad_y, g, int(algo_w[-1]))
    if algo_x == "depthwise" and algo_w != "depthwise":   # (the weight gradient discarded)
        grad_x = depthwise_conv2d_backward(x, weight, grad_y, g.stride, g.padding, g.dilation,
                                           True, out=out)[0]
    elif algo_x == "im2col" and algo_w != "im2col":   # (the weight gradient discarded)
        grad_x = _im2col_backward(x, weight, grad_y, g, True, out)[0]
    elif algo_x == "direct":
        grad_x = direct_conv2d_grad_x(grad_y, weight, g, out=out)
    elif algo_x is not None and algo_x.startswith("winograd"):
        grad_x = _winograd_conv3x3(grad_y, _transposed_kernel(weight, g.groups),
                                   np.empty(0, x.dtype), g.grad_x_conv(), int(algo_x[-1]),
                                   out=out, fn=fn, what="grad_x")
    return grad_x, grad_weight, grad_bias


# _depthwise_passes_nonfinite: the depthwise kernel skips the products that are zero for
# finite values: taps on padding (0 * w, 0 * grad_y) and, for stride > 1, the zeros between
# the spread-out grad_y values of the input gradient.  With a NaN or inf there the reference
# and PyTorch give NaN (0 * inf), so a non-finite weight, or a non-finite grad_y with padding
# (grad_bias, which sums grad_y, shows it), goes to im2col, which forms every product.


def _im2col_backward(x, weight, grad_y, g, want_x, out):
    """(grad_x or None, grad_weight, grad_bias) by im2col + GEMM; grad_x only if want_x."""
    threads, b, r, col, tmp = _plan(x, g)
    if want_x:
        grad_x = output_array(x.shape, x.dtype, "conv2d_backward", "grad_x", out=out,
                              inputs=(x, weight, grad_y))
    else:
        grad_x = np.empty((0, 1, 1, 1), x.dtype)
    grad_w = scratch("conv2d grad_weight", x.dtype, PARTS, weight.size)
    grad_b = scratch("conv2d grad_bias", x.dtype, PARTS, weight.shape[0])
    _kernels.conv2d_backward(x, weight, grad_y, grad_x, grad_w, grad_b, col, tmp,
                             *g.stride, *g.padding, *g.dilation, g.groups, b, r, threads)
    grad_weight = grad_w.sum(axis=0).reshape(weight.shape)
    return (grad_x if want_x else None), grad_weight, grad_b.sum(axis=0)
