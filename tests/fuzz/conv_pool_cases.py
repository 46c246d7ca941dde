"""Fuzz cases of the conv, pooling and 2-D correlation ops of cnnframe.functional.

`build_conv_pool_case` draws a valid call with random geometry, dtype and values, then
applies at most one *mutation* (bad dtype, byte order, layout, dimensions, zero-size
axis, bad or huge geometry, wrong gradient shape ...) and says which errors the
mutated call may raise.  `check_conv_pool_result` compares a valid call's results with
``cnnframe.reference`` (NaN where the reference has NaN).
"""
import numpy as np

import cnnframe.functional as F
from cnnframe import reference as R
from fuzz.case_tools import ContractViolation, _bad_dtype, _relayout, _values

CONV_POOL_OPS = ("conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
                 "avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
                 "correlate2d", "convolve2d")
BATCHED_OPS = CONV_POOL_OPS[:8]  # (N, C, H, W) inputs: an empty batch is valid
# geometry values that must be refused (ValueError / TypeError) or fail fast (MemoryError)
HUGE = (2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, 2**64)
BAD_SCALARS = (-1, -(2**31), 0.5, 1.0, "2", None, True, np.float32(2), (1,), (1, 2, 3),
               [1, -1], (2**40, 1), np.nan)


def _pair(c, lo, hi):
    a, b = c.int(lo, hi), c.int(lo, hi)
    return a if a == b and c.bool() else (a, b)


def _conv_call(c, rng, backward):
    groups = c.choice((1, 1, 2, 3))
    cin, cout = groups * c.int(1, 3), groups * c.int(1, 3)
    kh, kw = c.int(1, 4), c.int(1, 4)
    stride, padding, dilation = _pair(c, 1, 3), _pair(c, 0, 2), _pair(c, 1, 2)
    s, p, d = (np.broadcast_to(v, 2) for v in (stride, padding, dilation))
    h = max(1, d[0] * (kh - 1) + 1 - 2 * p[0]) + c.int(0, 6)
    w = max(1, d[1] * (kw - 1) + 1 - 2 * p[1]) + c.int(0, 6)
    n = c.int(0, 3)
    dtype = c.choice((np.float32, np.float64))
    x, kind = _values(c, (n, cin, h, w), dtype, rng)
    weight, _ = _values(c, (cout, cin // groups, kh, kw), dtype, rng)
    kw_ = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    arrays = {"x": x, "weight": weight}
    if backward:
        oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
        ow = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
        arrays["grad_y"], _ = _values(c, (n, cout, oh, ow), dtype, rng)
    elif c.bool():
        arrays["bias"], _ = _values(c, (cout,), dtype, rng)
    return arrays, kw_


def _pool_call(c, rng):
    kh, kw = c.int(1, 4), c.int(1, 4)
    padding = (c.int(0, kh // 2), c.int(0, kw // 2))
    stride = c.choice((None, (c.int(1, 3), c.int(1, 3))))
    h = max(1, kh - 2 * padding[0]) + c.int(0, 6)
    w = max(1, kw - 2 * padding[1]) + c.int(0, 6)
    dtype = c.choice((np.float32, np.float64))
    x, _ = _values(c, (c.int(0, 3), c.int(1, 3), h, w), dtype, rng)
    return x, dict(kernel_size=(kh, kw), stride=stride, padding=padding)


def build_conv_pool_case(c, rng, op):
    """(op, arrays, kwargs, mutation name, allowed error types) for one of CONV_POOL_OPS."""
    if op in ("conv2d", "conv2d_backward"):
        arrays, kw = _conv_call(c, rng, op == "conv2d_backward")
        names = list(arrays)
    elif op in ("max_pool2d", "avg_pool2d"):
        x, kw = _pool_call(c, rng)
        arrays, names = {"x": x}, ["x"]
    elif op == "max_pool2d_backward":
        x, kw = _pool_call(c, rng)
        _, argmax = F.max_pool2d(x, **kw)
        grad_y, _ = _values(c, argmax.shape, x.dtype, rng)
        arrays = {"grad_y": grad_y, "argmax": argmax}
        kw = {"input_shape": x.shape}
        names = ["grad_y"]
    elif op == "avg_pool2d_backward":
        x, kw = _pool_call(c, rng)
        grad_y, _ = _values(c, F.avg_pool2d(x, **kw).shape, x.dtype, rng)
        arrays, names = {"grad_y": grad_y}, ["grad_y"]
        kw["input_shape"] = x.shape
    elif op == "global_avg_pool2d":
        x, kw = _pool_call(c, rng)
        arrays, names, kw = {"x": x}, ["x"], {}
    elif op == "global_avg_pool2d_backward":
        x, _ = _pool_call(c, rng)
        grad_y, _ = _values(c, x.shape[:2], x.dtype, rng)
        arrays, names, kw = {"grad_y": grad_y}, ["grad_y"], {"input_shape": x.shape}
    else:  # correlate2d / convolve2d take array_likes of any real dtype
        kh, kw_ = c.int(1, 4), c.int(1, 4)
        x, _ = _values(c, (kh + c.int(0, 6), kw_ + c.int(0, 6)),
                       c.choice((np.float32, np.float64)), rng)
        k, _ = _values(c, (kh, kw_), c.choice((np.float32, np.float64)), rng)
        arrays, names, kw = {"x": x, "k": k}, ["x", "k"], {}

    mutation = c.choice(("none", "none", "layout", "layout", "dtype", "ndim", "zero_axis",
                         "geometry", "huge_geometry", "huge_array", "not_array", "shape"))
    allowed = ()
    target = c.choice(names)
    if mutation == "layout":
        arrays[target], how = _relayout(c, arrays[target])
        mutation = f"layout-{how}"
    elif mutation == "dtype":
        arrays[target] = _bad_dtype(c, arrays[target])
        allowed = (TypeError,)
        if op in ("correlate2d", "convolve2d") and arrays[target].dtype.kind in "biuf":
            allowed = ()  # array_like of any real dtype is accepted there
    elif mutation == "ndim":
        a = arrays[target]
        arrays[target] = a[..., None] if c.bool() or a.ndim < 2 else a.reshape(
            a.shape[:-2] + (a.shape[-2] * a.shape[-1],))
        allowed = (ValueError,)
    elif mutation == "zero_axis":
        a = arrays[target]
        axis = c.int(0, a.ndim - 1)
        arrays[target] = np.take(a, [], axis=axis)
        allowed = (ValueError,)
        if op in BATCHED_OPS and axis == 0 and target in ("x", "grad_y", "argmax"):
            allowed = (ValueError, "maybe-ok")  # an empty batch is valid if consistent
    elif mutation in ("geometry", "huge_geometry"):
        keys = [k for k in kw if k not in ("input_shape",)] or ["input_shape"]
        if op in ("correlate2d", "convolve2d", "global_avg_pool2d"):
            keys = ["extra"]
        key = c.choice(keys)
        bad = c.choice(HUGE if mutation == "huge_geometry" else BAD_SCALARS)
        if bad is None and key == "stride":
            bad = 0
        if key == "input_shape":
            shape = list(kw["input_shape"])
            if isinstance(bad, int) and not isinstance(bad, bool) and bad > 0:
                bad = max(bad, 2**40)  # 2**31 x 1 x 1 would be a valid 8 GiB array
            shape[c.int(0, 3)] = bad
            kw["input_shape"] = tuple(shape)
            if shape[0] == 0 and bad in HUGE:
                allowed = (MemoryError, ValueError, "maybe-ok")  # an empty batch is empty
        elif key == "extra":
            kw["stride"] = bad
            allowed = (TypeError,)  # unexpected keyword
        else:
            kw[key] = bad if c.bool() else (bad, 1)
        allowed = allowed or (TypeError, ValueError, MemoryError)
        mutation = f"{mutation}-{key}"
    elif mutation == "huge_array":
        a = arrays[target]
        shape = [max(1, d) for d in a.shape]
        axis = c.int(0, len(shape) - 1)
        rest = max(1, int(np.prod(shape)) // max(1, shape[axis]))
        # at least 2**40 elements in total (terabytes), with no memory behind them
        shape[axis] = c.choice((-(-2**40 // rest), 2**40, 2**48 // rest + 1))
        arrays[target] = np.broadcast_to(np.zeros((), a.dtype), shape)
        allowed = (ValueError, MemoryError)
    elif mutation == "not_array":
        arrays[target] = c.choice((arrays[target].tolist(), "x", 3.0) if target == "bias"
                                  else (arrays[target].tolist(), None, "x", 3.0))
        allowed = (TypeError, ValueError)
        if op in ("correlate2d", "convolve2d") and isinstance(arrays[target], list):
            allowed = ()  # array_like
    elif mutation == "shape":
        if op == "conv2d_backward":
            g = arrays["grad_y"]
            arrays["grad_y"] = g[:, :, :-1] if g.shape[2] > 1 and c.bool() else \
                np.concatenate([g, g], axis=1)
        elif op == "max_pool2d_backward" and arrays["argmax"].size:
            am = arrays["argmax"]
            h, w = kw["input_shape"][2:]
            am = am.copy()
            am.flat[c.int(0, am.size - 1)] = c.choice((-1, h * w, 10**6, 2**40, -(2**63)))
            arrays["argmax"] = am
        elif op in ("avg_pool2d_backward", "global_avg_pool2d_backward") and \
                arrays["grad_y"].shape[0]:
            arrays["grad_y"] = np.concatenate([arrays["grad_y"]] * 2, axis=1)
        elif op == "conv2d":
            arrays["weight"] = np.concatenate([arrays["weight"]] * 2, axis=1)
        else:
            mutation = "none"
        if mutation == "shape":
            allowed = (ValueError,)
    return op, arrays, kw, mutation, allowed


def call_conv_pool(op, arrays, kw):
    """Call cnnframe.functional's `op` with the case's arrays and kwargs."""
    fn = getattr(F, op)
    if op in ("conv2d", "conv2d_backward"):
        args = [arrays["x"], arrays["weight"]]
        if op == "conv2d_backward":
            args.append(arrays["grad_y"])
        return fn(*args, bias=arrays["bias"], **kw) if "bias" in arrays else fn(*args, **kw)
    if op == "max_pool2d_backward":
        return fn(arrays["grad_y"], arrays["argmax"], **kw)
    if op in ("correlate2d", "convolve2d"):
        return fn(arrays["x"], arrays["k"], **kw)
    first = arrays.get("x", arrays.get("grad_y"))
    return fn(first, **kw)


def _reference(op, arrays, kw):
    a = {k: np.array(v) for k, v in arrays.items()}  # plain native C copies
    for k, v in a.items():
        if v.dtype.kind == "f":
            a[k] = v.astype(v.dtype.newbyteorder("="))
    if op == "conv2d":
        return (R.conv2d(a["x"], a["weight"], a.get("bias"), **kw),)
    if op == "conv2d_backward":
        return R.conv2d_backward(a["x"], a["weight"], a["grad_y"], **kw)
    if op == "max_pool2d":
        return R.max_pool2d(a["x"], **kw)
    if op == "max_pool2d_backward":
        return (R.max_pool2d_backward(a["grad_y"], a["argmax"], **kw),)
    if op == "avg_pool2d":
        return (R.avg_pool2d(a["x"], **kw),)
    if op == "avg_pool2d_backward":
        return (R.avg_pool2d_backward(a["grad_y"], **kw),)
    if op == "global_avg_pool2d":
        return (R.global_avg_pool2d(a["x"]),)
    if op == "global_avg_pool2d_backward":
        return (R.global_avg_pool2d_backward(a["grad_y"], **kw),)
    return (getattr(R, op)(a["x"], a["k"]),)


def _one_image(op, arrays, kw):
    """The call with an empty batch replaced by one zero image (the reference needs N >= 1)."""
    arrays = {k: (np.zeros((1,) + v.shape[1:], v.dtype) if k in ("x", "grad_y", "argmax") else v)
              for k, v in arrays.items()}
    if "input_shape" in kw:
        kw = dict(kw, input_shape=(1,) + tuple(kw["input_shape"][1:]))
    return arrays, kw


def _sum_bounds(op, a, kw):
    """Per result, a float64 bound on every partial sum computing it (None: no sums).

    The op's reference applied to |inputs| (non-finite entries as 0) gives, per output
    element, the sum of the magnitudes of its terms, which bounds each partial sum in
    any order: where it stays below the dtype's maximum, no summation order can
    overflow and the result must match the reference.  Max pooling only selects, and
    global_avg_pool2d_backward only divides, so they cannot overflow at all.
    """
    m = {k: v if k == "argmax" else np.abs(np.nan_to_num(v.astype(np.float64), nan=0.0,
                                                        posinf=0.0, neginf=0.0))
         for k, v in a.items()}
    if op == "conv2d":
        return (R.conv2d(m["x"], m["weight"], m.get("bias"), **kw),)
    if op == "conv2d_backward":
        return R.conv2d_backward(m["x"], m["weight"], m["grad_y"], **kw)
    if op in ("max_pool2d", "global_avg_pool2d_backward"):
        return (None, None)
    if op == "max_pool2d_backward":
        return (R.max_pool2d_backward(m["grad_y"], m["argmax"], **kw),)
    if op in ("avg_pool2d", "avg_pool2d_backward"):
        taps = np.prod(np.broadcast_to(kw["kernel_size"], 2))  # the sum before dividing
        if op == "avg_pool2d":
            return (R.avg_pool2d(m["x"], **kw) * taps,)
        return (R.avg_pool2d_backward(m["grad_y"], **kw) * taps,)
    if op == "global_avg_pool2d":
        return (m["x"].sum(axis=(2, 3)),)
    return (getattr(R, op)(m["x"], m["k"]),)  # correlate2d / convolve2d


def check_conv_pool_result(op, arrays, kw, result):
    """Raise ContractViolation unless `result` of a valid call matches the reference.

    Elements whose sums could overflow near the float maximum (`_sum_bounds`) are not
    compared: there +-inf or NaN depends on the order of the sum.
    """
    got = result if isinstance(result, tuple) else (result,)
    empty = op not in ("correlate2d", "convolve2d") and any(
        np.shape(arrays[k])[0] == 0 for k in ("x", "grad_y") if k in arrays)
    with np.errstate(all="ignore"):
        if empty:
            want = _reference(op, *_one_image(op, arrays, kw))
            want = tuple(np.empty((0,) + w.shape[1:], w.dtype) if i == 0 or op != "conv2d_backward"
                         else w * 0 for i, w in enumerate(want))
            bounds = (None,) * len(want)
        else:
            native = {k: np.asarray(v, np.asarray(v).dtype.newbyteorder("="))
                      for k, v in arrays.items()}
            want = _reference(op, arrays, kw)
            bounds = _sum_bounds(op, native, kw)
    inputs = [np.asarray(v, np.float64) for k, v in arrays.items() if k != "argmax"]
    nonfinite = any(not np.all(np.isfinite(v)) for v in inputs)
    if op == "max_pool2d":
        got, want = got[:1], want[:1]  # argmax of NaN windows/ties is checked via y
    for g, r, bound in zip(got, want, bounds):
        if g.shape != r.shape:
            raise ContractViolation(f"{op}: shape {g.shape}, reference {r.shape}")
        if op not in ("correlate2d", "convolve2d") and g.dtype != r.dtype:
            raise ContractViolation(f"{op}: dtype {g.dtype}, reference {r.dtype}")
        g64, r64 = g.astype(np.float64), r.astype(np.float64)
        checked = np.ones(r.shape, bool)
        if bound is not None:  # (half the maximum: room for the rounding of the bound)
            limit = min(np.finfo(g.dtype).max, np.finfo(r.dtype).max) / 2
            checked = np.broadcast_to(bound <= limit, r.shape)
        g64, r64 = g64[checked], r64[checked]
        finite = np.isfinite(r64)
        if not np.array_equal(np.isfinite(g64), finite):
            raise ContractViolation(f"{op}: non-finite entries differ from the reference")
        if not nonfinite and not np.array_equal(np.isnan(g64), np.isnan(r64)):
            raise ContractViolation(f"{op}: NaN pattern differs from the reference")
        # With inf inputs, NaN (inf - inf, or inf * padded 0) versus +-inf depends on the
        # order of the sum and on whether padded taps are multiplied: both are non-finite.
        eps = 1e-4 if g.dtype == np.float32 else 1e-10
        scale = np.max(np.abs(r64[finite]), initial=1.0)
        if not np.allclose(g64[finite], r64[finite], rtol=eps * 10, atol=eps * scale * 10):
            raise ContractViolation(f"{op}: differs from the reference by "
                                    f"{np.max(np.abs(g64[finite] - r64[finite]))}")
