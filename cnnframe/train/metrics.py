"""Classification metrics over batches of logits, accumulated over an epoch.

Metric names usable in ``Trainer(metrics=...)``: "accuracy" and "top{k}_accuracy"
(e.g. "top5_accuracy").  Each is accumulated as a count of correct predictions,
so the epoch value is exact (not an average of batch averages).
"""
import re

import numpy as np


def _check(logits, labels, fn):
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"{fn}: logits must have shape (N, K), got {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"{fn}: labels must have shape ({logits.shape[0]},) for logits "
                         f"{logits.shape}, got {labels.shape}")
    return logits, labels


def accuracy(logits, labels):
    """Fraction of rows whose largest logit is at the label.

    Parameters
    ----------
    logits : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)

    Returns
    -------
    float in [0, 1] (0.0 for N == 0)
    """
    logits, labels = _check(logits, labels, "accuracy")
    if len(labels) == 0:
        return 0.0
    return float(np.count_nonzero(logits.argmax(axis=1) == labels)) / len(labels)


def top_k_correct(logits, labels, k):
    """How many rows have the label among their `k` largest logits."""
    logits, labels = _check(logits, labels, "top_k_correct")
    k = min(int(k), logits.shape[1])
    if k == 1:
        return int(np.count_nonzero(logits.argmax(axis=1) == labels))
    target = np.take_along_axis(logits, labels[:, None], axis=1)
    # Ties count in the label's favour only when fewer than k logits are strictly larger.
    return int(np.count_nonzero((logits > target).sum(axis=1) < k))


def confusion_matrix(predictions, labels, num_classes):
    """Counts ``cm[true, predicted]``.

    Parameters
    ----------
    predictions, labels : ndarray of int, shape (N,)
    num_classes : int

    Returns
    -------
    ndarray of int64, shape (num_classes, num_classes)
    """
    predictions = np.asarray(predictions, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if predictions.shape != labels.shape or predictions.ndim != 1:
        raise ValueError(f"confusion_matrix: predictions {predictions.shape} and labels "
                         f"{labels.shape} must be 1-D of one length")
    for name, v in (("predictions", predictions), ("labels", labels)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must lie in [0, {num_classes}), "
                             f"got values in [{v.min()}, {v.max()}]")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes,
                                                                           num_classes)


def per_class_accuracy(cm):
    """Recall of each class from a confusion matrix (NaN for a class with no samples)."""
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


_TOPK_RE = re.compile(r"^top(\d+)_accuracy$")


def parse_metric(name):
    """The k of a metric name ("accuracy" -> 1, "top5_accuracy" -> 5).

    Raises
    ------
    ValueError
        For an unknown metric name.
    """
    if name == "accuracy":
        return 1
    m = _TOPK_RE.match(str(name))
    if m and int(m.group(1)) >= 1:
        return int(m.group(1))
    raise ValueError(f"unknown metric {name!r}; valid: 'accuracy', 'top{{k}}_accuracy' "
                     "(e.g. 'top5_accuracy')")


class MetricTracker:
    """Running loss and correct-prediction counts over an epoch.

    Parameters
    ----------
    metrics : sequence of str
        Metric names (see `parse_metric`).
    """

    def __init__(self, metrics=("accuracy",)):
        self.names = list(metrics)
        self.ks = [parse_metric(n) for n in self.names]
        self.reset()

    def reset(self):
        self.loss_sum = 0.0
        self.seen = 0
        self.correct = [0] * len(self.names)

    def update(self, loss, logits, labels):
        """Add a batch: its mean `loss` and the `logits` (N, K) for `labels` (N,)."""
        n = len(labels)
        self.loss_sum += float(loss) * n
        self.seen += n
        if self.names:
            pred = logits.argmax(axis=1)
            for i, k in enumerate(self.ks):
                self.correct[i] += (int(np.count_nonzero(pred == labels)) if k == 1
                                    else top_k_correct(logits, labels, k))

    def result(self):
        """{"loss": mean loss, name: fraction correct, ...} (NaN before any update)."""
        if self.seen == 0:
            return {"loss": float("nan"), **{n: float("nan") for n in self.names}}
        out = {"loss": self.loss_sum / self.seen}
        for n, c in zip(self.names, self.correct):
            out[n] = c / self.seen
        return out

    def state_dict(self):
        return {"loss_sum": self.loss_sum, "seen": self.seen, "correct": list(self.correct)}

    def load_state_dict(self, d):
        self.loss_sum = float(d["loss_sum"])
        self.seen = int(d["seen"])
        self.correct = [int(c) for c in d["correct"]]
        if len(self.correct) != len(self.names):
            raise ValueError(f"MetricTracker.load_state_dict: {len(self.correct)} metric counts "
                             f"for {len(self.names)} metrics {self.names}")
