"""The config round trip: does ``from_config(get_config())`` rebuild a layer that
computes what the original computes?

A saved model stores each layer's ``get_config()`` and its parameters and buffers,
and loading rebuilds the layer with ``from_config``.  State that changes forward or
backward but is missing from ``get_config()`` (a constructor argument stored under
another name, an attribute set after construction) is lost on that way.  This
module rebuilds a layer the way loading does and compares the two on the same
inputs: outputs, buffers after forward, input gradients and ``grads``.
"""
import copy
import numbers

import numpy as np

from cnnframe.gradcheck.numeric import Probe

__all__ = ["MISSES_STATE", "RebuildError", "rebuild_from_config",
           "config_roundtrip_differences", "describe_roundtrip_failure"]

#: Start of the message of a failed round trip (check_layer and the conformance suite).
MISSES_STATE = "get_config() misses state that changes the layer"


class RebuildError(Exception):
    """``get_config()`` or ``from_config()`` raised: the round trip could not be run."""


_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-9}


def rebuild_from_config(layer):
    """``type(layer).from_config(get_config())`` in `layer`'s dtype with its parameter and
    buffer values and random generator state copied over (what loading a saved layer does).

    Returns
    -------
    (Layer, list of str)
        The rebuilt layer and the differences already visible in its structure
        (parameter or buffer names or shapes); when there are any, values were not copied.

    Raises
    ------
    RebuildError
        If ``get_config()`` or ``from_config()`` raises (chained to that error).
    """
    try:
        new = type(layer).from_config(copy.deepcopy(layer.get_config()))
    except Exception as exc:  # noqa: BLE001 - any failure: the round trip cannot run
        raise RebuildError(f"from_config(get_config()) raised {type(exc).__name__}: "
                           f"{exc}") from exc
    dtype = getattr(layer, "dtype", None)
    if dtype is not None and hasattr(new, "astype"):
        new.astype(dtype)
    problems = []
    for store in ("params", "buffers"):
        src, dst = getattr(layer, store, {}), getattr(new, store, {})
        shapes = {k: np.shape(v) for k, v in src.items()}
        rebuilt = {k: np.shape(v) for k, v in dst.items()}
        if shapes != rebuilt:
            problems.append(f"{store}: the rebuilt layer has {rebuilt}, the layer has {shapes}")
    if not problems:
        for store in ("params", "buffers"):
            for k, v in getattr(layer, store, {}).items():
                getattr(new, store)[k][...] = v
    if getattr(layer, "rng", None) is not None:
        new.rng = copy.deepcopy(layer.rng)
    for attr in ("reuse_buffers", "needs_input_grad"):
        if hasattr(layer, attr):
            setattr(new, attr, getattr(layer, attr))
    return new, problems


def _run(layer, xs, training, multi, grad_seed):
    """(output, buffers after forward, input gradients, grads) of one forward and backward;
    the layer's buffers and rng state are restored afterwards."""
    probe = Probe(layer, training, multi)
    try:
        y = probe.forward([x.copy() for x in xs])
        buffers = {k: np.array(v, copy=True) for k, v in getattr(layer, "buffers", {}).items()}
        out_dtype = getattr(layer, "dtype", np.dtype(np.float64))
        g = np.random.default_rng([grad_seed, 5]).standard_normal(y.shape).astype(out_dtype)
        grads_in, grads = probe.backward(g)
    finally:
        probe.restore()
    return y, buffers, grads_in, grads


def _differs(got, want, rtol):
    """None if `got` agrees with `want`, else a short description of how they differ."""
    if got is None or want is None:
        return None if got is None and want is None else (
            f"{'None' if got is None else 'an array'} instead of "
            f"{'None' if want is None else 'an array'}")
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"shape {got.shape} instead of {want.shape}"
    finite = np.isfinite(got) & np.isfinite(want)
    if not np.array_equal(got[~finite], want[~finite], equal_nan=True):
        return "NaN or inf in other places"
    err = float(np.max(np.abs(got[finite] - want[finite]), initial=0.0))
    scale = float(np.max(np.abs(want[finite]), initial=0.0))
    return None if err <= rtol * scale else f"max abs difference {err:.3g} at scale {scale:.3g}"


def _simple(value):
    if value is None or isinstance(value, (bool, numbers.Number, str, np.dtype)):
        return True
    return isinstance(value, (tuple, list)) and len(value) <= 16 and all(map(_simple, value))


def _attribute_differences(layer, rebuilt):
    """Plain attributes (numbers, strings, flags, short tuples) that differ: likely culprits."""
    a, b = getattr(layer, "__dict__", {}), getattr(rebuilt, "__dict__", {})
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if _simple(va) and _simple(vb) and va != vb:
            out.append(f"{k} (layer {va!r}, rebuilt {vb!r})")
    return out


def config_roundtrip_differences(layer, inputs, *, training=True, seed=0):
    """Compare `layer` with the layer rebuilt from its config on the same inputs.

    The rebuilt layer (:func:`rebuild_from_config`: config, parameter and buffer
    values and rng state as loading a saved layer has them) and `layer` each run
    one forward and one backward with the same seeded ``grad_y``; the outputs,
    the buffers after forward, the input gradients and ``grads`` are compared
    (relative tolerance 1e-9 in float64, 1e-5 in float32: both run the same code).
    `layer` is left as it was (buffers and rng state are restored).

    Parameters
    ----------
    layer : Layer
    inputs : ndarray or list of ndarray
        With the batch dimension (a list for multi-input layers), in the layer's dtype.
    training : bool
        Mode of the forward calls.
    seed : int
        Seeds ``grad_y``.

    Returns
    -------
    list of str
        Empty when the two agree; else one entry per differing quantity (e.g.
        ``"input gradient: max abs difference 1.2 at scale 1.2"``) and a last entry
        naming the plain attributes that differ between the two layers, if any.

    Raises
    ------
    RebuildError
        If ``get_config()`` or ``from_config()`` raises.
    Exception
        Whatever the original layer's forward or backward raise (the rebuilt
        layer raising is a difference, reported in the list).
    """
    multi = getattr(layer, "num_inputs", 1) is None or isinstance(inputs, (list, tuple))
    xs = [np.asarray(x) for x in (inputs if multi else [inputs])]
    rebuilt, problems = rebuild_from_config(layer)
    if problems:
        return problems
    want = _run(layer, xs, training, multi, seed)
    try:
        got = _run(rebuilt, xs, training, multi, seed)
    except Exception as exc:  # noqa: BLE001 - the rebuilt layer failing is the finding
        return [f"the rebuilt layer's forward or backward raised {type(exc).__name__}: {exc}"]
    rtol = _RTOL.get(np.dtype(getattr(layer, "dtype", np.float64)), 1e-5)
    (y, bufs, gin, grads), (y2, bufs2, gin2, grads2) = want, got
    diffs = []
    what = _differs(y2, y, rtol)
    if what:
        diffs.append(f"output: {what}")
    for k in bufs:
        what = _differs(bufs2.get(k), bufs[k], rtol)
        if what:
            diffs.append(f"buffers[{k!r}] after forward: {what}")
    if len(gin) != len(gin2):
        diffs.append(f"input gradients: {len(gin2)} vs {len(gin)}")
    for i, (a, b) in enumerate(zip(gin2, gin)):
        what = _differs(a, b, rtol)
        if what:
            diffs.append(f"input gradient{f' {i}' if multi else ''}: {what}")
    for k in grads:
        what = _differs(grads2.get(k), grads[k], rtol)
        if what:
            diffs.append(f"grads[{k!r}]: {what}")
    if diffs:
        attrs = _attribute_differences(layer, rebuilt)
        if attrs:
            diffs.append("attributes that differ: " + ", ".join(attrs))
    return diffs


def describe_roundtrip_failure(layer, diffs):
    """The message of a failed round trip: MISSES_STATE, what differs, the config."""
    try:
        cfg = layer.get_config()
    except Exception as exc:  # noqa: BLE001
        cfg = f"<get_config() raised {type(exc).__name__}>"
    return (f"{MISSES_STATE}: the layer rebuilt with from_config(get_config()) (parameters, "
            f"buffers and rng state copied) differs in {'; '.join(diffs)}. get_config() = "
            f"{cfg!r}; store every __init__ argument that changes forward or backward in it")
