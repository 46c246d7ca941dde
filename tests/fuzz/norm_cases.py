"""Fuzz cases of the batch-norm and ReLU ops of cnnframe.functional (NORM_OPS).

They have their own generator and mutations (`build_norm_case`); which errors a
mutated call must raise is decided afresh from the documented contract of the ops
(`_norm_expect`), not by the mutation.  For them `run_case` also checks that the
inputs are left unchanged (the running statistics of ``batch_norm_train`` are
compared with the reference's update instead), that a valid ``out=`` is the array
returned, and it runs half of the calls split over all threads (as if they were
large).  Their float results are compared within a bound derived from each channel's
conditioning (`_norm_scales`).
"""
import math
import numbers

import numpy as np

import cnnframe.functional as F
from cnnframe import reference as R
from fuzz.case_tools import ContractViolation, _assert_close, _bad_dtype, _relayout, _values

NORM_OPS = ("batch_norm_train", "batch_norm_eval", "batch_norm_backward", "relu",
            "relu_backward")

# valid eps / momentum of a base call; the "scalar" mutation draws from the wider lists
# (the contract, `_norm_expect`, says which of those must be refused)
EPS_OK = (1e-5, 1e-5, 1e-3, 0.1, 1.0, 1e-10, np.float32(1e-4), 2)
MOMENTUM_OK = (0.1, 0.1, 0.0, 1.0, 0.5, np.float64(0.01))
EPS_VALUES = (0, 0.0, -1e-5, np.nan, np.inf, -np.inf, "1e-5", None, True,
              np.bool_(True), 1j, [1e-5], 1e300, 3, np.float32(1e-3), np.int64(1), 10**400)
MOMENTUM_VALUES = (-0.1, 1.1, 1 + 1e-12, np.nan, np.inf, 2**70, "0.1", None, False,
                   1j, [0.1], 0, 1, np.float32(0.5), 0.999, 10**400)
FLAG_VALUES = (1, 0, 1.0, "True", None, np.bool_(True), np.bool_(False), True, False)
NORM_MUTATIONS = ("none", "none", "layout", "layout", "dtype", "mixed_dtype", "ndim",
                  "zero_axis", "shape", "nonfinite", "scalar", "huge_array", "not_array", "out")
PER_CHANNEL = ("weight", "bias", "running_mean", "running_var", "mean", "invstd")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
HUGE_SIZE = 2**36  # elements: an input this large is one of the mutation's terabyte arrays


def _array(c, shape, dtype, rng):
    return np.asarray(_values(c, shape, dtype, rng)[0], dtype).reshape(shape)  # 0-d stays ndarray


def _norm_base(c, rng, op):
    """A valid call of a NORM_OPS op: (arrays, kw); a None array is passed as None."""
    dtype = c.choice((np.float32, np.float64))
    if op in ("relu", "relu_backward"):
        shape = tuple(c.int(1, 6) for _ in range(c.int(0, 4)))
        if shape and c.bool():
            shape = shape[:-1] + (c.int(1, 70),)  # rows past the vector width, with tails
        x = _array(c, shape, dtype, rng)
        if op == "relu":
            return {"x": x}, {}
        y = np.array(np.maximum(x, 0), dtype) if c.bool() else x  # relu's output or any values
        return {"grad_y": _array(c, shape, dtype, rng), "y": y}, {}

    rank = c.choice((2, 3, 3, 4))
    spatial = (() if rank == 2 else (c.int(1, 40),) if rank == 3 else (c.int(1, 7), c.int(1, 7)))
    ch, n = c.int(1, 5), c.int(0, 4)
    if op == "batch_norm_train" and n * math.prod(spatial) < 2:
        n = 2  # training needs two values per channel
    shape = (n, ch) + spatial
    col = (-1,) + (1,) * len(spatial)
    x, kind = _values(c, shape, dtype, rng)
    if kind in ("normal", "ints") and c.bool():  # channel means far from 0
        x = (x + rng.uniform(-50, 50, ch).reshape(col)).astype(dtype)

    def param(nonnegative=False):
        v = _array(c, (ch,), dtype, rng)
        return np.abs(v) if nonnegative else v

    kw = {}
    if op == "batch_norm_train":
        arrays = {"x": x}
        for name in ("weight", "bias"):
            if c.bool():
                arrays[name] = param()
        if c.bool():
            arrays["running_mean"], arrays["running_var"] = param(), param(True)
        if c.bool():
            kw["momentum"] = c.choice(MOMENTUM_OK)
        if c.bool():
            kw["relu"] = c.bool()
    elif op == "batch_norm_eval":
        arrays = {"x": x, "weight": param() if c.bool() else None,
                  "bias": param() if c.bool() else None,
                  "running_mean": param(), "running_var": param(True)}
        if c.bool():
            kw["relu"] = c.bool()
    else:  # batch_norm_backward: statistics of x's batch, or any
        arrays = {"grad_y": _array(c, shape, dtype, rng), "x": x,
                  "weight": param() if c.bool() else None}
        if x.size and c.bool():
            with np.errstate(all="ignore"):
                _, mean, invstd = R.batch_norm_train(x, eps=c.choice(EPS_OK))
        else:
            mean, invstd = param(), param(True)
        stat_dtype = c.choice((dtype, np.float32, np.float64))  # any float dtype is accepted
        arrays["mean"], arrays["invstd"] = mean.astype(stat_dtype), invstd.astype(stat_dtype)
        for flag in ("training", "need_grad_x"):
            value = c.choice((True, False, None))
            if value is not None:
                kw[flag] = value
        if c.bool():  # the fused ReLU's output (any values, or a ReLU's: zeros and positives)
            y = _array(c, shape, dtype, rng)
            arrays["relu_y"] = np.array(np.maximum(y, 0), dtype) if c.bool() else y
    if op in ("batch_norm_train", "batch_norm_eval") and c.bool():
        kw["eps"] = c.choice(EPS_OK)
    return arrays, kw


def build_norm_case(c, rng, op):
    """build_case for NORM_OPS: a valid call, at most one mutation, the errors it requires."""
    arrays, kw = _norm_base(c, rng, op)
    mutation = c.choice(NORM_MUTATIONS + (("running",) if op == "batch_norm_train" else ()))
    target = c.choice([k for k, v in arrays.items() if v is not None])
    batch = [k for k in ("grad_y", "x", "y", "relu_y") if k in arrays]  # arrays of x's shape
    main = arrays["y" if op == "relu_backward" else "x"]
    a = arrays[target]
    dtype = main.dtype
    if mutation == "layout":
        writes = op == "batch_norm_train" and target.startswith("running")
        arrays[target], how = _relayout(c, a, keep_writeable=writes)
        mutation = f"layout-{how}"
    elif mutation == "dtype":
        arrays[target] = _bad_dtype(c, a)
    elif mutation == "mixed_dtype":  # float32 <-> float64 (only mean and invstd may differ)
        arrays[target] = a.astype(np.float64 if a.dtype == np.float32 else np.float32)
    elif mutation == "ndim":
        how = c.choice(("append", "flatten", "0d"))
        new = (a[..., None] if how == "append" else a.reshape(-1) if how == "flatten"
               else a.reshape(-1)[:1].reshape(()) if a.size else np.zeros((), a.dtype))
        arrays[target] = new
        mutation = f"ndim-{how}" if new.shape != a.shape else "none"
    elif mutation == "zero_axis":
        if a.ndim:
            axis = c.int(0, a.ndim - 1)
            together = target in batch and c.bool()  # x and grad_y alike, or only one
            for k in (batch if together else [target]):
                arrays[k] = np.take(arrays[k], [], axis=axis)
            mutation = f"zero_axis-{axis}" + ("-all" if together else "")
        else:
            mutation = "none"
    elif mutation == "shape":
        if target in PER_CHANNEL:
            ch = a.shape[0]
            shape = c.choice(((ch + 1,), (ch, 1), (1, ch), (max(1, ch - 1),), (1,)))
            arrays[target] = rng.standard_normal(shape).astype(a.dtype)
        elif a.ndim == 0:
            arrays[target] = a.reshape(1)
        else:  # one axis one longer or shorter
            axis = c.int(0, a.ndim - 1)
            if a.shape[axis] > 1 and c.bool():
                arrays[target] = np.take(a, range(a.shape[axis] - 1), axis=axis)
            else:
                pad = list(a.shape)
                pad[axis] = 1
                arrays[target] = np.concatenate([a, np.zeros(pad, a.dtype)], axis=axis)
        mutation = "none" if arrays[target].shape == a.shape else "shape"
    elif mutation == "nonfinite":
        if a.size:
            a = a.copy()
            a.flat[c.int(0, a.size - 1)] = c.choice((np.nan, np.inf, -np.inf))
            arrays[target] = a
        else:
            mutation = "none"
    elif mutation == "scalar":
        keys = {"batch_norm_train": ("eps", "momentum", "relu"), "batch_norm_eval": ("eps", "relu"),
                "batch_norm_backward": ("training", "need_grad_x")}.get(op, ("inplace", "eps"))
        key = c.choice(keys)
        kw[key] = c.choice({"eps": EPS_VALUES, "momentum": MOMENTUM_VALUES}.get(
            key, FLAG_VALUES) if op not in ("relu", "relu_backward") else (True, 1e-5))
        mutation = f"scalar-{key}"
    elif mutation == "huge_array":
        shape = [max(1, d) for d in a.shape] or [1]
        axis = c.int(0, len(shape) - 1)
        rest = max(1, math.prod(shape) // shape[axis])
        shape[axis] = c.choice((-(-2**40 // rest), 2**40, 2**48 // rest + 1))
        arrays[target] = np.broadcast_to(np.zeros((), a.dtype), shape)
    elif mutation == "not_array":
        arrays[target] = c.choice((a.tolist(), None, "x", 3.0))
    elif mutation == "out":
        how = c.choice(("valid", "valid", "dtype", "shape", "strided", "readonly", "overlap",
                        "list"))
        shape = main.shape
        if how == "valid":
            out = np.full(shape, np.nan, dtype)  # NaN shows any element left unwritten
        elif how == "dtype":
            out = np.empty(shape, np.float64 if dtype == np.float32 else np.float32)
        elif how == "shape":
            out = np.empty(shape + (2,), dtype)
        elif how == "strided":
            out = np.empty(shape[:-1] + (2 * shape[-1],) if shape else (2,), dtype)[..., ::2]
        elif how == "readonly":
            out = np.empty(shape, dtype)
            out.flags.writeable = False
        elif how == "overlap":
            out = arrays[c.choice(batch)]
        else:
            out = np.empty(shape, dtype).tolist()
        kw["out"] = out
        mutation = f"out-{how}"
    elif mutation == "running":  # batch_norm_train's running statistics
        pair = ("running_mean", "running_var")
        if arrays.get("running_mean") is None:
            for k in pair:
                arrays[k] = np.abs(rng.standard_normal(main.shape[1])).astype(dtype)
        how = c.choice(("readonly", "only_one", "broadcast", "neither"))
        k = c.choice(pair)
        if how == "readonly":
            arrays[k] = arrays[k].copy()
            arrays[k].flags.writeable = False
        elif how == "only_one":
            arrays[k] = None
        elif how == "broadcast":
            arrays[k] = np.broadcast_to(arrays[k][:1], arrays[k].shape)
        else:
            arrays.update(running_mean=None, running_var=None)
        mutation = f"running-{how}"
    return op, arrays, kw, mutation, _norm_expect(op, arrays, kw)


def _is_float_array(a):
    return isinstance(a, np.ndarray) and a.dtype.newbyteorder("=") in FLOAT_DTYPES


def _number_errors(value, high, low_open):
    """Errors for eps (> 0) / momentum (in [0, 1]): documented as finite real numbers."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return {TypeError}
    if abs(value) > 1e308:  # a Python int beyond float range: not a finite number
        return {ValueError}
    value = float(value)
    ok = math.isfinite(value) and (value > 0 if low_open else value >= 0) and value <= high
    return set() if ok else {ValueError}


def _norm_expect(op, arrays, kw):
    """The errors the docstrings require of this NORM_OPS call (any of them): () if valid.

    Written from the documented contract (Parameters / Raises), not from the code.
    """
    errors = set()
    main_name = "y" if op == "relu_backward" else "x"
    optional = {"weight", "bias", "relu_y"} | ({"running_mean", "running_var"}
                                               if op == "batch_norm_train" else set())
    for name, a in arrays.items():
        if not (a is None and name in optional) and not _is_float_array(a):
            errors.add(TypeError)  # not an ndarray, or not float32/float64
    main = arrays[main_name]
    if not isinstance(main, np.ndarray):
        return tuple(sorted(errors, key=str))
    native = main.dtype.newbyteorder("=") if _is_float_array(main) else None
    # arrays that must share x's dtype (any byte order): mean and invstd may be any float
    same = ("grad_y", "relu_y", "weight", "bias", "running_mean", "running_var")
    for name in same:
        a = arrays.get(name)
        if native is not None and _is_float_array(a) and a.dtype.newbyteorder("=") != native:
            errors.add(TypeError)
    for name in ("grad_y", "relu_y"):
        a = arrays.get(name)
        if isinstance(a, np.ndarray) and a.shape != main.shape:
            errors.add(ValueError)
    if op.startswith("batch_norm"):
        if main.ndim < 2 or main.shape[1] < 1:
            errors.add(ValueError)  # (N, C, *) with C >= 1
        else:
            for name in PER_CHANNEL:
                a = arrays.get(name)
                if isinstance(a, np.ndarray) and a.shape != (main.shape[1],):
                    errors.add(ValueError)
            if op == "batch_norm_train" and main.shape[0] * math.prod(main.shape[2:]) < 2:
                errors.add(ValueError)  # one value per channel has no variance
    if op == "batch_norm_train":
        running = [arrays.get("running_mean"), arrays.get("running_var")]
        if (running[0] is None) != (running[1] is None):
            errors.add(ValueError)
        if any(isinstance(r, np.ndarray) and not r.flags.writeable for r in running):
            errors.add(ValueError)  # updated in place
    scalars = {"batch_norm_train": ("eps", "momentum", "relu", "out"),
               "batch_norm_eval": ("eps", "relu", "out"),
               "batch_norm_backward": ("training", "need_grad_x", "out")}.get(op, ("out",))
    if any(k not in scalars for k in kw):
        errors.add(TypeError)  # unexpected keyword
    if "eps" in kw and "eps" in scalars:
        errors |= _number_errors(kw["eps"], math.inf, low_open=True)
    if "momentum" in kw:
        errors |= _number_errors(kw["momentum"], 1.0, low_open=False)
    for flag in ("training", "need_grad_x", "relu"):
        if flag in kw and flag in scalars and not isinstance(kw[flag], (bool, np.bool_)):
            errors.add(TypeError)
    need_grad_x = kw.get("need_grad_x", True)
    no_grad_x = isinstance(need_grad_x, (bool, np.bool_)) and not need_grad_x
    if "out" in kw and not no_grad_x:  # C-contiguous, writeable, x's shape/dtype, no overlap
        # (with need_grad_x=False there is no grad_x to write: out is not used)
        out = kw["out"]
        inputs = [arrays[k] for k in ("x", "grad_y", "y", "relu_y")
                  if isinstance(arrays.get(k), np.ndarray)]
        if not isinstance(out, np.ndarray):
            errors.add(TypeError)
        elif native is not None and (
                out.shape != main.shape or out.dtype != native or not out.flags.c_contiguous
                or not out.flags.writeable or any(np.may_share_memory(out, a) for a in inputs)):
            errors.add(ValueError)
    if any(isinstance(a, np.ndarray) and a.size > HUGE_SIZE for a in arrays.values()):
        errors |= {ValueError, MemoryError}  # refused, or fails fast without the memory
    return tuple(sorted(errors, key=str))


def call_norm(op, arrays, kw):
    """Call cnnframe.functional's `op`; batch_norm_train's updated running stats are results."""
    fn = getattr(F, op)
    get = arrays.get
    if op == "batch_norm_train":
        running = [k for k in ("running_mean", "running_var") if _is_float_array(get(k))]
        before = {k: np.array(arrays[k]) for k in running if arrays[k].size <= 1 << 20}
        params = {k: arrays[k] for k in ("weight", "bias", "running_mean", "running_var")
                  if k in arrays}
        y, mean, invstd = fn(arrays["x"], **params, **kw)
        # the updated running statistics are results; the inputs get their values back,
        # so the reference starts from the same ones
        updated = tuple(np.array(arrays[k], arrays[k].dtype.newbyteorder("=")) for k in running)
        for k, v in before.items():
            arrays[k][...] = v
        return (y, mean, invstd) + updated
    if op == "batch_norm_eval":
        return fn(arrays["x"], get("weight"), get("bias"), get("running_mean"),
                  get("running_var"), **kw)
    if op == "batch_norm_backward":
        relu_y = {"relu_y": arrays["relu_y"]} if "relu_y" in arrays else {}
        return fn(arrays["grad_y"], arrays["x"], get("weight"), get("mean"), get("invstd"),
                  **relu_y, **kw)
    if op == "relu_backward":
        return fn(arrays["grad_y"], arrays["y"], **kw)
    return fn(arrays["x"], **kw)


NORM_TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}  # x the conditioning


def _norm_reference(op, arrays, kw):
    """cnnframe.reference's results for a NORM_OPS call (on native C copies of the arrays)."""
    a = {k: None if v is None else np.array(v, v.dtype.newbyteorder("="))
         for k, v in arrays.items()}
    eps = kw.get("eps", 1e-5)
    if op == "batch_norm_train":
        running = [np.array(a[k]) for k in ("running_mean", "running_var") if a.get(k) is not None]
        want = R.batch_norm_train(a["x"], a.get("weight"), a.get("bias"), eps,
                                  running_mean=running[0] if running else None,
                                  running_var=running[1] if running else None,
                                  momentum=kw.get("momentum", 0.1))
        if kw.get("relu"):
            want = (R.relu(want[0]),) + tuple(want[1:])
        want = tuple(want) + tuple(running)  # updated in place by the reference
    elif op == "batch_norm_eval":
        want = (R.batch_norm_eval(a["x"], a["weight"], a["bias"], a["running_mean"],
                                  a["running_var"], eps),)
        if kw.get("relu"):
            want = (R.relu(want[0]),)
    elif op == "batch_norm_backward":
        g = a["grad_y"] if a.get("relu_y") is None else R.relu_backward(a["grad_y"], a["relu_y"])
        want = R.batch_norm_backward(g, a["x"], a["weight"], a["mean"], a["invstd"],
                                     kw.get("training", True), kw.get("need_grad_x", True))
    elif op == "relu":
        want = (R.relu(a["x"]),)
    else:
        want = (R.relu_backward(a["grad_y"], a["y"]),)
    return a, tuple(None if w is None else np.asarray(w) for w in want)


def _channel_abs(v, axes, reduce=np.max):
    """Per channel max (or sum) of |v| over its finite entries."""
    finite_abs = np.where(np.isfinite(v), np.abs(v), 0.0)
    return np.max(finite_abs, axis=axes, initial=0.0) if reduce is np.max else \
        np.sum(finite_abs, axis=axes)


def _norm_scales(op, a, kw, want):
    """Per result, the size its rounding errors scale with (broadcastable to it; None: exact).

    Batch norm in float32 computes (x - mean) * scale + shift with mean, scale and shift
    rounded to float32, so its error is a few ulp of |scale| * (|mean| + |x - mean|) +
    |shift| per channel, not of |y| (which cancels for channels whose mean is far from 0);
    likewise for the backward's grad_x = g * a + (x - mean) * k1 + k0.  Sums are in double.
    """
    if op in ("relu", "relu_backward"):
        return [None]
    x = a["x"].astype(np.float64)
    c = x.shape[1]
    axes, col = (0,) + tuple(range(2, x.ndim)), (-1,) + (1,) * (x.ndim - 2)
    w = np.ones(c) if a.get("weight") is None else np.abs(a["weight"].astype(np.float64))
    b = np.zeros(c) if a.get("bias") is None else np.abs(a["bias"].astype(np.float64))
    if op == "batch_norm_train":
        mean, invstd = want[1], want[2]
        dev = _channel_abs(x - mean.reshape(col), axes)
        scales = [(w * invstd * (np.abs(mean) + dev) + b).reshape(col), _channel_abs(x, axes),
                  invstd]
        if len(want) == 5:  # running stats: (1 - momentum) * old + momentum * new
            scales += [np.abs(a["running_mean"].astype(np.float64)) + np.abs(mean),
                       np.abs(a["running_var"].astype(np.float64)) + 2 / invstd ** 2]
        return scales
    if op == "batch_norm_eval":
        mean = a["running_mean"].astype(np.float64)
        scale = w / np.sqrt(a["running_var"].astype(np.float64) + kw.get("eps", 1e-5))
        dev = _channel_abs(x - mean.reshape(col), axes)
        return [(scale * (np.abs(mean) + dev) + b).reshape(col)]
    g = a["grad_y"].astype(np.float64)
    mean, invstd = a["mean"].astype(np.float64), a["invstd"].astype(np.float64)
    m = max(1, x.size // c)
    xhat = (x - mean.reshape(col)) * invstd.reshape(col)
    sum_gxhat, sum_g = _channel_abs(g * xhat, axes, np.sum), _channel_abs(g, axes, np.sum)
    scale = w * np.abs(invstd)
    grad_x = scale * _channel_abs(g, axes)
    if kw.get("training", True):
        dev = _channel_abs(x - mean.reshape(col), axes)
        grad_x = grad_x + scale * (np.abs(invstd) * sum_gxhat / m * (np.abs(mean) + dev)
                                   + sum_g / m)
    return [grad_x.reshape(col), sum_gxhat, sum_g]


def check_norm_result(op, arrays, kw, result):
    """Raise ContractViolation unless `result` of a valid call matches the reference."""
    got = result if isinstance(result, tuple) else (result,)
    if "out" in kw and got[0] is not None and got[0] is not kw["out"]:
        raise ContractViolation(f"{op}: given out=, it returned another array")
    with np.errstate(all="ignore"):
        a, want = _norm_reference(op, arrays, kw)
        scales = _norm_scales(op, a, kw, want)
    inputs = [v.astype(np.float64) for v in a.values() if v is not None]
    nonfinite = any(not np.all(np.isfinite(v)) for v in inputs)
    overflow = any(np.any(np.abs(v[np.isfinite(v)]) > 1e30) for v in inputs)
    if len(got) != len(want):
        raise ContractViolation(f"{op}: {len(got)} results, reference {len(want)}")
    for i, (g, r, scale) in enumerate(zip(got, want, scales)):
        what = f"{op} result {i}"
        if r is None or g is None:
            if (r is None) != (g is None):
                raise ContractViolation(f"{what}: {type(g).__name__}, reference "
                                        f"{type(r).__name__}")
            continue
        if not isinstance(g, np.ndarray) or g.shape != r.shape or g.dtype != r.dtype:
            raise ContractViolation(f"{what}: {type(g).__name__} {np.shape(g)} "
                                    f"{getattr(g, 'dtype', '')}, reference {r.shape} {r.dtype}")
        if scale is None:  # element-wise selections: exact, NaN where the reference has NaN
            if not np.array_equal(g, r, equal_nan=True):
                raise ContractViolation(f"{what} differs from the reference at "
                                        f"{np.argwhere(~((g == r) | np.isnan(r)))[:3].tolist()}")
            continue
        if overflow:  # (ReLU selects, and is compared above whatever the values)
            # batch norm sums and centres: near the float max its sums (float64 inputs) or
            # its float32 x - mean overflow to +-inf or NaN by the order of the operations
            continue
        _assert_close(what, g, r, NORM_TOL[r.dtype] * np.nan_to_num(scale, nan=np.inf),
                      nonfinite)
