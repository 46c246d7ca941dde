"""Likely causes of a failed gradient check.

Each heuristic asks whether the analytic vector-Jacobian products ``A`` of a
failing target become the numeric ones ``N`` under one simple, typical
mistake; if so, it returns one short sentence naming the mistake.  They are
heuristics: a sentence is only emitted when the transformed analytic
gradient matches the numeric one to ~1e-3 relative error, so a diagnosis is
rarely wrong, but many bugs get none.

The data of one target (see :class:`TargetData`): ``A`` is (K, size) (all
elements), ``N`` is (K, m) for the checked flat indices ``idx``, ``J`` the
numeric Jacobian columns (M, m) when they were kept, ``V`` the (K, M) output
projections, ``y_shape`` the output shape.
"""
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TargetData", "close", "diagnose_target", "diagnose_wrong_argument",
           "describe_shape_mismatch"]


@dataclass
class TargetData:
    name: str
    kind: str                       # "input" or "param"
    shape: tuple
    idx: np.ndarray                 # checked flat indices (m,)
    A: np.ndarray = None            # analytic, (K, size)
    N: np.ndarray = None            # numeric, (K, m)
    J: np.ndarray = None            # numeric Jacobian columns (M, m) or None
    failing: np.ndarray = None      # bool (m,) elements outside the tolerance
    kinked: np.ndarray = None       # bool (m,) elements whose mismatch a kink explains
    shape_error: str = None         # why no comparison was possible
    diagnoses: list = field(default_factory=list)


def close(X, N, atol):
    """X matches N up to ~1e-3 of N's scale (and a few atol)."""
    scale = float(np.max(np.abs(N))) if N.size else 0.0
    return bool(np.max(np.abs(X - N), initial=0.0) <= 10 * atol + 1e-3 * scale)


def _factor_hint(c, batch):
    for value, hint in ((2.0, "counted twice?"), (0.5, "halved?")):
        if abs(c - value) < 1e-3 * value:
            return f" ({hint})"
    if batch and batch > 1:
        if abs(c - 1.0 / batch) < 1e-3 / batch:
            return (f" (= 1/batch size {batch}: averaged over the batch where the sum "
                    "over samples was needed?)")
        if abs(c - batch) < 1e-3 * batch:
            return f" (= the batch size {batch}: summed where a mean was needed?)"
    return ""


def _scale(t, Ai, atol, batch):
    if not np.any(Ai) and np.any(np.abs(t.N) > atol):
        return "the analytic gradient is all zeros: backward never writes it?"
    nn = float(np.sum(t.N * t.N))
    if nn == 0.0:
        return None
    c = float(np.sum(Ai * t.N)) / nn
    if not close(Ai, c * t.N, atol) or abs(c - 1.0) < 1e-6:
        return None
    if abs(c + 1.0) < 1e-3:
        return "sign flipped: the analytic gradient is the negative of the numeric one"
    return (f"off by a constant factor: analytic = {c:.6g} x numeric"
            f"{_factor_hint(c, batch)}")


def _flip(t, Ai_full, atol):
    if len(t.shape) < 2 or t.shape[-1] * t.shape[-2] <= 1:
        return None
    K = Ai_full.shape[0]
    flipped = Ai_full.reshape(K, *t.shape)[..., ::-1, ::-1].reshape(K, -1)[:, t.idx]
    if close(flipped, t.N, atol):
        return ("kernel flipped: the gradient matches the numeric one with its last two axes "
                "reversed (convolution used where cross-correlation was needed, or vice versa)")
    return None


def _transposed(t, Ai_full, atol):
    if len(t.shape) < 2 or t.shape[-1] != t.shape[-2] or t.shape[-1] <= 1:
        return None
    K = Ai_full.shape[0]
    swapped = np.swapaxes(Ai_full.reshape(K, *t.shape), -1, -2).reshape(K, -1)[:, t.idx]
    if close(swapped, t.N, atol):
        return "transposed: the gradient matches the numeric one with its last two axes swapped"
    return None


def _batch(t, Ai, V, y_shape, batch, atol):
    if t.kind != "param" or t.J is None or not batch or batch < 2 or y_shape[0] != batch:
        return None
    rows = np.arange(int(np.prod(y_shape))).reshape(batch, -1)
    for n in range(batch):
        Nn = V[:, rows[n]] @ t.J[rows[n], :]
        if close(Ai, Nn, atol) and not close(Nn, t.N, atol):
            which = ("the first sample's" if n == 0 else "the last sample's"
                     if n == batch - 1 else f"sample {n}'s")
            return (f"missing accumulation over the batch: the gradient equals {which} "
                    f"contribution alone (of {batch} samples); sum over the batch axis "
                    "(overwritten in a loop over samples?)")
    return None


def _fan_out(t, Ai, V, y_shape, atol):
    if t.J is None:
        return None
    # one fixed random combination of the K projections: with the unit vectors of
    # full-Jacobian mode, each row alone would see a single output position
    r = np.random.default_rng(12345).standard_normal(V.shape[0])
    v, a = r @ V, r @ Ai
    M = int(np.prod(y_shape))
    if len(y_shape) == 4:   # outputs grouped by position (n, h, w) and by (h, w)
        n, c, h, w = y_shape
        pos = np.broadcast_to(np.arange(h * w).reshape(1, 1, h, w), y_shape)
        smp = np.broadcast_to(np.arange(n).reshape(n, 1, 1, 1), y_shape)
        groupings = [(smp * h * w + pos).reshape(-1), pos.reshape(-1)]
    else:
        groupings = [np.arange(M)]
    cols = np.flatnonzero(t.failing)[:64]
    tested = matched = 0
    for col in cols:
        fans, hit = False, False
        for labels in groupings:
            contrib = np.bincount(labels, weights=v * t.J[:, col])
            scale = np.max(np.abs(contrib))
            if scale == 0 or np.sum(np.abs(contrib) > 1e-9 * scale) < 2:
                continue   # feeds a single output position: no fan-out
            fans = True
            hit = hit or np.min(np.abs(contrib - a[col])) <= 10 * atol + 1e-3 * scale
        tested += fans
        matched += fans and hit
    if tested and matched >= max(1, 0.6 * tested):
        return (f"missing accumulation over a fan-out: for {matched} of {tested} mismatched "
                "elements that feed several output positions, the analytic value equals the "
                "contribution of just one of them (an assignment where += was needed?)")
    return None


def diagnose_target(t, V, y_shape, batch, atol):
    """Likely-cause sentences for one failing target (a list, maybe empty)."""
    Ai = t.A[:, t.idx]
    out = []
    for line in (_scale(t, Ai, atol, batch), _flip(t, t.A, atol), _transposed(t, t.A, atol),
                 _batch(t, Ai, V, y_shape, batch, atol)):
        if line:
            out.append(line)
    if not out:
        line = _fan_out(t, Ai, V, y_shape, atol)
        if line:
            out.append(line)
    return out


def diagnose_wrong_argument(targets, atol):
    """For failing targets whose gradient is another target's: {name: sentence}."""
    found = {}
    for t in targets:
        if t.A is None or t.failing is None or not t.failing.any():
            continue
        for u in targets:
            if u is t or u.N is None or u.A is None or t.A.shape[1] != int(np.prod(u.shape)):
                continue
            if close(t.A[:, u.idx], u.N, atol):
                found[t.name] = (f"gradient wrt the wrong argument: what backward returns for "
                                 f"{t.name} is the gradient wrt {u.name}")
                break
    return found


def describe_shape_mismatch(name, got, expected, others):
    """Message for a gradient of the wrong shape, naming a target it would fit."""
    msg = f"the gradient for {name} has shape {tuple(got)}, expected {tuple(expected)}"
    for other, shape in others.items():
        if other != name and tuple(shape) == tuple(got):
            return msg + f": that is the shape of {other} (gradient wrt the wrong argument?)"
    if len(got) == len(expected) == 2 and tuple(got) == tuple(expected)[::-1]:
        return msg + " (transposed?)"
    return msg
