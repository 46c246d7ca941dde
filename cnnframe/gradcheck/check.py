"""`check_layer`: compare a layer's backward with central differences, and explain failures."""
import inspect
import math
from dataclasses import dataclass, field

import numpy as np

from cnnframe._threads import get_num_threads, set_num_threads
from cnnframe.gradcheck import diagnose as _diag
from cnnframe.gradcheck.numeric import Probe, central_differences, copy_layer
from cnnframe.gradcheck.roundtrip import (RebuildError, config_roundtrip_differences,
                                          describe_roundtrip_failure)

__all__ = ["check_layer", "GradcheckReport", "GradcheckError", "TargetResult", "ElementError",
           "CheckResult"]

_FULL_AUTO_MAX_OUTPUTS = 64      # mode="auto": exact Jacobian up to this many output elements
_KEEP_JACOBIAN_MAX = 4_000_000   # numeric Jacobian entries kept for the diagnoses
_KINK_EXPLAINS = 0.25            # a kink explains an error e when its second difference >= 0.25 e


class GradcheckError(AssertionError):
    """Raised by :meth:`GradcheckReport.raise_if_failed`; its message is the report."""


@dataclass
class ElementError:
    """One compared element: its index in the target, the output projection (or, in
    full-Jacobian mode, the output element) it was compared under, and both values."""
    index: tuple
    projection: object
    analytic: float
    numeric: float
    abs_err: float
    rel_err: float

    def format(self, name, full):
        idx = ", ".join(map(str, self.index))
        if name.startswith("input") and len(self.index) == 4:
            idx = "n={}, c={}, h={}, w={}".format(*self.index)
        where = (f"d output[{', '.join(map(str, self.projection))}]" if full
                 else f"projection {self.projection}")
        return (f"{name}[{idx}]: analytic {self.analytic:+.6e}  numeric {self.numeric:+.6e}  "
                f"abs err {self.abs_err:.2e}  rel err {self.rel_err:.2e}  ({where})")


@dataclass
class TargetResult:
    """Comparison for one input or parameter."""
    name: str
    kind: str                  # "input" or "param"
    shape: tuple
    checked: int = 0           # elements compared
    skipped: int = 0           # elements left out: non-differentiable points
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    failed: int = 0            # elements outside atol + rtol * |numeric|
    worst: list = field(default_factory=list)
    diagnoses: list = field(default_factory=list)
    error: str = None          # set when no comparison was possible (e.g. wrong shape)

    @property
    def too_many_skipped(self):
        """Kinks are rare at random points; many left after moving means unrepeatable output."""
        return self.skipped > max(2, 0.05 * (self.checked + self.skipped))

    @property
    def passed(self):
        return self.error is None and self.failed == 0 and not self.too_many_skipped


@dataclass
class CheckResult:
    """A structural check (shapes, dtypes, determinism, inputs left unmodified, ...)."""
    name: str
    passed: bool
    detail: str = ""


@dataclass
class GradcheckReport:
    """What :func:`check_layer` found.

    Attributes
    ----------
    passed : bool
        All targets within tolerance and all structural checks passed.
    layer : str
        The checked layer's name.
    targets : list of TargetResult
        One per input (``inputs``) and per parameter (``params``).
    checks : list of CheckResult
        Output shape vs ``output_shape()``, dtype preservation, grads shapes,
        backward leaving its inputs alone, eval-mode determinism, ...
    settings : dict
        eps, atol, rtol, seed, training, mode, projections, attempts, moved elements.
    """
    layer: str
    targets: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def passed(self):
        return all(t.passed for t in self.targets) and all(c.passed for c in self.checks)

    @property
    def inputs(self):
        return [t for t in self.targets if t.kind == "input"]

    @property
    def params(self):
        return {t.name: t for t in self.targets if t.kind == "param"}

    @property
    def diagnoses(self):
        return [d for t in self.targets for d in t.diagnoses]

    def __bool__(self):
        return self.passed

    def raise_if_failed(self):
        """Raise :class:`GradcheckError` (an AssertionError) with the report if it failed."""
        if not self.passed:
            raise GradcheckError(str(self))
        return self

    def __str__(self):
        s = self.settings
        lines = [f"gradcheck {self.layer}: {'passed' if self.passed else 'FAILED'}"]
        how = (f"exact Jacobian ({s.get('projections')} output elements)" if s.get("mode") == "full"
               else f"{s.get('projections')} random output projections")
        lines.append(f"  float64 copy, training={s.get('training')}, eps={s.get('eps'):g}, "
                     f"atol={s.get('atol'):g}, rtol={s.get('rtol'):g}, seed={s.get('seed')}, {how}")
        labels = [("" if t.kind == "input" else "param ") + f"{t.name} {tuple(t.shape)}"
                  for t in self.targets]
        width = max([len(x) for x in labels] + [6])
        lines.append(f"  {'target':<{width}}  {'checked':>9}  {'max abs err':>11}  "
                     f"{'max rel err':>11}  status")
        full = s.get("mode") == "full"
        for t, label in zip(self.targets, labels):
            if t.error:
                lines.append(f"  {label:<{width}}  {'-':>9}  {'-':>11}  {'-':>11}  FAILED")
                lines.append(f"      {t.error}")
            else:
                total = math.prod(t.shape)
                status = "ok" if t.passed else f"FAILED ({t.failed} elements)"
                if t.skipped:
                    status += f", {t.skipped} skipped at kinks"
                if t.too_many_skipped:
                    status = "FAILED: " + status
                    t_note = (f"      {t.skipped} elements stayed non-differentiable after moving "
                              "them: is forward repeatable (all randomness from self.rng)?")
                else:
                    t_note = None
                lines.append(f"  {label:<{width}}  {f'{t.checked}/{total}':>9}  "
                             f"{t.max_abs_err:11.2e}  {t.max_rel_err:11.2e}  {status}")
                if t_note:
                    lines.append(t_note)
                if not t.passed:
                    for e in t.worst:
                        lines.append("      " + e.format(t.name, full))
            for d in t.diagnoses:
                lines.append(f"      likely cause: {d}")
        bad = [c for c in self.checks if not c.passed]
        ok = [c.name for c in self.checks if c.passed]
        if ok:
            lines.append("  checks ok: " + ", ".join(ok))
        for c in bad:
            lines.append(f"  check FAILED: {c.name}: {c.detail}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


# --- helpers ----------------------------------------------------------------------------------

def _resolve_layer(layer, config, seed):
    if isinstance(layer, str) or inspect.isclass(layer):
        if isinstance(layer, str):
            from cnnframe.registry import get_layer
            cls = get_layer(layer)
        else:
            cls = layer
        cfg = dict(config or {})
        keys = cls.config_keys() if hasattr(cls, "config_keys") else {}
        if "seed" in keys and cfg.get("seed") is None:
            cfg["seed"] = int(seed)   # reproducible parameters
        return cls.from_config(cfg)
    if config is not None:
        raise TypeError("check_layer: config= is only for a registered name or a layer class, "
                        f"not for a layer instance ({type(layer).__name__})")
    if not hasattr(layer, "forward") or not hasattr(layer, "backward"):
        raise TypeError(f"check_layer: layer must be a layer instance, a layer class or a "
                        f"registered name, got {type(layer).__name__}")
    return layer


def _layer_name(layer):
    tn = getattr(layer, "type_name", None)
    cls = type(layer).__name__
    return f"{tn} ({cls})" if tn and tn != cls else cls


def _is_multi(layer, inputs, input_shape):
    if getattr(layer, "num_inputs", 1) is None:
        return True
    if inputs is not None:
        return isinstance(inputs, (list, tuple))
    return (isinstance(input_shape, (list, tuple)) and len(input_shape) > 0
            and isinstance(input_shape[0], (list, tuple)))


def _make_inputs(inputs, input_shape, multi, rng):
    if inputs is not None:
        arrs = list(inputs) if multi else [inputs]
        out = []
        for i, a in enumerate(arrs):
            a = np.asarray(a)
            if a.dtype.kind != "f":
                raise TypeError(f"check_layer: inputs must be float arrays, input {i} is {a.dtype}")
            out.append(np.array(a, dtype=np.float64, order="C", copy=True))
        return out
    if input_shape is None:
        raise ValueError("check_layer: give inputs= or input_shape= (with the batch dimension, "
                         "e.g. (2, 3, 8, 8); a list of shapes for multi-input layers)")
    shapes = list(input_shape) if multi else [input_shape]
    out = []
    for s in shapes:
        s = tuple(int(v) for v in s)
        if not s or any(v < 1 for v in s):
            raise ValueError(f"check_layer: input_shape must be positive ints with the batch "
                             f"dimension first, got {s}")
        out.append(rng.standard_normal(s))
    return out


def _target_names(xs, multi):
    return ["input"] if not multi else [f"input {i}" for i in range(len(xs))]


def _structural_checks(layer, lay, xs, multi, training, seed):
    """Checks not about gradient values; returns a list of CheckResult."""
    checks = []
    probe = Probe(lay, training, multi)
    shapes = [tuple(x.shape) for x in xs]
    # output shape vs output_shape()
    y = probe.forward(xs)
    try:
        arg = [s[1:] for s in shapes] if multi else shapes[0][1:]
        predicted = tuple(lay.output_shape(arg))
        ok = predicted == tuple(y.shape[1:])
        checks.append(CheckResult("output_shape", ok, "" if ok else
                                  f"output_shape({arg}) = {predicted} but forward returned "
                                  f"{tuple(y.shape)} (batch first)"))
    except Exception as exc:  # noqa: BLE001 - report any failure of the layer's code
        checks.append(CheckResult("output_shape", False,
                                  f"output_shape raised {type(exc).__name__}: {exc}"))
    if y.shape[:1] != shapes[0][:1]:
        checks.append(CheckResult("batch_axis", False, f"output batch size {y.shape[:1]} differs "
                                  f"from the input's {shapes[0][:1]}"))
    checks.append(CheckResult("finite_output", bool(np.all(np.isfinite(y))),
                              "forward returned NaN or inf"))
    again = probe.forward(xs)
    same = again.shape == y.shape and np.array_equal(again, y, equal_nan=True)
    checks.append(CheckResult(
        "forward_repeatable", same, "" if same else
        f"two forward(x, training={training}) calls with the same saved rng state and buffers "
        "gave different outputs: a stochastic layer must set stochastic = True and draw all "
        "its randomness in forward from self.rng"))
    # eval mode: deterministic, buffers untouched (no rng replay here on purpose)
    probe.restore()
    before = {k: v.copy() for k, v in getattr(lay, "buffers", {}).items()}
    x_copy = [x.copy() for x in xs]
    e1 = np.array(lay.forward(list(xs) if multi else xs[0], False), copy=True)
    e2 = np.array(lay.forward(list(xs) if multi else xs[0], False), copy=True)
    same = e1.shape == e2.shape and np.array_equal(e1, e2, equal_nan=True)
    checks.append(CheckResult("eval_deterministic", same, "" if same else
                              "two forward(x, training=False) calls gave different outputs"))
    changed = [k for k, v in before.items() if not np.array_equal(lay.buffers[k], v,
                                                                  equal_nan=True)]
    checks.append(CheckResult("eval_keeps_buffers", not changed, "" if not changed else
                              f"forward(x, training=False) changed buffers {changed}"))
    unchanged = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(xs, x_copy))
    checks.append(CheckResult("forward_keeps_inputs", unchanged, "" if unchanged else
                              "forward modified its input array in place"))
    for x, c in zip(xs, x_copy):
        x[...] = c
    probe.restore()
    # dtypes: a float32 and a float64 copy keep their dtype through forward and backward
    problems = []
    for dtype in (np.float32, np.float64):
        try:
            l2 = copy_layer(layer, dtype)
            x2 = [x.astype(dtype) for x in xs]
            p2 = Probe(l2, training, multi)
            p2.restore()
            y2 = l2.forward(list(x2) if multi else x2[0], training)
            if y2.dtype != dtype:
                problems.append(f"{np.dtype(dtype).name} input gave a {y2.dtype} output")
            g = np.random.default_rng(seed).standard_normal(y2.shape).astype(y2.dtype)
            gx, grads = p2.backward(g)
            for i, a in enumerate(gx):
                if a is not None and a.dtype != dtype:
                    problems.append(f"{np.dtype(dtype).name}: input gradient {i} is {a.dtype}")
            for k, a in grads.items():
                if a.dtype != dtype:
                    problems.append(f"{np.dtype(dtype).name}: grads[{k!r}] is {a.dtype}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{np.dtype(dtype).name} copy failed: {type(exc).__name__}: {exc}")
    checks.append(CheckResult("dtype_preserved", not problems, "; ".join(problems)))
    return checks


def _config_roundtrip_check(lay, xs, multi, training, seed, report):
    """Add the "config_roundtrip" check (or a note when get_config/from_config raise)."""
    try:
        diffs = config_roundtrip_differences(lay, list(xs) if multi else xs[0],
                                             training=training, seed=seed)
    except RebuildError as exc:
        report.notes.append(f"config round trip not checked: {exc}")
        return
    report.checks.append(CheckResult("config_roundtrip", not diffs,
                                     describe_roundtrip_failure(lay, diffs) if diffs else ""))


def _choose_indices(size, max_elements, rng):
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, int(max_elements), replace=False))


def check_layer(layer, inputs=None, *, input_shape=None, config=None, eps=1e-6, atol=1e-6,
                rtol=1e-5, seed=0, training=True, n_projections=3, mode="auto",
                max_elements=2048, max_attempts=4, n_worst=5):
    """Check a layer's backward against central differences of its forward.

    Parameters
    ----------
    layer : Layer, Layer subclass or str
        A layer instance, or a class / registered name built with `config`.
        The layer itself is never modified: the check runs on a float64 deep copy
        of this very instance (see :func:`cnnframe.gradcheck.copy_layer`).
    inputs : ndarray or list of ndarray, optional
        Inputs with the batch dimension (a list for multi-input layers).
        Default: standard normal values of `input_shape` drawn from `seed`.
    input_shape : tuple of int or list of tuples, optional
        Shape(s) with the batch dimension, e.g. (2, 3, 8, 8); used when `inputs` is None.
    config : dict, optional
        Config for a layer given by class or name; when it has a ``seed`` key
        left unset, `seed` is used, so the parameters are reproducible.
    eps : float
        Central-difference step.
    atol, rtol : float
        An element fails when ``|analytic - numeric| > atol + rtol * |numeric|``.
    seed : int
        Seeds the inputs, the output projections and the moves off kinks.
    training : bool
        Mode of the forward calls (True: e.g. batch statistics, dropout on).
    n_projections : int
        Random Gaussian output projections compared in projection mode.
    mode : {"auto", "projections", "full"}
        "projections": compare K = `n_projections` vector-Jacobian products
        ``v @ J`` per element (K backward calls, 2 forward calls per element);
        "full": the exact Jacobian, one backward call per output element;
        "auto": "full" when the output has at most 64 elements.
    max_elements : int or None
        Check at most this many randomly chosen elements per input/parameter
        (None: all).  Small tensors are always checked completely.
    max_attempts : int
        Elements whose mismatch a nearby kink explains (ReLU at 0, max-pool
        ties, clipping) are moved off it and everything is recomputed, up to
        this many times; kinks left after that are skipped, not failed.
    n_worst : int
        Worst elements listed per failing target.

    Returns
    -------
    GradcheckReport
        ``report.passed``, per-target errors and worst elements, likely causes,
        structural checks; ``report.raise_if_failed()``; ``print(report)``.
    """
    if mode not in ("auto", "projections", "full"):
        raise ValueError(f"check_layer: mode must be 'auto', 'projections' or 'full', got {mode!r}")
    if not (eps > 0 and atol >= 0 and rtol >= 0):
        raise ValueError(f"check_layer: need eps > 0, atol >= 0, rtol >= 0; got eps={eps}, "
                         f"atol={atol}, rtol={rtol}")
    if int(n_projections) < 1:
        raise ValueError(f"check_layer: n_projections must be >= 1, got {n_projections}")
    # thousands of forward calls on tiny tensors: thread start-up would dominate them
    threads = get_num_threads()
    set_num_threads(1)
    try:
        return _check_layer(layer, inputs, input_shape, config, eps, atol, rtol, seed, training,
                            n_projections, mode, max_elements, max_attempts, n_worst)
    finally:
        set_num_threads(threads)


def _check_layer(layer, inputs, input_shape, config, eps, atol, rtol, seed, training,
                 n_projections, mode, max_elements, max_attempts, n_worst):
    layer = _resolve_layer(layer, config, seed)
    multi = _is_multi(layer, inputs, input_shape)
    rng = np.random.default_rng(seed)
    xs = _make_inputs(inputs, input_shape, multi, rng)
    lay = copy_layer(layer, np.float64)
    report = GradcheckReport(_layer_name(layer))
    report.checks = _structural_checks(layer, lay, xs, multi, training, seed)
    _config_roundtrip_check(lay, xs, multi, training, seed, report)

    in_names = _target_names(xs, multi)
    params = getattr(lay, "params", {})
    shapes = {n: x.shape for n, x in zip(in_names, xs)}
    shapes.update({f"parameter {k!r}": v.shape for k, v in params.items()})
    probe = Probe(lay, training, multi)
    y0 = probe.forward(xs)
    M = y0.size
    full = mode == "full" or (mode == "auto" and M <= _FULL_AUTO_MAX_OUTPUTS)
    V = np.eye(M) if full else rng.standard_normal((int(n_projections), M))
    K = V.shape[0]
    report.settings = dict(eps=eps, atol=atol, rtol=rtol, seed=seed, training=bool(training),
                           mode="full" if full else "projections", projections=K)
    jitter_rng = np.random.default_rng([seed, 1])
    targets = [_diag.TargetData(n, "input", tuple(x.shape), _choose_indices(x.size, max_elements,
                                                                              rng))
               for n, x in zip(in_names, xs)]
    targets += [_diag.TargetData(k, "param", tuple(p.shape),
                                 _choose_indices(p.size, max_elements, rng))
                for k, p in params.items()]
    arrays = lambda: list(xs) + [lay.params[k] for k in params]  # noqa: E731 - live arrays
    keep_j = all(M * len(t.idx) <= _KEEP_JACOBIAN_MAX for t in targets)
    moved = 0
    for attempt in range(max(1, int(max_attempts))):
        y0 = probe.forward(xs)
        _analytic(probe, xs, params, V, y0.shape, targets, shapes, report, attempt)
        to_move = []
        for t, arr in zip(targets, arrays()):
            if t.A is None:
                continue
            t.N, kink, t.J = central_differences(probe, xs, arr, t.idx, V, eps, y0, keep_j)
            err = np.abs(t.A[:, t.idx] - t.N)
            fail = err > atol + rtol * np.abs(t.N)
            explained = fail & (kink >= _KINK_EXPLAINS * err)
            t.kinked = np.any(explained, axis=0)
            t.failing = np.any(fail, axis=0) & ~t.kinked
            if t.kinked.any():
                to_move.append((t, arr))
        if not to_move or attempt == max_attempts - 1:
            break
        for t, arr in to_move:   # move off the kinks and recompute everything
            flat = t.idx[t.kinked]
            idx = np.unravel_index(flat, arr.shape)
            vals = arr[idx]
            arr[idx] = vals + (jitter_rng.choice([-1.0, 1.0], len(flat))
                               * jitter_rng.uniform(0.01, 0.05, len(flat)) * np.maximum(1.0,
                                                                                  np.abs(vals)))
            moved += len(flat)
        probe = Probe(lay, training, multi)
    report.settings["attempts"] = attempt + 1
    if moved:
        report.notes.append(f"moved {moved} element(s) off non-differentiable points "
                            "(kinks) and rechecked")
    report.targets = _summarise(targets, V, y0.shape, atol, rtol, full, n_worst, shapes)
    batch = xs[0].shape[0] if y0.ndim and y0.shape[0] == xs[0].shape[0] else None
    _add_diagnoses(report, targets, lay, probe, xs, params, V, y0.shape, batch, atol, rtol)
    return report


def _analytic(probe, xs, params, V, y_shape, targets, shapes, report, attempt):
    """Fill t.A (K, size) from K backward calls; record structural problems once."""
    K = V.shape[0]
    n_in = len(xs)
    for t in targets:
        t.A = np.zeros((K, math.prod(t.shape)))
        t.shape_error = None
    modified, grad_problem = False, None
    for k in range(K):
        gy = V[k].reshape(y_shape).copy()
        gy_copy, x_copy = gy.copy(), [x.copy() for x in xs]
        probe.forward(xs)
        gin, grads = probe.backward(gy)
        if not np.array_equal(gy, gy_copy) or not all(
                np.array_equal(a, b) for a, b in zip(xs, x_copy)):
            modified = True
            gy[...] = gy_copy
            for a, b in zip(xs, x_copy):
                a[...] = b
        if set(grads) != set(params) and grad_problem is None:
            grad_problem = (f"grads has keys {sorted(grads)} but params has {sorted(params)}")
        if len(gin) != n_in:
            for t in targets[:n_in]:
                t.shape_error = (f"backward returned {len(gin)} input gradient(s) for "
                                 f"{n_in} input(s)")
            gin = [None] * n_in
        sources = list(gin) + [grads.get(k2) for k2 in params]
        for t, g in zip(targets, sources):
            if g is None:
                t.shape_error = t.shape_error or "backward returned no gradient (None)"
            elif tuple(np.shape(g)) != t.shape:
                t.shape_error = t.shape_error or _diag.describe_shape_mismatch(
                    t.name, np.shape(g), t.shape, shapes)
            else:
                t.A[k] = np.asarray(g, np.float64).reshape(-1)
    for t in targets:
        if t.shape_error:
            t.A = None
    if attempt == 0:
        report.checks.append(CheckResult(
            "backward_keeps_inputs", not modified,
            "" if not modified else "backward modified its input x or grad_y in place"))
        bad = [f"{t.name}: grads shape {t.shape_error}" for t in targets
               if t.kind == "param" and t.shape_error]
        report.checks.append(CheckResult(
            "grads_match_params", grad_problem is None and not bad,
            "; ".join(([grad_problem] if grad_problem else []) + bad)))


def _summarise(targets, V, y_shape, atol, rtol, full, n_worst, shapes):
    out = []
    for t in targets:
        r = TargetResult(t.name, t.kind, t.shape)
        if t.A is None:
            r.error = t.shape_error
            out.append(r)
            continue
        keep = ~t.kinked
        r.skipped = int(t.kinked.sum())
        r.checked = int(keep.sum())
        A = t.A[:, t.idx]
        err = np.abs(A - t.N)
        tol = atol + rtol * np.abs(t.N)
        rel = err / np.maximum(np.maximum(np.abs(A), np.abs(t.N)), max(atol, 1e-300))
        err_k, rel_k = err[:, keep], rel[:, keep]
        r.max_abs_err = float(err_k.max(initial=0.0))
        r.max_rel_err = float(rel_k.max(initial=0.0))
        r.failed = int(t.failing.sum())
        score = np.where(keep[None, :], err / tol, -1.0)
        best_k = np.argmax(score, axis=0)                     # per element: worst projection
        elem_score = score[best_k, np.arange(score.shape[1])]
        for col in np.argsort(elem_score)[::-1][:n_worst]:
            if elem_score[col] < 0 or (r.failed and elem_score[col] <= 1.0):
                break
            k = best_k[col]
            proj = tuple(int(v) for v in np.unravel_index(k, y_shape)) if full else int(k)
            r.worst.append(ElementError(
                tuple(int(v) for v in np.unravel_index(t.idx[col], t.shape)), proj,
                float(A[k, col]), float(t.N[k, col]), float(err[k, col]), float(rel[k, col])))
        out.append(r)
    return out


def _rerun_with(probe, xs, lay, pname, transform, V, y_shape):
    """Analytic VJPs with param `pname` transformed between forward and backward."""
    K = V.shape[0]
    res = {}
    p = lay.params[pname]
    saved = p.copy()
    try:
        for k in range(K):
            probe.forward(xs)
            p[...] = transform(saved)
            gin, grads = probe.backward(V[k].reshape(y_shape).copy())
            p[...] = saved
            for i, g in enumerate(gin):
                res.setdefault(i, []).append(None if g is None else g.reshape(-1))
            for name, g in grads.items():
                res.setdefault(name, []).append(g.reshape(-1))
    except Exception:  # noqa: BLE001 - a diagnosis must never break the report
        return {}
    finally:
        p[...] = saved
    return {k: np.stack(v) for k, v in res.items() if all(a is not None for a in v)
            and len({a.size for a in v}) == 1}


def _add_diagnoses(report, targets, lay, probe, xs, params, V, y_shape, batch, atol, rtol):
    failing = [t for t in targets if t.A is not None and t.failing is not None and t.failing.any()]
    if not failing:
        return
    byname = {r.name: r for r in report.targets}
    for t in failing:
        byname[t.name].diagnoses.extend(_diag.diagnose_target(t, V, y_shape, batch, atol))
    for name, line in _diag.diagnose_wrong_argument(targets, atol).items():
        byname[name].diagnoses.append(line)
    # backward reading a parameter flipped / transposed: rerun with it pre-transformed
    n_in = len(xs)
    transforms = []
    for pname, p in params.items():
        if p.ndim >= 3 and p.shape[-1] * p.shape[-2] > 1:
            transforms.append((pname, lambda a: a[..., ::-1, ::-1], "with its kernel flipped "
                               "(spatially reversed: convolution instead of cross-correlation?)"))
        if p.ndim == 2 and p.shape[0] == p.shape[1] > 1:
            transforms.append((pname, lambda a: a.T, "transposed"))
    for pname, fn, what in transforms:
        res = _rerun_with(probe, xs, lay, pname, fn, V, y_shape)
        for i, t in enumerate(targets):
            if t not in failing or byname[t.name].diagnoses:
                continue
            key = i if i < n_in else t.name
            if key == pname or key not in res:
                continue
            if _diag.close(res[key][:, t.idx], t.N, atol):
                byname[t.name].diagnoses.append(
                    f"backward uses parameter {pname!r} {what}: with it so transformed, "
                    f"the gradient for {t.name} is right")
