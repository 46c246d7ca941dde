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
