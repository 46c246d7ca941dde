"""Direct convolution of strided or dilated convs (cnnframe_ext/src/direct.h: dc_copy_taps).

For each band of R output rows a thread copies one run per tap,
    xs[c, kw * KH + kh, r, j] = xpad[c, (oh0 + r) * sh + kh * dh, j * sw + kw * dw],
a band-sized im2col that stays in L2, and runs the stride-1 micro-kernels over it as a
conv with a 1 x (KH * KW) kernel.  A stride-2 conv reads each input element about
KH * KW / 4 times into these copies (2.25 for 3x3), against KW times (3) for the stride-1
band copies, and no column matrix of the whole batch is ever built.
"""
import numpy as np

from cnnframe._threads import get_num_threads, threads_for
from cnnframe.functional._args import conv_geometry, output_array
from cnnframe.functional._direct import (BAND_BYTES, _kernel, _lanes, _packed_weight, _tile,
                                         direct_conv2d_grad_x)
from cnnframe.functional._workspace import scratch
from cnnframe.functional.conv_dispatch import tiles


def strided_plan(x_shape, weight_shape, out_hw, dtype, threads=1):
    """(R, FB, V): band rows and micro-kernel for a strided or dilated direct conv.  R
    keeps a band's tap copies (C * KH * KW * R * OW elements) within BAND_BYTES, and
    gives every thread a band when the batch alone has too few images."""
    n, c = x_shape[:2]
    f, _, kh, kw = weight_shape
    oh, ow = out_hw
    per_row = c * kh * kw * ow * np.dtype(dtype).itemsize
    r = max(1, min(oh, BAND_BYTES // max(1, per_row)))
    if 0 < n < threads:
        r = min(r, -(-oh // -(-threads // n)))
    fb, v = _tile(f, r * ow, _lanes(dtype))
    return r, fb, v


def direct_conv2d_strided(x, weight, bias, stride, padding, dilation, out_hw, out=None,
                          plan=None):
    """conv2d(x, weight, bias, stride, padding, dilation) of an ungrouped conv, directly.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 or float64, C-contiguous
    weight : ndarray, shape (F, C, KH, KW), dtype of x, C-contiguous
    bias : ndarray, shape (F,), or None (or empty) for no bias
    stride, padding, dilation : (int, int)
        Already validated and normalised (as conv2d does).
    out_hw : (OH, OW)
        The output size for that geometry.
    out : ndarray, optional
        C-contiguous (N, F, OH, OW) array of x's dtype to write y into.
    plan : (R, FB, V), optional
        Band rows and micro-kernel (default `strided_plan`); for tests and tuning.

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW)
    """
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    oh, ow = out_hw
    if plan is None:
        plan = strided_plan(x.shape, weight.shape, out_hw, x.dtype, get_num_threads())
    r, fb, v = plan
    if not _kernel.has_tile(fb, v):
        raise ValueError(f"direct_conv2d_strided: no micro-kernel for FB={fb}, V={v}; one of "
                         f"{tiles()}")
    packed = _packed_weight(weight, fb)
    padded_bias = np.zeros(packed.shape[0] * fb, x.dtype)
    if bias is not None and bias.size:
        padded_bias[:f] = bias
    threads = threads_for(n * f * oh * ow * c * kh * kw, n * -(-oh // r))
    buf = scratch("direct conv2d band", x.dtype, threads,
                  _kernel.band_scratch(x.itemsize, c, kh, kw, r, ow, v, True))
    inputs = (x, weight) if bias is None else (x, weight, bias)
    y = output_array((n, f, oh, ow), x.dtype, "conv2d", out=out, inputs=inputs)
    _kernel.direct_conv2d(x, packed, padded_bias, y, buf, *padding, r, v, threads, *stride,
                          *dilation)
    return y


def direct_conv2d_strided_grad_weight(x, grad_y, weight_shape, stride, padding, dilation,
                                      parts):
    """(grad_weight, grad_bias) of `direct_conv2d_strided`, float32, from the same tap copies.

    grad_weight[f, c, kh, kw] = sum over n, oh, ow of
        grad_y[n, f, oh, ow] * xpad[n, c, oh * sh + kh * dh, ow * sw + kw * dw].
    The images are cut into `parts` fixed partitions whose sums are added in order, so the
    result does not depend on the thread count.
    """
    n, c, h, w = x.shape
    f, _, kh, kw = weight_shape
    oh, ow = grad_y.shape[2:]
    per_row = c * kh * kw * ow * x.itemsize
    r = max(1, min(oh, BAND_BYTES // max(1, per_row)))
    threads = min(threads_for(n * f * oh * ow * c * kh * kw, n), parts)
    buf = scratch("direct conv2d band", x.dtype, threads,
                  _kernel.band_scratch(x.itemsize, c, kh, kw, r, ow, 1, True, grad_channels=f))
    grad_w = scratch("direct conv2d grad_weight", x.dtype, parts, f * c * kh * kw)
    grad_b = scratch("conv2d grad_bias", x.dtype, parts, f)
    _kernel.direct_conv2d_grad_weight(x, grad_y, grad_w, grad_b, buf, kh, kw, *padding, r,
                                      threads, *stride, *dilation)
    return grad_w.sum(axis=0).reshape(weight_shape), grad_b.sum(axis=0)


def _phase_taps(k, s, p, a):
    """For input rows a, a + s, a + 2s, ... of a stride-s, undilated conv with kernel size
    k and padding p: (first tap, taps, q), where the taps kh = first + s * m (m < taps)
    reach these rows, and row a + s * u reads output row u + q - m through tap m."""
    first = (a + p) % s
    taps = max(0, -(-(k - first) // s))
    return first, taps, (a + p) // s


def direct_conv2d_strided_grad_x(grad_y, weight, x_shape, stride, padding, out=None):
    """grad_x of an undilated, ungrouped strided conv, by its stride x stride phases.

    The input rows a, a + s, ... (and columns b, b + s, ...) of a stride-s conv receive
    gradient only through the taps kh = a + p (mod s): each phase of grad_x is a stride-1
    direct conv of grad_y with that sub-kernel, flipped and transposed, and padding
    taps - 1 - q (`_phase_taps`).  Together the phases do exactly the multiply-adds of the
    gradient (no zeros inserted); their outputs are then interleaved into grad_x.

    Returns None where a phase would need negative padding (the caller falls back).
    """
    n, c, h, w = x_shape
    oh, ow = grad_y.shape[2:]
    (sh, sw), (ph, pw) = stride, padding
    plans = []
    for a in range(sh):
        for b in range(sw):
            (kh0, mh, qh), (kw0, mw, qw) = (_phase_taps(weight.shape[2], sh, ph, a),
                                            _phase_taps(weight.shape[3], sw, pw, b))
            rows, cols = -(-(h - a) // sh), -(-(w - b) // sw)   # this phase's size
            # With padding taps - 1 - q the phase conv gives oh + taps - 1 - 2q rows, row
            # u for u; e more on each side cover rows it would miss (grad_x of a stride-1
            # conv with forward padding q - e, its output shifted by e).
            eh = max(0, rows - (oh + mh - 1 - 2 * qh))
            ew = max(0, cols - (ow + mw - 1 - 2 * qw))
            if mh and mw and not (0 <= qh - eh <= mh - 1 and 0 <= qw - ew <= mw - 1):
                return None
            plans.append((a, b, kh0, mh, qh - eh, eh, kw0, mw, qw - ew, ew))
    grad_x = output_array(x_shape, grad_y.dtype, "conv2d_backward", "grad_x", out=out,
                          inputs=(grad_y, weight))
    for a, b, kh0, mh, pad_h, eh, kw0, mw, pad_w, ew in plans:
        target = grad_x[:, :, a::sh, b::sw]
        if not (mh and mw):
            target[...] = 0
            continue
        sub = np.ascontiguousarray(weight[:, :, kh0::sh, kw0::sw])
        phase_x = (n, c, oh + mh - 1 - 2 * pad_h, ow + mw - 1 - 2 * pad_w)
        phase = direct_conv2d_grad_x(grad_y, sub, conv_geometry(phase_x, sub.shape,
                                                                padding=(pad_h, pad_w)))
        rows, cols = target.shape[2:]
        target[...] = phase[:, :, eh:eh + rows, ew:ew + cols]
    return grad_x
