"""Numerical machinery of the gradient checker: replayable evaluation, central
differences, projections and Jacobians.

Everything here works on the *protocol* of a layer (``forward``/``backward``,
``params``/``grads``/``buffers``, ``rng`` for stochastic layers), never on a
particular class, so plugin layers are checked exactly like built-in ones.

Notation: a layer maps inputs ``x`` to an output ``y`` with ``M = y.size``
elements.  ``V`` is a ``(K, M)`` matrix of output projections (K random
Gaussian vectors in projection mode, the identity in full-Jacobian mode).
For a target array ``t`` (an input or a parameter) the analytic quantity is
``A = V @ J_t`` (K vector-Jacobian products, computed by ``backward``) and the
numeric one is the same product estimated by central differences, one
element of ``t`` at a time.
"""
import copy

import numpy as np

__all__ = ["Probe", "copy_layer", "central_differences", "find_kinks", "push_off_kinks",
           "numeric_gradient"]


def copy_layer(layer, dtype=np.float64):
    """A copy of the very instance `layer`, converted to `dtype`.

    The copy is ``copy.deepcopy(layer)``: every attribute, parameter, buffer and
    (for stochastic layers) the random generator state comes along, so the copy
    computes exactly what `layer` does, only in `dtype`, even when ``get_config()``
    leaves out something that changes forward or backward (that is a separate
    check: :func:`cnnframe.gradcheck.config_roundtrip_differences`).  The copy has
    ``reuse_buffers`` off; `layer` itself is not modified.

    Parameters
    ----------
    layer : Layer
    dtype : float dtype

    Returns
    -------
    Layer
        The copy, with params, grads and buffers in `dtype`.

    Raises
    ------
    TypeError
        If ``copy.deepcopy(layer)`` fails (e.g. the layer holds a lock or an open file).
    """
    try:
        new = copy.deepcopy(layer)
    except Exception as exc:  # noqa: BLE001 - any failure: say what the checker needs
        raise TypeError(
            f"{type(layer).__name__}: the gradient check runs on copy.deepcopy(layer), which "
            f"failed ({type(exc).__name__}: {exc}); keep only copyable state on the layer or "
            "define __deepcopy__") from exc
    if hasattr(new, "astype"):
        new.astype(dtype)
    for store in ("params", "grads", "buffers"):  # layers without astype: convert by hand
        d = getattr(new, store, None)
        if isinstance(d, dict):
            for k, v in d.items():
                if v.dtype != dtype:
                    d[k] = v.astype(dtype)
    if hasattr(new, "reuse_buffers"):
        new.reuse_buffers = False
    return new


class Probe:
    """Replayable evaluation of a layer.

    Before every forward call the probe restores the layer's buffers (a
    training-mode batch norm updates its running statistics on each call) and,
    for a layer with an ``rng`` attribute (stochastic layers, see the protocol
    in :mod:`cnnframe.gradcheck`), the saved ``rng.bit_generator.state``, so
    that every evaluation sees the same random draws (e.g. the same dropout
    mask).  Outputs are returned as fresh float64 copies.
    """

    def __init__(self, layer, training, multi):
        self.layer = layer
        self.training = bool(training)
        self.multi = multi
        rng = getattr(layer, "rng", None)
        self.rng_state = copy.deepcopy(rng.bit_generator.state) if rng is not None else None
        self.buffers = {k: v.copy() for k, v in getattr(layer, "buffers", {}).items()}
        self.forward_calls = 0

    def restore(self):
        if self.rng_state is not None:
            self.layer.rng.bit_generator.state = copy.deepcopy(self.rng_state)
        for k, v in self.buffers.items():
            self.layer.buffers[k][...] = v

    def forward(self, xs, training=None):
        """The output for inputs `xs` (a list), replaying the saved randomness."""
        self.restore()
        self.forward_calls += 1
        y = self.layer.forward(list(xs) if self.multi else xs[0],
                               self.training if training is None else training)
        if not isinstance(y, np.ndarray):
            raise TypeError(f"{type(self.layer).__name__}.forward returned "
                            f"{type(y).__name__}, expected an ndarray")
        return np.array(y, dtype=np.float64, copy=True)

    def backward(self, grad_y):
        """Call backward; return (list of input gradients (None where missing), grads copy)."""
        g = self.layer.backward(grad_y)
        gs = list(g) if self.multi and isinstance(g, (list, tuple)) else [g]
        gs = [None if a is None else np.array(a, copy=True) for a in gs]
        grads = {k: np.array(v, copy=True) for k, v in getattr(self.layer, "grads", {}).items()}
        return gs, grads


def central_differences(probe, xs, target, indices, V, eps, y0, keep_jacobian=False):
    """Numeric vector-Jacobian products of the layer for one target array.

    Parameters
    ----------
    probe : Probe
    xs : list of ndarray
        The inputs (``target`` may be one of them, or a parameter array of the layer).
    target : ndarray
        Array perturbed in place, one element at a time (restored afterwards).
    indices : ndarray of int
        Flat indices of the elements to check (m of them).
    V : ndarray, shape (K, M)
        Output projections.
    eps : float
        Step; the exact representable steps ``(t + eps) - t`` are used.
    y0 : ndarray
        The unperturbed output (for the second differences).
    keep_jacobian : bool
        Also return the numeric Jacobian columns (M, m).

    Returns
    -------
    numeric : ndarray, shape (K, m)
        ``V @ (y(t + h e_i) - y(t - h e_i)) / (2h)`` per checked element.
    kink : ndarray, shape (K, m)
        ``|V @ (y(t + h e_i) - 2 y(t) + y(t - h e_i))| / (2h)``: near a kink of
        slope jump ``J`` at distance ``d < h`` this equals ``|J| (h - d) / (2h)``,
        exactly the error the kink puts into the central difference, while at
        smooth points it is ``O(h |y''|)``.  Exact ties (ReLU at 0, equal
        max-pool candidates) give the largest value, where comparing the
        estimates for ``h`` and ``h/2`` would see nothing (both are the mean of
        the one-sided slopes).
    jacobian : ndarray, shape (M, m) or None
    """
    K, M = V.shape
    m = len(indices)
    numeric = np.empty((K, m))
    kink = np.empty((K, m))
    jac = np.empty((M, m)) if keep_jacobian else None
    y0 = y0.reshape(-1)
    for col, flat in enumerate(indices):
        idx = np.unravel_index(int(flat), target.shape)
        orig = target[idx]
        up, down = orig + eps, orig - eps
        target[idx] = up
        yp = probe.forward(xs).reshape(-1)
        target[idx] = down
        ym = probe.forward(xs).reshape(-1)
        target[idx] = orig
        hp, hm = float(up - orig), float(orig - down)
        if yp.shape != y0.shape or ym.shape != y0.shape:
            raise ValueError("the output shape changed when an input element was perturbed")
        d = (yp - ym) / (hp + hm)
        numeric[:, col] = V @ d
        # second difference scaled to the error it explains (h: mean of both steps)
        kink[:, col] = np.abs(V @ (yp - 2.0 * y0 + ym)) / (hp + hm)
        if jac is not None:
            jac[:, col] = d
    return numeric, kink, jac


def find_kinks(probe, xs, margin, target_index=None):
    """Boolean masks (one per input) of elements within `margin` of a non-differentiable point.

    An element is flagged when the second difference of the output along it,
    with step `margin`, is far larger than at smooth points (relative to the
    first difference), i.e. when the layer's output is not locally linear
    at the scale of `margin` in that direction.
    """
    y0 = probe.forward(xs).reshape(-1)
    masks = []
    for j, x in enumerate(xs):
        mask = np.zeros(x.shape, bool)
        if target_index is not None and j != target_index:
            masks.append(mask)
            continue
        flat = x.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + margin
            yp = probe.forward(xs).reshape(-1)
            flat[i] = orig - margin
            ym = probe.forward(xs).reshape(-1)
            flat[i] = orig
            second = np.abs(yp - 2 * y0 + ym)
            first = np.abs(yp - ym)
            # smooth: second ~ margin^2 |y''| << first ~ margin |y'|; kink: comparable
            scale = np.maximum(first, 1e-12 + 1e-9 * np.abs(y0))
            mask.reshape(-1)[i] = bool(np.any(second > 0.05 * scale + 10 * margin * margin))
        masks.append(mask)
    return masks


def push_off_kinks(probe, xs, margin=1e-3, seed=0, max_rounds=8):
    """Move the input elements that sit within `margin` of a kink of the layer.

    Returns the number of rounds that still found kinks (0: the inputs are now
    at least `margin` away from every kink along each coordinate).  `xs` (a list
    of float64 arrays) is modified in place.
    """
    rng = np.random.default_rng(seed)
    for _ in range(max_rounds):
        masks = find_kinks(probe, xs, margin)
        if not any(m.any() for m in masks):
            return 0
        for x, m in zip(xs, masks):
            n = int(m.sum())
            if n:
                x[m] += rng.choice([-1.0, 1.0], n) * rng.uniform(5, 50, n) * margin * np.maximum(
                    1.0, np.abs(x[m]))
    masks = find_kinks(probe, xs, margin)
    return int(sum(m.sum() for m in masks))


def numeric_gradient(f, arr, eps=1e-6, entries=None):
    """The gradient of a scalar function by central differences, one element at a time.

    For a loss that is not a layer (a graph, a loss function, a functional op with
    a projection): ``numeric_gradient(lambda: float(np.sum(r * op(x))), x)``.

    Parameters
    ----------
    f : callable
        ``f()`` returns a float; it must read `arr` (perturbed in place).
    arr : ndarray of float64
        The variable; each element is moved by +-eps and restored.
    eps : float
        The step.
    entries : int, optional
        Estimate only this many random elements (chosen with a seed fixed by the
        array's size); the others are NaN.  Bounds the cost on large arrays.

    Returns
    -------
    grad : ndarray, shape and dtype of `arr`
        ``(f(arr + eps e_i) - f(arr - eps e_i)) / (2 eps)`` per element i.
    """
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, arr):
        raise ValueError(f"numeric_gradient: arr must be perturbable in place (a contiguous "
                         f"array), got strides {arr.strides} for shape {arr.shape}")
    positions = range(flat.size)
    if entries is not None and entries < flat.size:
        gflat[:] = np.nan
        positions = np.random.default_rng(flat.size).choice(flat.size, entries, replace=False)
    for i in positions:
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad
