"""2-D transposed convolution, through the conv2d kernels (cnnframe.functional.conv).

conv_transpose2d is the adjoint of conv2d: with the same weight, its forward pass
is conv2d's input gradient and its input gradient is conv2d's forward pass.  The
weight has conv2d's layout read the other way round: (C_in, C_out / groups, KH, KW),
as torch.nn.ConvTranspose2d.

A stride equal to the kernel size (no padding or dilation: the usual 2x2, stride-2
upsampling) makes the kernel copies side by side, never overlapping: the transposed
convolution is then a 1x1 conv2d to C_out * KH * KW channels whose planes are
interleaved into the finer grid (cnnframe_ext.resample.depth_to_space), and its
gradients are that conv2d's, of grad_y taken apart the same way.  Other strides go
through conv2d's input gradient, which also computes a weight gradient that is thrown
away.
"""
import numpy as np

from cnnframe._threads import threads_for
from cnnframe.functional._args import float_array, output_array, pair, positive_int
from cnnframe.functional._workspace import scratch
from cnnframe.functional.conv import conv2d, conv2d_backward
from cnnframe_ext import resample as _resample


def _geometry(x, weight, bias, stride, padding, output_padding, groups, dilation, fn):
    """Validate a call; return (x, weight, bias, stride, padding, output_padding, groups,
    dilation, (OH, OW), (CH, CW)) where (CH, CW) is conv2d's output size for an (OH, OW)
    input: (H, W), plus one row or column more where output_padding >= stride."""
    x = float_array(x, "x", 4)
    weight = float_array(weight, "weight", 4, dtype=x.dtype)
    if bias is not None:
        bias = float_array(bias, "bias", 1, dtype=x.dtype)
    stride = pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    output_padding = pair(output_padding, "output_padding", 0)
    dilation = pair(dilation, "dilation", 1)
    groups = positive_int(groups, "groups")
    n, c, h, w = x.shape
    cin, coutg, kh, kw = weight.shape
    if min(c, h, w) < 1:
        raise ValueError(f"{fn}: x has shape {x.shape}: channels, height and width must be >= 1 "
                         "(only the batch may be empty)")
    if min(cin, coutg, kh, kw) < 1:
        raise ValueError(f"{fn}: weight has shape {weight.shape}; every dimension must be >= 1")
    if c != cin or c % groups:
        raise ValueError(f"{fn}: weight has shape {weight.shape} (in_channels, out_channels / "
                         f"groups, KH, KW), so x needs {cin} channels divisible by groups="
                         f"{groups}; x has shape {x.shape}")
    if bias is not None and bias.shape != (coutg * groups,):
        raise ValueError(f"{fn}: bias must have shape ({coutg * groups},) (one value per output "
                         f"channel), got {bias.shape}")
    for a in (0, 1):
        if output_padding[a] >= max(stride[a], dilation[a]):
            raise ValueError(f"{fn}: output_padding {output_padding} must be smaller than either "
                             f"stride {stride} or dilation {dilation} in each dimension")
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, s, p, d, k, op in zip(
        (h, w), stride, padding, dilation, (kh, kw), output_padding))
    if min(out_hw) < 1:
        raise ValueError(f"{fn}: output size would be {out_hw[0]} x {out_hw[1]} (< 1) for input "
                         f"{h} x {w}, kernel {kh} x {kw}, stride {stride}, padding {padding}, "
                         f"dilation {dilation}, output_padding {output_padding}")
    conv_hw = (h + output_padding[0] // stride[0], w + output_padding[1] // stride[1])
    return (x, weight, bias, stride, padding, output_padding, groups, dilation, out_hw,
            conv_hw)


def _padded(x, conv_hw):
    """x zero-padded at the bottom and right to conv_hw (x itself when it has that size)."""
    n, c, h, w = x.shape
    if (h, w) == tuple(conv_hw):
        return x
    xp = np.zeros((n, c, *conv_hw), x.dtype)
    xp[:, :, :h, :w] = x
    return xp


def _flipped_transpose(weight, groups):
    """(C_in, C_out/g, KH, KW) -> (C_out, C_in/g, KH, KW) per group, flipped in H and W: the
    conv2d weight whose stride-1 convolution is this transposed convolution."""
    cin, coutg, kh, kw = weight.shape
    w = weight.reshape(groups, cin // groups, coutg, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w[..., ::-1, ::-1]).reshape(groups * coutg, cin // groups, kh, kw)


def _side_by_side(weight, stride, padding, output_padding, dilation):
    """True when the kernel copies tile the output without overlap (stride = kernel size > 1,
    no padding, dilation or output_padding): the 1x1-convolution path applies."""
    kh, kw = weight.shape[2:]
    return (tuple(stride) == (kh, kw) and kh * kw > 1 and tuple(padding) == (0, 0)
            and tuple(output_padding) == (0, 0) and tuple(dilation) == (1, 1))


def _pointwise_weight(weight, groups):
    """(C_in, C_out/g, KH, KW) -> the (C_out*KH*KW, C_in/g, 1, 1) weight of the 1x1 conv2d
    whose output channel (c*KH + a)*KW + b is the plane of kernel position (a, b) of
    output channel c."""
    cin, coutg, kh, kw = weight.shape
    w = weight.reshape(groups, cin // groups, coutg * kh * kw).transpose(0, 2, 1)
    return np.ascontiguousarray(w).reshape(groups * coutg * kh * kw, cin // groups, 1, 1)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, out=None):
    """2-D transposed convolution, as torch.nn.functional.conv_transpose2d.

    The adjoint of conv2d with the same weight, stride, padding, dilation and groups:
    each input pixel scatters weight-scaled copies of the kernel into the output, with
    strides between them, and `padding` rows and columns are cut from each side.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W), float32 or float64
    weight : ndarray, shape (C_in, C_out / groups, KH, KW), x's dtype
    bias : ndarray, shape (C_out,), optional
    stride, padding, dilation : int or (int, int)
    output_padding : int or (int, int)
        Rows and columns added at the bottom and right of the output (which
        conv2d's output size rounding loses); smaller than stride or dilation.
    groups : int
        Divides C_in (and C_out = groups * weight.shape[1]).
    out : ndarray, optional
        C-contiguous array of the output's shape and dtype to write y into.

    Returns
    -------
    y : ndarray, shape (N, C_out, OH, OW), x's dtype, where
        OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1, and likewise OW.

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type, dtype or shape, an output_padding not smaller
        than stride or dilation, or an output size < 1.
    """
    fn = "conv_transpose2d"
    (x, weight, bias, stride, padding, output_padding, groups, dilation, out_hw,
     conv_hw) = _geometry(x, weight, bias, stride, padding, output_padding, groups, dilation, fn)
    n = x.shape[0]
    cout = weight.shape[1] * groups
    kh, kw = weight.shape[2:]
    same_size_pad = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
    if stride == (1, 1) and output_padding == (0, 0) and min(same_size_pad) >= 0:
        # stride 1: a plain conv2d with the flipped, transposed kernel (its fast paths apply)
        return conv2d(x, _flipped_transpose(weight, groups), bias, 1, same_size_pad, dilation,
                      groups, out=out)
    y = output_array((n, cout, *out_hw), x.dtype, fn, out=out, inputs=(x, weight, bias))
    if n == 0:
        return y
    if _side_by_side(weight, stride, padding, output_padding, dilation):
        h, w = x.shape[2:]
        planes = scratch("conv_transpose2d planes", x.dtype, n, cout * kh * kw * h * w)
        planes = conv2d(x, _pointwise_weight(weight, groups), None, 1, 0, 1, groups,
                        out=planes.reshape(n, cout * kh * kw, h, w))
        _resample.depth_to_space(planes, np.empty(0, x.dtype) if bias is None else bias, y,
                                 threads_for(y.size, n * cout))
        return y
    # conv2d's input gradient for an input of the output's size; that input's values do not
    # matter (only a weight gradient reads them, which is skipped, or formed and discarded
    # by im2col): a zeroed scratch array.
    dummy = scratch("conv_transpose2d input", x.dtype, 1, y.size).reshape(y.shape)
    dummy.fill(0)
    conv2d_backward(dummy, weight, _padded(x, conv_hw), stride, padding, dilation, groups,
                    need_grad_x=True, need_grad_weight=False, out=y)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(x, weight, grad_y, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, need_grad_x=True, *, out=None):
    """Gradients of `conv_transpose2d` with respect to its input, weight and bias.

    grad_x is conv2d(grad_y, weight) (the forward pass of the convolution this one
    transposes); grad_weight is that conv2d's weight gradient with x as its output
    gradient; grad_bias sums grad_y over N, OH and OW.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
        The input of the forward call.
    weight : ndarray, shape (C_in, C_out / groups, KH, KW)
    grad_y : ndarray, shape (N, C_out, OH, OW)
    stride, padding, output_padding, groups, dilation
        As given to `conv_transpose2d`.
    need_grad_x : bool
        False skips grad_x and returns None for it.
    out : ndarray, optional
        C-contiguous array of x's shape and dtype to write grad_x into.

    Returns
    -------
    grad_x : ndarray, x's shape and dtype (None when need_grad_x is False)
    grad_weight : ndarray, weight's shape, x's dtype
    grad_bias : ndarray, shape (C_out,), x's dtype
        Returned whether or not the forward call used a bias.
    """
    fn = "conv_transpose2d_backward"
    if not isinstance(need_grad_x, (bool, np.bool_)):
        raise TypeError(f"{fn}: need_grad_x must be True or False, got {need_grad_x!r}")
    (x, weight, _, stride, padding, output_padding, groups, dilation, out_hw,
     conv_hw) = _geometry(x, weight, None, stride, padding, output_padding, groups, dilation, fn)
    n, c, h, w = x.shape
    cout = weight.shape[1] * groups
    grad_y = float_array(grad_y, "grad_y", 4, dtype=x.dtype)
    if grad_y.shape != (n, cout, *out_hw):
        raise ValueError(f"{fn}: grad_y must have the output shape {(n, cout, *out_hw)} for x "
                         f"{x.shape} and weight {weight.shape}, got {grad_y.shape}")
    if n == 0:
        grad_x = output_array(x.shape, x.dtype, fn, "grad_x", out=out) if need_grad_x else None
        return grad_x, np.zeros(weight.shape, x.dtype), np.zeros(cout, x.dtype)
    if _side_by_side(weight, stride, padding, output_padding, dilation):
        kh, kw = weight.shape[2:]
        planes = scratch("conv_transpose2d grad planes", x.dtype, n, cout * kh * kw * h * w)
        planes = planes.reshape(n, cout * kh * kw, h, w)
        _resample.space_to_depth(grad_y, planes, threads_for(grad_y.size, n * cout))
        grad_x, grad_pw, grad_pb = conv2d_backward(x, _pointwise_weight(weight, groups), planes,
                                                   1, 0, 1, groups, need_grad_x=need_grad_x,
                                                   out=out)
        cin, coutg = weight.shape[:2]
        grad_weight = np.ascontiguousarray(grad_pw.reshape(
            groups, coutg * kh * kw, cin // groups).transpose(0, 2, 1)).reshape(weight.shape)
        return grad_x, grad_weight, grad_pb.reshape(cout, kh * kw).sum(axis=1)
    grad_bias = grad_y.sum(axis=(0, 2, 3))
    _, grad_weight, _ = conv2d_backward(grad_y, weight, _padded(x, conv_hw), stride, padding,
                                        dilation, groups, need_grad_x=False)
    grad_x = None
    if need_grad_x:
        if tuple(conv_hw) == (h, w):
            grad_x = conv2d(grad_y, weight, None, stride, padding, dilation, groups,
                            out=output_array(x.shape, x.dtype, fn, "grad_x", out=out,
                                             inputs=(x, weight, grad_y)))
        else:  # the extra rows or columns conv2d computes fall outside x
            full = conv2d(grad_y, weight, None, stride, padding, dilation, groups)
            grad_x = output_array(x.shape, x.dtype, fn, "grad_x", out=out,
                                  inputs=(x, weight, grad_y))
            grad_x[...] = full[:, :, :h, :w]
    return grad_x, grad_weight, grad_bias
