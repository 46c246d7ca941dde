"""Loss functions: a ``forward`` that returns the scalar loss and caches what the
gradient needs, and a ``backward`` that returns the gradient w.r.t. the prediction.

Every loss averages (``reduction="mean"`` in PyTorch's terms, with PyTorch's weighted
mean for class weights), so the gradient already carries the ``1/N`` factor and the
optimizers need no rescaling.  Arrays keep their dtype: float32 logits give a float32
gradient.  Cross-entropy takes integer labels or (N, K) class probabilities (the soft
targets of mixup/cutmix, see `cnnframe.data.augment`).

>>> loss_fn = SoftmaxCrossEntropy()
>>> loss = loss_fn.forward(logits, labels)     # float
>>> grad_logits = loss_fn.backward()            # (N, K), same dtype as logits
"""
import difflib

import numpy as np

__all__ = ["Loss", "SoftmaxCrossEntropy", "BCEWithLogits", "MeanSquaredError", "get_loss",
           "available_losses"]


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


def _class_vector(name, value, loss):
    """A 1-D float64 array of finite values >= 0 from a list (or None), for `loss`'s errors."""
    if value is None:
        return None
    try:
        arr = None if isinstance(value, (str, bool)) else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim > 1 or arr.size == 0:
        raise ValueError(f"{loss}: {name} must be a number or a non-empty list of numbers, "
                         f"got {value!r}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{loss}: {name} must hold finite values >= 0, got {arr.tolist()}")
    return arr


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused for stability and speed.

    ``loss = sum_i sum_k q_ik * -log_softmax(z_i)_k / D``, PyTorch's
    ``CrossEntropyLoss(weight=w, label_smoothing=eps)`` with ``reduction="mean"``:

    - integer labels ``y`` (N,): ``q_ik = w_k * t_ik`` with the smoothed one-hot target
      ``t_i = (1 - eps) * onehot(y_i) + eps / K``, and ``D = sum_i w[y_i]`` (the weighted
      mean; ``D = N`` without weights);
    - probability targets ``t`` (N, K), e.g. from mixup/cutmix: the target becomes
      ``(1 - eps) * t + eps / K`` and ``q_ik = w_k * t_ik``, but ``D = N`` -- PyTorch
      divides soft-target losses by the batch size even with class weights, so one-hot
      probability targets equal integer labels only without weights.

    ``log_softmax`` is computed as ``z - max(z) - log(sum(exp(z - max(z))))``, so logits of
    +-1e4 (or any finite value) neither overflow nor produce NaN.  The gradient is the fused
    ``(sum_k q_ik * softmax(z_i) - q_i) / D``.

    Args:
        label_smoothing: float in [0, 1), default 0.
        weight: optional list of K class weights (finite, >= 0), default None (all 1).

    Input shape:
        logits ``(N, K)`` float32/float64; target either ``(N,)`` integer class indices in
        ``[0, K)`` or ``(N, K)`` float class probabilities (not checked to sum to 1).

    Output:
        ``forward`` returns the mean loss as a Python float; ``backward`` returns
        ``grad_logits`` of shape ``(N, K)`` and the logits' dtype.
    """

    name = "softmax_cross_entropy"

    def __init__(self, label_smoothing=0.0, weight=None):
        label_smoothing = float(label_smoothing)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.weight = _class_vector("weight", weight, "cross_entropy")
        if self.weight is not None and self.weight.ndim == 0:
            raise ValueError(f"cross_entropy: weight must be a list of one weight per class, "
                             f"got {weight!r}")
        self._labels = None
        self._scaled_target = None  # q (N, K) when the target is weighted or soft, else None
        self._denominator = None
        self.probs = None  # softmax of the last forward's logits (N, K)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing,
                "weight": None if self.weight is None else self.weight.tolist()}

    def _check_inputs(self, logits, labels):
        _check_float_array("logits", logits)
        if logits.ndim != 2:
            raise ValueError(f"logits must have shape (N, K), got shape {logits.shape}")
        n, k = logits.shape
        if n == 0 or k == 0:
            raise ValueError(f"logits must be non-empty, got shape {logits.shape}")
        if self.weight is not None and self.weight.shape != (k,):
            raise ValueError(f"cross_entropy: weight has {self.weight.size} class weights but "
                             f"logits of shape {logits.shape} have K={k} classes")
        labels = np.asarray(labels)
        if labels.ndim == 2 and np.issubdtype(labels.dtype, np.floating):
            if labels.shape != logits.shape:
                raise ValueError(f"probability targets must have the shape of the logits "
                                 f"{logits.shape}, got shape {labels.shape}")
            if not np.all(np.isfinite(labels)):
                raise ValueError("probability targets must be finite")
            return labels
        if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be an integer array of class indices (N,) or float "
                            f"class probabilities (N, K), got dtype {labels.dtype} and shape "
                            f"{labels.shape}")
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
        """Mean cross-entropy of ``softmax(logits)`` against integer labels or probabilities.

        Parameters
        ----------
        logits : ndarray, shape (N, K), float32 or float64
        labels : ndarray, shape (N,) integer in [0, K), or shape (N, K) float probabilities

        Returns
        -------
        float

        Raises
        ------
        TypeError
            Non-float logits, or labels neither integer (N,) nor float (N, K).
        ValueError
            Wrong shapes, labels out of range, a weight list of the wrong length, or
            integer labels whose class weights are all 0 (the weighted mean is undefined).
        """
        labels = self._check_inputs(logits, labels)
        shifted = logits - logits.max(axis=1, keepdims=True)       # <= 0, max entry is 0
        probs = np.exp(shifted)                                   # in [0, 1], no overflow
        sumexp = probs.sum(axis=1, keepdims=True)                 # in [1, K]
        log_sumexp = np.log(sumexp)
        probs /= sumexp
        self.probs = probs
        self._labels = labels
        if labels.ndim == 1 and self.weight is None:  # the common case: no (N, K) target
            self._scaled_target = None
            # -log p[y] = log_sumexp - shifted[y]
            nll = log_sumexp[:, 0] - shifted[np.arange(len(labels)), labels]
            if self.label_smoothing:
                eps = self.label_smoothing
                # -mean_k log p_k = log_sumexp - mean_k shifted_k
                smooth = log_sumexp[:, 0] - shifted.mean(axis=1)
                per_sample = (1.0 - eps) * nll + eps * smooth
            else:
                per_sample = nll
            return float(per_sample.mean(dtype=np.float64))
        q, denominator = self._scaled_targets(logits, labels)
        neg_log_probs = log_sumexp - shifted                          # (N, K), >= 0
        self._scaled_target, self._denominator = q, denominator
        return float(np.sum(q * neg_log_probs, dtype=np.float64) / denominator)

    def _scaled_targets(self, logits, labels):
        """(q (N, K) in the logits' dtype, the mean's denominator D) as in the class docstring."""
        n, k = logits.shape
        dt = logits.dtype.type
        eps = self.label_smoothing
        w = None if self.weight is None else self.weight.astype(logits.dtype)
        if labels.ndim == 2:  # probabilities
            q = labels.astype(logits.dtype, copy=True)
            if eps:
                q *= dt(1.0 - eps)
                q += dt(eps / k)
            if w is not None:
                q *= w
            return q, float(n)
        rows = np.arange(n)
        w_label = w[labels]
        denominator = float(np.sum(w_label, dtype=np.float64))
        if denominator == 0.0:
            raise ValueError(f"cross_entropy: every label of this batch ({np.unique(labels)}) "
                             "has class weight 0, so the weighted mean is undefined")
        q = np.empty((n, k), logits.dtype)
        q[...] = w * dt(eps / k)
        q[rows, labels] += dt(1.0 - eps) * w_label
        return q, denominator

    def backward(self):
        """Gradient of the mean loss w.r.t. the logits: ``(softmax - target) / N`` (see the
        class docstring for class weights and probability targets).

        Returns
        -------
        ndarray, shape (N, K), the logits' dtype (a new array).
        """
        if self.probs is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() called before forward()")
        probs, labels = self.probs, self._labels
        n, k = probs.shape
        if self._scaled_target is not None:
            q = self._scaled_target
            grad = probs * q.sum(axis=1, keepdims=True)
            grad -= q
            grad *= grad.dtype.type(1.0 / self._denominator)
            return grad
        grad = probs.copy()
        if self.label_smoothing:
            eps = self.label_smoothing
            grad -= grad.dtype.type(eps / k)
            grad[np.arange(n), labels] -= grad.dtype.type(1.0 - eps)
        else:
            grad[np.arange(n), labels] -= 1
        grad *= grad.dtype.type(1.0 / n)
        return grad


class BCEWithLogits(Loss):
    """Sigmoid followed by binary cross-entropy, fused for stability: PyTorch's
    ``BCEWithLogitsLoss(pos_weight=pw)`` with ``reduction="mean"``.

    Per element ``l = -[pw_k * y * log sigmoid(z) + (1 - y) * log(1 - sigmoid(z))]``,
    averaged over all elements.  It is computed as ``(1 - y) * z + (1 + (pw_k - 1) * y) *
    softplus(-z)`` with ``softplus(-z) = max(-z, 0) + log1p(exp(-|z|))``, so logits of any
    finite size stay finite.  The gradient is ``((1 - y) - (1 + (pw_k - 1) * y) *
    sigmoid(-z)) / numel``.

    Args:
        pos_weight: optional weight of the positive term: a number, or a list of one weight
            per class (the logits' last axis), finite and >= 0; default None (1).

    Input shape:
        logits: any shape ``(N, ...)``, float32/float64.  target: the same shape (0/1 labels
        or probabilities, any numeric dtype), or -- for logits ``(N, K)`` with ``K >= 2`` --
        integer class indices ``(N,)`` in ``[0, K)``, taken as one-hot rows.

    Output:
        ``forward`` returns the mean loss as a Python float; ``backward`` returns
        ``grad_logits`` with the logits' shape and dtype.
    """

    name = "bce_with_logits"

    def __init__(self, pos_weight=None):
        self.pos_weight = _class_vector("pos_weight", pos_weight, "bce_with_logits")
        self._cache = None

    def get_config(self):
        pw = self.pos_weight
        return {"pos_weight": None if pw is None else pw.tolist()}

    def _target(self, logits, target):
        target = np.asarray(target)
        if not (np.issubdtype(target.dtype, np.number) or target.dtype == np.bool_):
            raise TypeError(f"bce_with_logits: target must be numeric, got dtype {target.dtype}")
        if (logits.ndim == 2 and logits.shape[1] >= 2 and target.shape == logits.shape[:1]
                and np.issubdtype(target.dtype, np.integer)):
            k = logits.shape[1]
            if target.size and (target.min() < 0 or target.max() >= k):
                raise ValueError(f"bce_with_logits: class indices must be in [0, {k}) for "
                                 f"logits of shape {logits.shape}, got values in "
                                 f"[{target.min()}, {target.max()}]")
            onehot = np.zeros(logits.shape, logits.dtype)
            onehot[np.arange(len(target)), target] = 1
            return onehot
        if target.shape != logits.shape:
            raise ValueError(f"bce_with_logits: target must have the shape of the logits "
                             f"{logits.shape} (or be (N,) class indices for (N, K) logits), "
                             f"got shape {target.shape}")
        return target.astype(logits.dtype, copy=False)

    def forward(self, logits, target):
        """Mean binary cross-entropy of ``sigmoid(logits)`` against `target`.

        Parameters
        ----------
        logits : ndarray, float32 or float64, shape (N, ...)
        target : array_like, the shape of `logits`; or (N,) class indices for (N, K) logits

        Returns
        -------
        float

        Raises
        ------
        TypeError
            Non-float logits or a non-numeric target.
        ValueError
            Empty logits, a target of another shape, class indices out of range, or a
            pos_weight list whose length is not the logits' last axis.
        """
        _check_float_array("logits", logits)
        if logits.ndim == 0 or logits.size == 0:
            raise ValueError(f"bce_with_logits: logits must be non-empty with a batch axis, "
                             f"got shape {logits.shape}")
        y = self._target(logits, target)
        dt = logits.dtype.type
        pw = self.pos_weight
        if pw is not None and pw.ndim == 1 and pw.size not in (1, logits.shape[-1]):
            raise ValueError(f"bce_with_logits: pos_weight has {pw.size} values but the "
                             f"logits' last axis has {logits.shape[-1]} (shape {logits.shape})")
        # log_weight = 1 + (pos_weight - 1) * y, PyTorch's name for the softplus factor
        log_weight = None if pw is None else dt(1) + (pw.astype(logits.dtype) - dt(1)) * y
        softplus_neg = np.maximum(-logits, dt(0))
        softplus_neg += np.log1p(np.exp(-np.abs(logits)))
        loss = (dt(1) - y) * logits
        loss += softplus_neg if log_weight is None else log_weight * softplus_neg
        self._cache = (logits, y, log_weight)
        return float(np.mean(loss, dtype=np.float64))

    def backward(self):
        """Gradient ``((1 - y) - log_weight * sigmoid(-z)) / numel`` (shape and dtype of z)."""
        if self._cache is None:
            raise RuntimeError("BCEWithLogits.backward() called before forward()")
        logits, y, log_weight = self._cache
        dt = logits.dtype.type
        e = np.exp(-np.abs(logits))               # in (0, 1]: no overflow
        sig_neg = np.where(logits >= 0, e, dt(1)) / (dt(1) + e)   # sigmoid(-z)
        grad = (dt(1) - y) - (sig_neg if log_weight is None else log_weight * sig_neg)
        grad *= dt(1.0 / logits.size)
        return grad.astype(logits.dtype, copy=False)


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
    "bce_with_logits": BCEWithLogits,
    "binary_cross_entropy_with_logits": BCEWithLogits,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def available_losses():
    """Names accepted by :func:`get_loss` (aliases included)."""
    return sorted(_LOSSES)


def get_loss(name, **kwargs):
    """Build a loss by name: ``"softmax_cross_entropy"`` (alias ``"cross_entropy"``),
    ``"bce_with_logits"`` (alias ``"binary_cross_entropy_with_logits"``) or ``"mse"`` (alias
    ``"mean_squared_error"``); keyword arguments go to the constructor (the config's
    ``[loss]`` keys besides ``type``: ``label_smoothing``, ``weight``; ``pos_weight``).

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
