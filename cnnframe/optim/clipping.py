"""Gradient clipping, in place: by global norm and by value (as torch.nn.utils.clip_grad_*)."""
import math

import numpy as np

__all__ = ["clip_grad_norm", "clip_grad_value", "global_norm"]


def _arrays(grads):
    return list(grads.values()) if isinstance(grads, dict) else list(grads)


def global_norm(grads):
    """The L2 norm of all gradients together: sqrt(sum over arrays of sum(g ** 2)).

    Parameters
    ----------
    grads : dict name -> ndarray, or sequence of ndarray (any shapes)

    Returns
    -------
    float
        Each array's norm is taken in its own dtype (BLAS, no copy), the sum of their
        squares in float64.
    """
    total = 0.0
    for g in _arrays(grads):
        if g is not None and g.size:
            n = float(np.linalg.norm(g.reshape(-1)))
            total += n * n
    return math.sqrt(total)


def clip_grad_norm(grads, max_norm, eps=1e-6):
    """Scale all gradients in place so that their global L2 norm is at most `max_norm`.

    When the norm exceeds `max_norm`, every gradient is multiplied by
    ``max_norm / (norm + eps)`` (PyTorch's ``clip_grad_norm_``); otherwise nothing changes.

    Parameters
    ----------
    grads : dict name -> ndarray, or sequence of ndarray
        Modified in place.
    max_norm : float > 0
    eps : float

    Returns
    -------
    float
        The global norm before clipping.

    Raises
    ------
    ValueError
        `max_norm` not > 0.
    FloatingPointError
        The norm is NaN or infinite (scaling would turn every gradient into NaN).
    """
    max_norm = float(max_norm)
    if not (max_norm > 0 and math.isfinite(max_norm)):
        raise ValueError(f"clip_grad_norm: max_norm must be a finite number > 0, got {max_norm}")
    norm = global_norm(grads)
    if not math.isfinite(norm):
        raise FloatingPointError(f"clip_grad_norm: the global gradient norm is {norm}; the "
                                 "gradients hold NaN or infinite values")
    if norm > max_norm:
        scale = max_norm / (norm + eps)
        for g in _arrays(grads):
            if g is not None:
                g *= g.dtype.type(scale)
    return norm


def clip_grad_value(grads, clip_value):
    """Clip every gradient element into [-clip_value, clip_value], in place.

    Parameters
    ----------
    grads : dict name -> ndarray, or sequence of ndarray
    clip_value : float > 0

    Raises
    ------
    ValueError
        `clip_value` not > 0.
    """
    clip_value = float(clip_value)
    if not (clip_value > 0 and math.isfinite(clip_value)):
        raise ValueError(f"clip_grad_value: clip_value must be a finite number > 0, "
                         f"got {clip_value}")
    for g in _arrays(grads):
        if g is not None:
            np.clip(g, -clip_value, clip_value, out=g)
