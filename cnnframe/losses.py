"""Loss functions: a ``forward`` that returns the scalar loss and caches what the
gradient needs, and a ``backward`` that returns the gradient w.r.t. the prediction.

Both losses average over the batch (``reduction="mean"`` in PyTorch's terms), so
the gradient already carries the ``1/N`` factor and the optimizers need no
rescaling.  Arrays keep their dtype: float32 logits give a float32 gradient.

>>> loss_fn = SoftmaxCrossEntropy()
>>> loss = loss_fn.forward(logits, labels)     # float
>>> grad_logits = loss_fn.backward()            # (N, K), same dtype as logits
"""
import difflib

import numpy as np

__all__ = ["Loss", "SoftmaxCrossEntropy", "MeanSquaredError", "get_loss", "available_losses"]


def _check_float_array(name, x):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")


class Loss:
    """Base class: ``forward(...) -> float`` then ``backward() -> gradient``."""

    name = None

    def forward(self, *args):
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError

    def __call__(self, *args):
        return self.forward(*args)

    def get_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused for stability and speed.

    ``loss = mean_i( -sum_k t_ik * log_softmax(z_i)_k )`` where ``t_i`` is the one-hot
    label, or with label smoothing ``eps``: ``t_i = (1 - eps) * onehot(y_i) + eps / K``
    (PyTorch's ``CrossEntropyLoss(label_smoothing=eps)``).  ``log_softmax`` is computed
    as ``z - max(z) - log(sum(exp(z - max(z))))``, so logits of +-1e4 (or any finite
    value) neither overflow nor produce NaN.  The gradient is the fused
    ``(softmax(z) - t) / N``.

    Args:
        label_smoothing: float in [0, 1), default 0.

    Input shape:
        logits ``(N, K)`` float32/float64; labels ``(N,)`` integer class indices in ``[0, K)``.

    Output:
        ``forward`` returns the mean loss as a Python float; ``backward`` returns
        ``grad_logits`` of shape ``(N, K)`` and the logits' dtype.
    """

    name = "softmax_cross_entropy"

    def __init__(self, label_smoothing=0.0):
        label_smoothing = float(label_smoothing)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self._labels = None
        self.probs = None  # softmax of the last forward's logits (N, K)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing}

    @staticmethod
    def _check_inputs(logits, labels):
        _check_float_array("logits", logits)
        if logits.ndim != 2:
            raise ValueError(f"logits must have shape (N, K), got shape {logits.shape}")
        n, k = logits.shape
        if n == 0 or k == 0:
            raise ValueError(f"logits must be non-empty, got shape {logits.shape}")
        labels = np.asarray(labels)
        if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be an integer array of class indices, got dtype {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape (N,) = ({n},) to match logits of shape "
                             f"{logits.shape}, got shape {labels.shape}")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise ValueError(f"labels must be in [0, {k}) for logits of shape {logits.shape} "
                             f"(K={k} classes), found label {bad}")
        return labels

    def forward(self, logits, labels):
        """Mean cross-entropy of ``softmax(logits)`` against integer ``labels``.

        Parameters
        ----------
        logits : ndarray, shape (N, K), float32 or float64
        labels : ndarray, shape (N,), integer dtype, values in [0, K)

        Returns
        -------
        float

        Raises
        ------
        TypeError
            Non-float logits or non-integer labels.
        ValueError
            Wrong shapes or labels out of range.
        """
        labels = self._check_inputs(logits, labels)
        shifted = logits - logits.max(axis=1, keepdims=True)       # <= 0, max entry is 0
        probs = np.exp(shifted)                                   # in [0, 1], no overflow
        sumexp = probs.sum(axis=1, keepdims=True)                 # in [1, K]
        log_sumexp = np.log(sumexp)
        # -log p[y] = log_sumexp - shifted[y]
        nll = log_sumexp[:, 0] - shifted[np.arange(len(labels)), labels]
        if self.label_smoothing:
            eps = self.label_smoothing
            # -mean_k log p_k = log_sumexp - mean_k shifted_k
            smooth = log_sumexp[:, 0] - shifted.mean(axis=1)
            per_sample = (1.0 - eps) * nll + eps * smooth
        else:
            per_sample = nll
        probs /= sumexp
        self._labels = labels
        self.probs = probs
        return float(per_sample.mean(dtype=np.float64))

    def backward(self):
        """Gradient of the mean loss w.r.t. the logits: ``(softmax - target) / N``.

        Returns
        -------
        ndarray, shape (N, K), the logits' dtype (a new array).
        """
        if self.probs is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() called before forward()")
        probs, labels = self.probs, self._labels
        n, k = probs.shape
        grad = probs.copy()
        if self.label_smoothing:
            eps = self.label_smoothing
            grad -= grad.dtype.type(eps / k)
            grad[np.arange(n), labels] -= grad.dtype.type(1.0 - eps)
        else:
            grad[np.arange(n), labels] -= 1
        grad *= grad.dtype.type(1.0 / n)
        return grad


class MeanSquaredError(Loss):
    """Mean squared error over ALL elements: ``mean((pred - target) ** 2)``.

    This is PyTorch's ``MSELoss(reduction="mean")``: the sum of squares is divided by
    ``pred.size`` (batch size times features), not by the batch size alone, and there
    is no factor 1/2.  The gradient is ``2 * (pred - target) / pred.size``.

    Input shape:
        pred: any shape, float32/float64; target: same shape (cast to pred's dtype).

    Output:
        ``forward`` returns a Python float; ``backward`` returns ``grad_pred`` with
        pred's shape and dtype.
    """

    name = "mse"

    def __init__(self):
        self._diff = None

    def forward(self, pred, target):
        """Mean over all elements of ``(pred - target) ** 2``.

        Parameters
        ----------
        pred : ndarray, float32 or float64, any shape
        target : array_like with the same shape as ``pred``

        Returns
        -------
        float

        Raises
        ------
        TypeError
            ``pred`` is not a float array.
        ValueError
            Shapes differ or ``pred`` is empty.
        """
        _check_float_array("pred", pred)
        target = np.asarray(target)
        if target.shape != pred.shape:
            raise ValueError(f"target must have the same shape as pred {pred.shape}, "
                             f"got shape {target.shape}")
        if pred.size == 0:
            raise ValueError(f"pred must be non-empty, got shape {pred.shape}")
        if not (np.issubdtype(target.dtype, np.floating) or np.issubdtype(target.dtype, np.integer)):
            raise TypeError(f"target must be numeric, got dtype {target.dtype}")
        diff = pred - target.astype(pred.dtype, copy=False)
        self._diff = diff
        return float(np.mean(np.square(diff), dtype=np.float64))

    def backward(self):
        """Gradient ``2 * (pred - target) / pred.size`` (shape and dtype of pred)."""
        if self._diff is None:
            raise RuntimeError("MeanSquaredError.backward() called before forward()")
        diff = self._diff
        return diff * diff.dtype.type(2.0 / diff.size)


_LOSSES = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def available_losses():
    """Names accepted by :func:`get_loss` (aliases included)."""
    return sorted(_LOSSES)


def get_loss(name, **kwargs):
    """Build a loss by name: ``"softmax_cross_entropy"`` (alias ``"cross_entropy"``) or
    ``"mse"`` (alias ``"mean_squared_error"``); keyword arguments go to the constructor.

    Raises
    ------
    ValueError
        Unknown name (the valid names are listed) or unknown keyword argument.
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string, got {type(name).__name__}")
    key = name.lower()
    if key not in _LOSSES:
        close = difflib.get_close_matches(key, _LOSSES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(available_losses())}{hint}")
    cls = _LOSSES[key]
    valid = list(cls().get_config())
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown} for loss {name!r}; valid: {valid or 'none'}")
    return cls(**kwargs)
