"""Plain-numpy reference implementations of cnnframe.functional: the test oracle.

Written for clarity, not speed: im2col by explicit loops over kernel offsets,
pooling by loops over output positions.  Same signatures and semantics as
cnnframe.functional (PyTorch conventions), no argument validation.
"""
import numpy as np


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _out(size, k, s, p, d=1):
    # Deliberately its own copy of cnnframe.functional.conv_output_size: the oracle
    # shares no code with what it checks.
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def im2col(x, kh, kw, stride=1, padding=0, dilation=1):
    """(N, C, H, W) -> (N, C*KH*KW, OH*OW); row (c*KH + i)*KW + j holds kernel tap (i, j) of channel c."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                  j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return cols.reshape(n, c * kh * kw, oh * ow), (oh, ow)


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, dilation=1):
    """Adjoint of im2col: sum each column entry back into the pixel it came from."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x_shape
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
               j * dw: j * dw + sw * (ow - 1) + 1: sw] += cols[:, :, i, j]
    return xp[:, :, ph: ph + h, pw: pw + w]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Reference of cnnframe.functional.conv2d (cross-correlation)."""
    n, c = x.shape[:2]
    f, cg, kh, kw = weight.shape
    cols, (oh, ow) = im2col(x, kh, kw, stride, padding, dilation)
    fg, k = f // groups, cg * kh * kw
    y = np.empty((n, f, oh * ow), x.dtype)
    for g in range(groups):
        w_g = weight[g * fg:(g + 1) * fg].reshape(fg, k)
        y[:, g * fg:(g + 1) * fg] = np.matmul(w_g, cols[:, g * k:(g + 1) * k])
    if bias is not None:
        y += bias[None, :, None]
    return y.reshape(n, f, oh, ow)


def conv2d_backward(x, weight, grad_y, stride=1, padding=0, dilation=1, groups=1):
    """Reference of cnnframe.functional.conv2d_backward -> (grad_x, grad_weight, grad_bias)."""
    n, c = x.shape[:2]
    f, cg, kh, kw = weight.shape
    cols, (oh, ow) = im2col(x, kh, kw, stride, padding, dilation)
    fg, k = f // groups, cg * kh * kw
    gy = grad_y.reshape(n, f, oh * ow)
    grad_w = np.empty((f, k), x.dtype)
    grad_cols = np.empty_like(cols)
    for g in range(groups):
        gy_g = gy[:, g * fg:(g + 1) * fg]                 # (N, Fg, P)
        cols_g = cols[:, g * k:(g + 1) * k]               # (N, K, P)
        grad_w[g * fg:(g + 1) * fg] = np.einsum("nfp,nkp->fk", gy_g, cols_g)
        w_g = weight[g * fg:(g + 1) * fg].reshape(fg, k)
        grad_cols[:, g * k:(g + 1) * k] = np.matmul(w_g.T, gy_g)
    grad_x = col2im(grad_cols, x.shape, kh, kw, stride, padding, dilation)
    return grad_x, grad_w.reshape(weight.shape), gy.sum(axis=(0, 2))


def _windows(h, w, kernel_size, stride, padding):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    oh, ow = _out(h, kh, sh, ph), _out(w, kw, sw, pw)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - ph, j * sw - pw
            yield i, j, (h0, w0, h0 + kh, w0 + kw), (oh, ow)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Reference of cnnframe.functional.max_pool2d -> (y, argmax); padding never wins."""
    n, c, h, w = x.shape
    y = argmax = None
    for i, j, (h0, w0, h1, w1), (oh, ow) in _windows(h, w, kernel_size, stride, padding):
        if y is None:
            y = np.empty((n, c, oh, ow), x.dtype)
            argmax = np.empty((n, c, oh, ow), np.int64)
        a0, b0 = max(h0, 0), max(w0, 0)
        win = x[:, :, a0:min(h1, h), b0:min(w1, w)]
        flat = win.reshape(n, c, -1)
        best = flat.argmax(axis=2)
        y[:, :, i, j] = np.take_along_axis(flat, best[..., None], 2)[..., 0]
        bw = win.shape[3]
        argmax[:, :, i, j] = (a0 + best // bw) * w + (b0 + best % bw)
    return y, argmax


def max_pool2d_backward(grad_y, argmax, input_shape):
    """Reference of cnnframe.functional.max_pool2d_backward."""
    n, c, h, w = input_shape
    grad_x = np.zeros((n * c, h * w), grad_y.dtype)
    rows = np.repeat(np.arange(n * c), argmax[0, 0].size)
    np.add.at(grad_x, (rows, argmax.reshape(-1)), grad_y.reshape(-1))
    return grad_x.reshape(input_shape)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Reference of cnnframe.functional.avg_pool2d (padded zeros count in the mean)."""
    n, c, h, w = x.shape
    kh, kw = _pair(kernel_size)
    ph, pw = _pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = None
    for i, j, (h0, w0, h1, w1), (oh, ow) in _windows(h, w, kernel_size, stride, padding):
        if y is None:
            y = np.empty((n, c, oh, ow), x.dtype)
        # The divisor is the window clipped to the padded input, as PyTorch's.
        win = xp[:, :, h0 + ph:h1 + ph, w0 + pw:w1 + pw]
        y[:, :, i, j] = win.sum(axis=(2, 3)) / (win.shape[2] * win.shape[3])
    return y


def avg_pool2d_backward(grad_y, input_shape, kernel_size, stride=None, padding=0):
    """Reference of cnnframe.functional.avg_pool2d_backward."""
    n, c, h, w = input_shape
    ph, pw = _pair(padding)
    gp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), grad_y.dtype)
    for i, j, (h0, w0, h1, w1), _ in _windows(h, w, kernel_size, stride, padding):
        win = gp[:, :, h0 + ph:h1 + ph, w0 + pw:w1 + pw]
        win += (grad_y[:, :, i, j] / (win.shape[2] * win.shape[3]))[:, :, None, None]
    return gp[:, :, ph:ph + h, pw:pw + w]


def global_avg_pool2d(x):
    """Reference of cnnframe.functional.global_avg_pool2d: (N, C, H, W) -> (N, C)."""
    return x.mean(axis=(2, 3))


def global_avg_pool2d_backward(grad_y, input_shape):
    """Reference of cnnframe.functional.global_avg_pool2d_backward."""
    h, w = input_shape[2:]
    return np.broadcast_to((grad_y / (h * w))[:, :, None, None], input_shape).copy()


def correlate2d(x, k):
    """2-D cross-correlation, 'valid', by the definition."""
    x, k = np.asarray(x, float), np.asarray(k, float)
    oh, ow = x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1
    y = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[i, j] = (x[i:i + k.shape[0], j:j + k.shape[1]] * k).sum()
    return y


def convolve2d(x, k):
    """True 2-D convolution, 'valid': correlation with the kernel flipped in both axes."""
    return correlate2d(x, np.asarray(k, float)[::-1, ::-1])


# --- batch normalisation and ReLU (cnnframe.functional.normalization) ---------------------------

def _channel_axes(x):
    return (0,) + tuple(range(2, x.ndim)), (-1,) + (1,) * (x.ndim - 2)


def batch_norm_train(x, weight=None, bias=None, eps=1e-5, *, running_mean=None,
                     running_var=None, momentum=0.1):
    """Reference of cnnframe.functional.batch_norm_train: (y, mean, invstd), by the definition."""
    axes, col = _channel_axes(x)
    x64 = x.astype(np.float64)
    c = x.shape[1]
    weight = np.ones(c) if weight is None else weight.astype(np.float64)
    bias = np.zeros(c) if bias is None else bias.astype(np.float64)
    mean = x64.mean(axis=axes)
    var = ((x64 - mean.reshape(col)) ** 2).mean(axis=axes)
    invstd = 1 / np.sqrt(var + eps)
    y = (x64 - mean.reshape(col)) * (invstd * weight).reshape(col) + bias.reshape(col)
    if running_mean is not None:
        m = x.size // c
        running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        running_var[...] = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    return y.astype(x.dtype), mean, invstd


def batch_norm_eval(x, weight, bias, running_mean, running_var, eps=1e-5):
    """Reference of cnnframe.functional.batch_norm_eval."""
    _, col = _channel_axes(x)
    c = x.shape[1]
    weight = np.ones(c) if weight is None else weight.astype(np.float64)
    bias = np.zeros(c) if bias is None else bias.astype(np.float64)
    scale = weight / np.sqrt(running_var.astype(np.float64) + eps)
    y = (x.astype(np.float64) - running_mean.reshape(col)) * scale.reshape(col) + bias.reshape(col)
    return y.astype(x.dtype)


def batch_norm_backward(grad_y, x, weight, mean, invstd, training=True, need_grad_x=True):
    """Reference of cnnframe.functional.batch_norm_backward: (grad_x, grad_weight, grad_bias)."""
    axes, col = _channel_axes(x)
    c = x.shape[1]
    weight = np.ones(c) if weight is None else weight.astype(np.float64)
    g = grad_y.astype(np.float64)
    xhat = (x.astype(np.float64) - mean.reshape(col)) * invstd.reshape(col)
    grad_bias = g.sum(axis=axes)
    grad_weight = (g * xhat).sum(axis=axes)
    scale = (weight * invstd).reshape(col)
    if training:
        m = x.size // c
        grad_x = scale * (g - grad_bias.reshape(col) / m - xhat * grad_weight.reshape(col) / m)
    else:
        grad_x = scale * g
    grad_x = grad_x.astype(x.dtype) if need_grad_x else None
    return grad_x, grad_weight.astype(x.dtype), grad_bias.astype(x.dtype)


def relu(x):
    """Reference of cnnframe.functional.relu."""
    return np.maximum(x, 0)


def relu_backward(grad_y, y):
    """Reference of cnnframe.functional.relu_backward: grad_y where y > 0, else 0."""
    return np.where(y > 0, grad_y, 0).astype(grad_y.dtype)


# --- issue 18 layers: per-sample norms, activations, transposed conv, resampling ---------------

def _normalize_rows(x64, axes):
    """(mean, biased variance) of x64 over `axes`, keepdims."""
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    return mean, var


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Reference of cnnframe.functional.group_norm: (y, mean, invstd), by the definition."""
    n, c = x.shape[:2]
    xg = x.astype(np.float64).reshape(n, num_groups, (c // num_groups) * int(np.prod(x.shape[2:])))
    mean, var = _normalize_rows(xg, 2)
    invstd = 1 / np.sqrt(var + eps)
    y = ((xg - mean) * invstd).reshape(x.shape)
    col = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.astype(np.float64).reshape(col)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(col)
    return y.astype(x.dtype), mean.reshape(n, num_groups), invstd.reshape(n, num_groups)


def _norm_backward(g, x, w, mean, invstd, axes):
    """grad_x of y = (x - mean) * invstd * w over `axes` (statistics of x), all float64."""
    xhat = (x - mean) * invstd
    gxhat = g * w
    m = np.prod([x.shape[a] for a in axes])
    return invstd * (gxhat - gxhat.sum(axis=axes, keepdims=True) / m
                     - xhat * (gxhat * xhat).sum(axis=axes, keepdims=True) / m)


def group_norm_backward(grad_y, x, num_groups, weight, mean, invstd, need_grad_x=True):
    """Reference of cnnframe.functional.group_norm_backward: (grad_x, grad_weight, grad_bias)."""
    n, c = x.shape[:2]
    length = int(np.prod(x.shape[2:]))
    g = grad_y.astype(np.float64).reshape(n, num_groups, c // num_groups, length)
    x64 = x.astype(np.float64).reshape(g.shape)
    m, s = mean.reshape(n, num_groups, 1, 1), invstd.reshape(n, num_groups, 1, 1)
    w = (np.ones(c) if weight is None else weight.astype(np.float64)).reshape(
        1, num_groups, c // num_groups, 1)
    grad_weight = (g * (x64 - m) * s).sum(axis=(0, 3)).reshape(c)
    grad_bias = g.sum(axis=(0, 3)).reshape(c)
    grad_x = _norm_backward(g, x64, w, m, s, (2, 3)).reshape(x.shape).astype(x.dtype) \
        if need_grad_x else None
    return grad_x, grad_weight.astype(x.dtype), grad_bias.astype(x.dtype)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Reference of cnnframe.functional.layer_norm: (y, mean, invstd)."""
    k = 1 if np.isscalar(normalized_shape) else len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    x64 = x.astype(np.float64)
    mean, var = _normalize_rows(x64, axes)
    invstd = 1 / np.sqrt(var + eps)
    y = (x64 - mean) * invstd
    if weight is not None:
        y = y * weight.astype(np.float64)
    if bias is not None:
        y = y + bias.astype(np.float64)
    lead = x.shape[:x.ndim - k]
    return y.astype(x.dtype), mean.reshape(lead), invstd.reshape(lead)


def layer_norm_backward(grad_y, x, normalized_shape, weight, mean, invstd, need_grad_x=True):
    """Reference of cnnframe.functional.layer_norm_backward: (grad_x, grad_weight, grad_bias)."""
    k = 1 if np.isscalar(normalized_shape) else len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    lead_axes = tuple(range(x.ndim - k))
    col = x.shape[:x.ndim - k] + (1,) * k
    g, x64 = grad_y.astype(np.float64), x.astype(np.float64)
    m, s = mean.reshape(col), invstd.reshape(col)
    w = np.ones(x.shape[x.ndim - k:]) if weight is None else weight.astype(np.float64)
    grad_weight = (g * (x64 - m) * s).sum(axis=lead_axes)
    grad_bias = g.sum(axis=lead_axes)
    grad_x = _norm_backward(g, x64, w, m, s, axes).astype(x.dtype) if need_grad_x else None
    return grad_x, grad_weight.astype(x.dtype), grad_bias.astype(x.dtype)


def instance_norm(x, weight=None, bias=None, eps=1e-5, *, running_mean=None, running_var=None,
                  momentum=0.1, use_input_stats=True):
    """Reference of cnnframe.functional.instance_norm: (y, mean, invstd)."""
    n, c = x.shape[:2]
    col = (1, c) + (1,) * (x.ndim - 2)
    x64 = x.astype(np.float64)
    if use_input_stats:
        axes = tuple(range(2, x.ndim))
        mean, var = _normalize_rows(x64, axes)
        if running_mean is not None:
            m = x.size // (n * c)
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean.reshape(
                n, c).mean(axis=0)
            running_var[...] = (1 - momentum) * running_var + momentum * (
                var.reshape(n, c) * m / (m - 1)).mean(axis=0)
    else:
        mean = running_mean.astype(np.float64).reshape(col)
        var = running_var.astype(np.float64).reshape(col)
    invstd = 1 / np.sqrt(var + eps)
    y = (x64 - mean) * invstd
    if weight is not None:
        y = y * weight.astype(np.float64).reshape(col)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(col)
    shape = (n, c) if use_input_stats else (c,)
    return y.astype(x.dtype), mean.reshape(shape), invstd.reshape(shape)


def instance_norm_backward(grad_y, x, weight, mean, invstd, use_input_stats=True,
                           need_grad_x=True):
    """Reference of cnnframe.functional.instance_norm_backward."""
    n, c = x.shape[:2]
    col = (1, c) + (1,) * (x.ndim - 2)
    g, x64 = grad_y.astype(np.float64), x.astype(np.float64)
    w = (np.ones(c) if weight is None else weight.astype(np.float64)).reshape(col)
    stat = (n, c) + (1,) * (x.ndim - 2) if use_input_stats else col
    m, s = mean.reshape(stat), invstd.reshape(stat)
    sum_axes = (0,) + tuple(range(2, x.ndim))
    grad_weight = (g * (x64 - m) * s).sum(axis=sum_axes)
    grad_bias = g.sum(axis=sum_axes)
    if not need_grad_x:
        grad_x = None
    elif use_input_stats:
        grad_x = _norm_backward(g, x64, w, m, s, tuple(range(2, x.ndim))).astype(x.dtype)
    else:
        grad_x = (g * w * s).astype(x.dtype)
    return grad_x, grad_weight.astype(x.dtype), grad_bias.astype(x.dtype)


def _erf(v):
    import math
    return np.vectorize(math.erf, otypes=[np.float64])(v)


def gelu(x, approximate="none"):
    """Reference of cnnframe.functional.gelu."""
    v = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))
    else:
        y = 0.5 * v * (1 + _erf(v / np.sqrt(2)))
    return y.astype(x.dtype)


def gelu_backward(grad_y, x, approximate="none"):
    """Reference of cnnframe.functional.gelu_backward."""
    v = x.astype(np.float64)
    if approximate == "tanh":
        k = np.sqrt(2 / np.pi)
        t = np.tanh(k * (v + 0.044715 * v ** 3))
        d = 0.5 * (1 + t) + 0.5 * v * (1 - t ** 2) * k * (1 + 3 * 0.044715 * v ** 2)
    else:
        d = 0.5 * (1 + _erf(v / np.sqrt(2))) + v * np.exp(-v ** 2 / 2) / np.sqrt(2 * np.pi)
    return (grad_y * d).astype(x.dtype)


def silu(x):
    """Reference of cnnframe.functional.silu: x * sigmoid(x)."""
    v = x.astype(np.float64)
    return (v / (1 + np.exp(-v))).astype(x.dtype)


def silu_backward(grad_y, x):
    """Reference of cnnframe.functional.silu_backward."""
    v = x.astype(np.float64)
    s = 1 / (1 + np.exp(-v))
    return (grad_y * (s + v * s * (1 - s))).astype(x.dtype)


def hardswish(x):
    """Reference of cnnframe.functional.hardswish: x * relu6(x + 3) / 6."""
    v = x.astype(np.float64)
    return (v * np.clip(v + 3, 0, 6) / 6).astype(x.dtype)


def hardswish_backward(grad_y, x):
    """Reference of cnnframe.functional.hardswish_backward (PyTorch's values at the kinks)."""
    v = x.astype(np.float64)
    d = np.where(v < -3, 0.0, np.where(v <= 3, v / 3 + 0.5, 1.0))
    return (grad_y * d).astype(x.dtype)


def elu(x, alpha=1.0):
    """Reference of cnnframe.functional.elu."""
    v = x.astype(np.float64)
    return np.where(v > 0, v, alpha * (np.exp(v) - 1)).astype(x.dtype)


def elu_backward(grad_y, x, alpha=1.0):
    """Reference of cnnframe.functional.elu_backward."""
    v = x.astype(np.float64)
    return (grad_y * np.where(v > 0, 1.0, alpha * np.exp(v))).astype(x.dtype)


def _prelu_slope(weight, x):
    return weight.reshape(()) if weight.size == 1 else weight.reshape((-1,) + (1,) * (x.ndim - 2))


def prelu(x, weight):
    """Reference of cnnframe.functional.prelu."""
    return np.where(x > 0, x, _prelu_slope(weight, x) * x).astype(x.dtype)


def prelu_backward(grad_y, x, weight, need_grad_x=True):
    """Reference of cnnframe.functional.prelu_backward: (grad_x, grad_weight)."""
    neg = x <= 0
    contrib = np.where(neg, grad_y.astype(np.float64) * x, 0.0)
    if weight.size == 1:
        grad_weight = np.array([contrib.sum()])
    else:
        grad_weight = contrib.sum(axis=(0,) + tuple(range(2, x.ndim)))
    grad_x = np.where(neg, _prelu_slope(weight, x) * grad_y, grad_y).astype(x.dtype) \
        if need_grad_x else None
    return grad_x, grad_weight.astype(x.dtype)


def _ct_taps(x_shape, weight_shape, stride, padding, dilation):
    """Every (i, j, a, b, oi, oj) of a transposed convolution: input (i, j) times kernel tap
    (a, b) lands on output (oi, oj) (only those inside the output)."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h, w = x_shape[2:]
    kh, kw = weight_shape[2:]
    for i in range(h):
        for j in range(w):
            for a in range(kh):
                for b in range(kw):
                    yield i, j, a, b, i * sh + a * dh - ph, j * sw + b * dw - pw


def conv_transpose2d_shape(x_shape, weight_shape, stride=1, padding=0, output_padding=0,
                           groups=1, dilation=1):
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = (_pair(stride), _pair(padding),
                                                _pair(output_padding), _pair(dilation))
    n, _, h, w = x_shape
    _, coutg, kh, kw = weight_shape
    return (n, coutg * groups, (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1,
            (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Reference of cnnframe.functional.conv_transpose2d: each input pixel scatters the
    weight-scaled kernel into the output, by explicit loops."""
    shape = conv_transpose2d_shape(x.shape, weight.shape, stride, padding, output_padding,
                                   groups, dilation)
    cin, coutg = weight.shape[:2]
    cing = cin // groups
    y = np.zeros(shape)
    for i, j, a, b, oi, oj in _ct_taps(x.shape, weight.shape, stride, padding, dilation):
        if 0 <= oi < shape[2] and 0 <= oj < shape[3]:
            for g in range(groups):
                xs = x[:, g * cing:(g + 1) * cing, i, j].astype(np.float64)      # (N, C/g)
                ws = weight[g * cing:(g + 1) * cing, :, a, b].astype(np.float64)  # (C/g, F/g)
                y[:, g * coutg:(g + 1) * coutg, oi, oj] += xs @ ws
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


def conv_transpose2d_backward(x, weight, grad_y, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, need_grad_x=True):
    """Reference of cnnframe.functional.conv_transpose2d_backward: the same loops as the
    forward pass, reading grad_y where the forward pass wrote y."""
    cin, coutg = weight.shape[:2]
    cing = cin // groups
    gx = np.zeros(x.shape)
    gw = np.zeros(weight.shape)
    for i, j, a, b, oi, oj in _ct_taps(x.shape, weight.shape, stride, padding, dilation):
        if 0 <= oi < grad_y.shape[2] and 0 <= oj < grad_y.shape[3]:
            for g in range(groups):
                gs = grad_y[:, g * coutg:(g + 1) * coutg, oi, oj].astype(np.float64)  # (N, F/g)
                ws = weight[g * cing:(g + 1) * cing, :, a, b].astype(np.float64)      # (C/g, F/g)
                xs = x[:, g * cing:(g + 1) * cing, i, j].astype(np.float64)           # (N, C/g)
                gx[:, g * cing:(g + 1) * cing, i, j] += gs @ ws.T
                gw[g * cing:(g + 1) * cing, :, a, b] += xs.T @ gs
    return ((gx.astype(x.dtype) if need_grad_x else None), gw.astype(x.dtype),
            grad_y.sum(axis=(0, 2, 3)).astype(x.dtype))


def _resize_taps(in_size, out_size, mode, align_corners, scale):
    """[(source index, weight), ...] of each output position, by PyTorch's formulas (nearest's
    scale in float32, as PyTorch computes it)."""
    taps = []
    for o in range(out_size):
        if mode == "nearest":
            if out_size == in_size:
                src = o
            elif out_size == 2 * in_size:
                src = o // 2
            else:
                ratio = np.float32(1.0 / scale) if scale else np.float32(in_size) / np.float32(
                    out_size)
                src = min(int(np.floor(np.float32(o) * ratio)), in_size - 1)
            taps.append([(src, 1.0)])
            continue
        if out_size == in_size:
            taps.append([(o, 1.0)])
            continue
        if align_corners:
            real = (in_size - 1) / (out_size - 1) * o if out_size > 1 else 0.0
        else:
            ratio = 1.0 / scale if scale else in_size / out_size
            real = max(ratio * (o + 0.5) - 0.5, 0.0)
        i0 = min(int(np.floor(real)), in_size - 1)
        lam = min(max(real - i0, 0.0), 1.0)
        taps.append([(i0, 1.0 - lam), (min(i0 + 1, in_size - 1), lam)])
    return taps


def _resize_geometry(in_hw, size, scale_factor, recompute_scale_factor):
    if size is not None:
        return _pair(size), (None, None)
    scales = _pair(scale_factor)
    out_hw = tuple(int(np.floor(float(n) * s)) for n, s in zip(in_hw, scales))
    return out_hw, ((None, None) if recompute_scale_factor else scales)


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Reference of cnnframe.functional.interpolate, output pixel by output pixel."""
    n, c, h, w = x.shape
    (oh, ow), (sh, sw) = _resize_geometry((h, w), size, scale_factor, recompute_scale_factor)
    rows = _resize_taps(h, oh, mode, align_corners, sh)
    cols = _resize_taps(w, ow, mode, align_corners, sw)
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a, wa in rows[i]:
                for b, wb in cols[j]:
                    y[:, :, i, j] += wa * wb * x[:, :, a, b]
    return y.astype(x.dtype)


def interpolate_backward(grad_y, input_shape, size=None, scale_factor=None, mode="nearest",
                         align_corners=None, recompute_scale_factor=None):
    """Reference of cnnframe.functional.interpolate_backward: the forward loops, adjoint."""
    n, c, h, w = input_shape
    (oh, ow), (sh, sw) = _resize_geometry((h, w), size, scale_factor, recompute_scale_factor)
    rows = _resize_taps(h, oh, mode, align_corners, sh)
    cols = _resize_taps(w, ow, mode, align_corners, sw)
    gx = np.zeros(input_shape)
    for i in range(oh):
        for j in range(ow):
            for a, wa in rows[i]:
                for b, wb in cols[j]:
                    gx[:, :, a, b] += wa * wb * grad_y[:, :, i, j]
    return gx.astype(grad_y.dtype)


def _adaptive_windows(in_size, out_size):
    return [(int(np.floor(i * in_size / out_size)), int(np.ceil((i + 1) * in_size / out_size)))
            for i in range(out_size)]


def adaptive_avg_pool2d(x, output_size):
    """Reference of cnnframe.functional.adaptive_avg_pool2d (output_size: a pair of ints)."""
    n, c, h, w = x.shape
    oh, ow = _pair(output_size)
    y = np.zeros((n, c, oh, ow))
    for i, (h0, h1) in enumerate(_adaptive_windows(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(w, ow)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(np.float64).mean(axis=(2, 3))
    return y.astype(x.dtype)


def adaptive_avg_pool2d_backward(grad_y, input_shape):
    """Reference of cnnframe.functional.adaptive_avg_pool2d_backward."""
    n, c, h, w = input_shape
    oh, ow = grad_y.shape[2:]
    gx = np.zeros(input_shape)
    for i, (h0, h1) in enumerate(_adaptive_windows(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(w, ow)):
            gx[:, :, h0:h1, w0:w1] += grad_y[:, :, i:i + 1, j:j + 1] / ((h1 - h0) * (w1 - w0))
    return gx.astype(grad_y.dtype)


def adaptive_max_pool2d(x, output_size):
    """Reference of cnnframe.functional.adaptive_max_pool2d: (y, argmax), first maximum."""
    n, c, h, w = x.shape
    oh, ow = _pair(output_size)
    y = np.zeros((n, c, oh, ow), x.dtype)
    argmax = np.zeros((n, c, oh, ow), np.int64)
    for i, (h0, h1) in enumerate(_adaptive_windows(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(w, ow)):
            win = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            k = win.argmax(axis=2)
            y[:, :, i, j] = np.take_along_axis(win, k[..., None], 2)[..., 0]
            argmax[:, :, i, j] = (h0 + k // (w1 - w0)) * w + w0 + k % (w1 - w0)
    return y, argmax
