"""Plain 2-D cross-correlation and true convolution of one image with one kernel.

CNN "convolution" layers compute cross-correlation: the kernel slides over the
image unflipped.  True convolution flips the kernel in both axes first; only it
is commutative (correlate2d(k, x) is the flipped correlate2d(x, k)).
"""
import numpy as np

from cnnframe.functional.conv import conv2d


def _as_plane(a, name):
    a = np.asarray(a)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {a.shape}")
    return a


def _planes(x, k):
    x, k = _as_plane(x, "x"), _as_plane(k, "k")
    dtype = np.result_type(x, k)
    if dtype not in (np.float32, np.float64):
        dtype = np.float64
    if k.shape[0] > x.shape[0] or k.shape[1] > x.shape[1] or k.size == 0:
        raise ValueError(f"k with shape {k.shape} must be non-empty and fit inside x "
                         f"with shape {x.shape} ('valid' mode)")
    return x.astype(dtype, copy=False), k.astype(dtype, copy=False)


def correlate2d(x, k):
    """2-D cross-correlation, 'valid' mode: y[i, j] = sum_{a,b} x[i+a, j+b] * k[a, b].

    Parameters
    ----------
    x : array_like, shape (H, W)
    k : array_like, shape (KH, KW), KH <= H and KW <= W

    Returns
    -------
    y : ndarray, shape (H - KH + 1, W - KW + 1); float32 if both inputs are
        float32, else float64.
    """
    x, k = _planes(x, k)
    return conv2d(x[None, None], k[None, None])[0, 0]


def convolve2d(x, k):
    """True 2-D convolution, 'valid' mode: correlate2d with k flipped in both axes.

    y[i, j] = sum_{a,b} x[i+a, j+b] * k[KH-1-a, KW-1-b].

    Parameters and return value as `correlate2d`.
    """
    x, k = _planes(x, k)
    return conv2d(x[None, None], np.ascontiguousarray(k[::-1, ::-1])[None, None])[0, 0]
