"""The losses of issue 18 against PyTorch: float64 agreement of the loss and its gradient.

Each case evaluates a cnnframe loss and the PyTorch loss with the same arguments on the
same float64 logits and targets, and prints the largest difference of the loss value and
of the gradient w.r.t. the logits, relative to max(1, |value|).  Target: <= 1e-10.
Cases cover cross-entropy with class weights, label smoothing and probability (soft)
targets, alone and combined, and BCE-with-logits with scalar and per-class pos_weight,
integer class indices (one-hot) and extreme logits.

PyTorch is not a dependency of cnnframe: without it the script says so and exits 0.

    python benchmarks/compare_losses_torch.py [--seed 0]
"""
import argparse
import sys

import numpy as np

from cnnframe.losses import get_loss

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

N, K = 16, 7


def _targets(kind, rng, n=N, k=K):
    if kind == "labels":
        return rng.integers(0, k, n)
    if kind == "probs":  # rows of a Dirichlet: class probabilities, as mixup makes them
        return rng.dirichlet(np.ones(k), n)
    if kind == "binary":
        return (rng.random((n, k)) < 0.3).astype(np.float64)
    raise ValueError(kind)


def _ce_torch(cfg):
    weight = cfg.get("weight")
    return torch.nn.CrossEntropyLoss(
        weight=None if weight is None else torch.tensor(weight, dtype=torch.float64),
        label_smoothing=cfg.get("label_smoothing", 0.0))


def _bce_torch(cfg):
    pw = cfg.get("pos_weight")
    return torch.nn.BCEWithLogitsLoss(
        pos_weight=None if pw is None else torch.tensor(pw, dtype=torch.float64))


def _onehot(labels, k=K):
    out = np.zeros((len(labels), k))
    out[np.arange(len(labels)), labels] = 1
    return out


W = [0.5, 2.0, 1.0, 0.0, 3.0, 1.5, 0.25]
PW = [1.0, 3.0, 0.5, 2.0, 1.0, 10.0, 0.0]
# (cnnframe loss name, config, PyTorch builder, target kind, logit scale, target for PyTorch)
CASES = [
    ("cross_entropy", {}, _ce_torch, "labels", 3.0, None),
    ("cross_entropy", {"weight": W}, _ce_torch, "labels", 3.0, None),
    ("cross_entropy", {"label_smoothing": 0.1}, _ce_torch, "labels", 3.0, None),
    ("cross_entropy", {"weight": W, "label_smoothing": 0.2}, _ce_torch, "labels", 3.0, None),
    ("cross_entropy", {}, _ce_torch, "probs", 3.0, None),
    ("cross_entropy", {"weight": W}, _ce_torch, "probs", 3.0, None),
    ("cross_entropy", {"weight": W, "label_smoothing": 0.1}, _ce_torch, "probs", 3.0, None),
    ("cross_entropy", {"weight": W, "label_smoothing": 0.1}, _ce_torch, "labels", 1e4, None),
    ("bce_with_logits", {}, _bce_torch, "binary", 3.0, None),
    ("bce_with_logits", {"pos_weight": 2.5}, _bce_torch, "binary", 3.0, None),
    ("bce_with_logits", {"pos_weight": PW}, _bce_torch, "probs", 3.0, None),
    ("bce_with_logits", {"pos_weight": PW}, _bce_torch, "labels", 3.0, _onehot),
    ("bce_with_logits", {"pos_weight": PW}, _bce_torch, "binary", 1e4, None),
]


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def compare(name, cfg, torch_builder, kind, scale, torch_target, seed=0):
    """(loss error, gradient error) of one case, float64."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(N, K)) * scale
    target = _targets(kind, rng)
    loss_fn = get_loss(name, **cfg)
    ours = loss_fn.forward(logits, target)
    grad = loss_fn.backward()

    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    t = target if torch_target is None else torch_target(target)
    t = torch.tensor(t) if np.issubdtype(np.asarray(t).dtype, np.integer) else \
        torch.tensor(t, dtype=torch.float64)
    theirs = torch_builder(cfg)(z, t)
    theirs.backward()
    return _rel(ours, theirs.item()), _rel(grad, z.grad.numpy())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if torch is None:
        print("PyTorch is not installed: the loss comparison is skipped (pip install torch)")
        return 0
    print(f"losses vs PyTorch {torch.__version__}, float64, logits ({N}, {K}); "
          "relative error, target <= 1e-10")
    print(f"{'loss':<16} {'target':<7} {'scale':>6}  {'config':<44} {'loss err':>9} "
          f"{'grad err':>9}")
    worst = 0.0
    for name, cfg, builder, kind, scale, torch_target in CASES:
        e_loss, e_grad = compare(name, cfg, builder, kind, scale, torch_target, args.seed)
        worst = max(worst, e_loss, e_grad)
        text = ", ".join(f"{k}={v}" for k, v in cfg.items()) or "-"
        text = text if len(text) <= 44 else text[:41] + "..."
        print(f"{name:<16} {kind:<7} {scale:>6g}  {text:<44} {e_loss:>9.1e} {e_grad:>9.1e}")
    print(f"worst: {worst:.1e} ({'ok' if worst <= 1e-10 else 'ABOVE 1e-10'})")
    return 0 if worst <= 1e-10 else 1


if __name__ == "__main__":
    sys.exit(main())
