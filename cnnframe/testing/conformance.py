"""Conformance suite for layers: everything a layer must do to work in cnnframe.

``check_layer_conformance(layer_cls, configs, input_shape=...)`` runs every
check on every config and returns a :class:`ConformanceReport`;
``parametrize_layer_checks(...)`` turns the same checks into one pytest test
per (config, check), so a plugin's own suite reports each separately::

    from cnnframe.testing import parametrize_layer_checks

    @parametrize_layer_checks(MyLayer, [{"width": 4}, {"width": 4, "bias": False}],
                              input_shape=(2, 3, 8, 8))
    def test_my_layer(layer_check):
        layer_check()

The checks (:data:`CHECKS`):

- ``gradcheck_train`` / ``gradcheck_eval``: :func:`cnnframe.gradcheck.check_layer`
  in training and in eval mode (gradients, shapes, dtypes, determinism, inputs
  left unmodified).
- ``config_roundtrip``: ``get_config()`` is plain JSON; ``from_config`` of it
  rebuilds an equivalent layer: same config, params and buffers, and, with the
  parameter and buffer values and rng state copied over, the same outputs,
  buffers, input gradients and ``grads`` in training and in eval mode (else
  "get_config() misses state that changes the layer: ..."); the same seed gives
  the same initial parameters.
- ``registry_roundtrip``: the class is registered (``@register_layer``) and
  ``get_layer(layer.type_name)`` returns it.
- ``save_load``: a one-node :class:`cnnframe.Model` holding the layer survives
  ``save``/``load`` (config, parameters, buffers, eval output).
- ``shape_inference``: ``output_shape()`` matches forward for batch sizes 1
  and N, and a Model infers the same shape.
- ``batch_independence``: in eval mode each sample's output depends on that
  sample only.
- ``dtypes``: float32 and float64 copies keep their dtype through forward and
  backward and agree with each other to float32 precision.
- ``grad_y``: the gradient rule of the Layer protocol (:class:`cnnframe.layers.Layer`):
  a grad_y of the other float dtype gives the input gradient in the dtype of the
  forward input (the same values as grad_y converted to the output's dtype); a
  non-float or wrongly shaped grad_y (or a list) is a TypeError/ValueError naming
  grad_y, its dtype or shape and the output's.
"""
import copy
import json
import os
import tempfile
import traceback
from dataclasses import dataclass, field

import numpy as np

from cnnframe.gradcheck import (RebuildError, check_layer, config_roundtrip_differences,
                                copy_layer, describe_roundtrip_failure)

__all__ = ["CHECKS", "ConformanceError", "LayerCheck", "ConformanceReport", "check_layer_conformance",
           "parametrize_layer_checks", "layer_checks"]

CHECKS = ("gradcheck_train", "gradcheck_eval", "config_roundtrip", "registry_roundtrip",
          "save_load", "shape_inference", "batch_independence", "dtypes", "grad_y")


class ConformanceError(AssertionError):
    """A conformance check failed (its message says which and why)."""


def _multi(layer_cls, input_shape):
    return getattr(layer_cls, "num_inputs", 1) is None or (
        isinstance(input_shape, (list, tuple)) and input_shape
        and isinstance(input_shape[0], (list, tuple)))


def _seeded(layer_cls, cfg, seed):
    cfg = dict(cfg)
    if "seed" in layer_cls.config_keys() and cfg.get("seed") is None:
        cfg["seed"] = int(seed)
    return cfg


def _inputs(shapes, multi, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shapes = list(shapes) if multi else [shapes]
    return [rng.standard_normal(tuple(s)).astype(dtype) for s in shapes]


def _fwd(layer, xs, multi, training=False):
    rng = getattr(layer, "rng", None)
    state = copy.deepcopy(rng.bit_generator.state) if rng is not None else None
    y = layer.forward(list(xs) if multi else xs[0], training)
    if state is not None:
        layer.rng.bit_generator.state = state
    return np.array(y, copy=True)


def _randomise_state(layer, seed):
    """Random parameter values and scaled buffers, so round trips cannot pass by accident."""
    rng = np.random.default_rng([seed, 7])
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape) * 0.5
    for b in layer.buffers.values():
        if b.dtype.kind == "f":
            b[...] = b * rng.uniform(0.5, 1.5, b.shape) + rng.uniform(0, 0.1, b.shape)


def _fail(msg):
    raise ConformanceError(msg)


def _close(a, b, rtol, atol, what):
    if a.shape != b.shape:
        _fail(f"{what}: shapes differ: {a.shape} vs {b.shape}")
    err = float(np.max(np.abs(a - b), initial=0.0))
    scale = float(np.max(np.abs(b), initial=0.0))
    if not err <= atol + rtol * scale:
        _fail(f"{what}: max abs difference {err:.3g} (scale {scale:.3g})")


# --- the checks: each takes (layer_cls, config, input_shape, seed, gradcheck kwargs) ----------

def _check_gradcheck(training):
    def run(cls, cfg, shape, seed, gc_kw):
        report = check_layer(cls, config=cfg, input_shape=shape, seed=seed, training=training,
                             **gc_kw)
        if not report.passed:
            _fail(str(report))
    return run


def _check_config(cls, cfg, shape, seed, gc_kw):
    layer = cls.from_config(_seeded(cls, cfg, seed))
    conf = layer.get_config()
    try:
        text = json.dumps(conf)
    except (TypeError, ValueError) as exc:
        _fail(f"get_config() is not plain JSON: {exc}: {conf!r}")
    conf2 = json.loads(text)
    if conf2 != conf:
        _fail(f"get_config() changes through JSON: {conf!r} -> {conf2!r} (use lists, not tuples)")
    again = cls.from_config(conf2)
    if again.get_config() != conf:
        _fail(f"from_config(get_config()).get_config() = {again.get_config()!r}, expected {conf!r}")
    for store in ("params", "buffers"):
        a, b = getattr(layer, store), getattr(again, store)
        if {k: v.shape for k, v in a.items()} != {k: v.shape for k, v in b.items()}:
            _fail(f"rebuilt layer has {store} {({k: v.shape for k, v in b.items()})}, "
                  f"expected {({k: v.shape for k, v in a.items()})}")
    if "seed" in conf and conf["seed"] is not None:
        for k, v in layer.params.items():
            if not np.array_equal(v, again.params[k]):
                _fail(f"the same seed gave different initial values of param {k!r}")
    _randomise_state(layer, seed)
    layer = copy_layer(layer, np.float64)
    multi = _multi(cls, shape)
    xs = _inputs(shape, multi, seed)
    for training in (True, False):
        try:
            diffs = config_roundtrip_differences(layer, xs if multi else xs[0],
                                                 training=training, seed=seed)
        except RebuildError as exc:
            _fail(str(exc))
        if diffs:
            _fail(f"forward(training={training}): {describe_roundtrip_failure(layer, diffs)}")


def _check_registry(cls, cfg, shape, seed, gc_kw):
    from cnnframe.registry import available_layers, get_layer
    name = getattr(cls, "type_name", None)
    if not name:
        _fail(f"{cls.__name__} is not registered: decorate it with @register_layer('name')")
    if get_layer(name) is not cls:
        _fail(f"get_layer({name!r}) returns {get_layer(name)!r}, not {cls!r}")
    if name not in available_layers():
        _fail(f"{name!r} missing from available_layers()")
    layer = get_layer(name).from_config(cls.from_config(_seeded(cls, cfg, seed)).get_config())
    if type(layer) is not cls:
        _fail(f"get_layer({name!r}).from_config(...) built a {type(layer).__name__}")


def _model(cls, layer, shape, multi):
    from cnnframe.graph import Model
    if multi:
        ins = {f"in{i}": tuple(s[1:]) for i, s in enumerate(shape)}
    else:
        ins = {"input": tuple(shape[1:])}
    return Model(ins, [("layer", layer, list(ins))], dtype=layer.dtype.name)


def _feed(model, xs, multi):
    return {name: x for name, x in zip(model.inputs, xs)} if multi else xs[0]


def _check_save_load(cls, cfg, shape, seed, gc_kw):
    from cnnframe.graph import Model
    multi = _multi(cls, shape)
    layer = cls.from_config(_seeded(cls, cfg, seed))
    model = _model(cls, layer, shape, multi)
    _randomise_state(model.nodes["layer"], seed)
    xs = _inputs(shape, multi, seed, np.float32)
    y = np.array(model.forward(_feed(model, xs, multi), training=False), copy=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.cnnf")
        model.save(path)
        loaded = Model.load(path)
    got = loaded.nodes["layer"]
    if type(got) is not cls:
        _fail(f"the loaded model holds a {type(got).__name__}, expected {cls.__name__}")
    if got.get_config() != model.nodes["layer"].get_config():
        _fail(f"config changed through save/load: {got.get_config()} vs "
              f"{model.nodes['layer'].get_config()}")
    state, state2 = model.state_dict(), loaded.state_dict()
    if set(state) != set(state2):
        _fail(f"state keys changed through save/load: {sorted(state)} vs {sorted(state2)}")
    for k in state:
        if not np.array_equal(state[k], state2[k]):
            _fail(f"{k} changed through save/load")
    y2 = np.array(loaded.forward(_feed(loaded, xs, multi), training=False), copy=True)
    _close(y2, y, 0, 0, "eval output after save/load")


def _check_shapes(cls, cfg, shape, seed, gc_kw):
    multi = _multi(cls, shape)
    layer = cls.from_config(_seeded(cls, cfg, seed))
    shapes = list(shape) if multi else [shape]
    arg = [tuple(s[1:]) for s in shapes] if multi else tuple(shape[1:])
    predicted = tuple(layer.output_shape(arg))
    for n in sorted({1, shapes[0][0]}):
        xs = _inputs([(n,) + tuple(s[1:]) for s in shapes] if multi else (n,) + tuple(shape[1:]),
                     multi, seed, np.float32)
        for training in (True, False):
            y = layer.forward(list(xs) if multi else xs[0], training)
            if tuple(y.shape) != (n,) + predicted:
                _fail(f"forward(training={training}) with batch {n} returned {y.shape}; "
                      f"output_shape({arg}) = {predicted}")
    model = _model(cls, layer, shape, multi)
    if tuple(model.shapes["layer"]) != predicted:
        _fail(f"Model infers {model.shapes['layer']}, output_shape gives {predicted}")


def _check_batch(cls, cfg, shape, seed, gc_kw):
    multi = _multi(cls, shape)
    layer = copy_layer(cls.from_config(_seeded(cls, cfg, seed)), np.float64)
    _randomise_state(layer, seed)
    xs = _inputs(shape, multi, seed)
    y = _fwd(layer, xs, multi)
    for n in range(xs[0].shape[0]):
        yn = _fwd(layer, [x[n:n + 1] for x in xs], multi)
        _close(yn, y[n:n + 1], 1e-10, 1e-12, f"eval output of sample {n} alone vs in the batch")


def _check_dtypes(cls, cfg, shape, seed, gc_kw):
    multi = _multi(cls, shape)
    base = cls.from_config(_seeded(cls, cfg, seed))
    outs = {}
    for dtype in (np.float32, np.float64):
        layer = copy_layer(base, dtype)
        xs = _inputs(shape, multi, seed, dtype)
        # stochastic layers may draw differently per dtype: compare them in eval mode
        modes = (True, False) if getattr(layer, "stochastic", False) else (False, True)
        for training in modes:
            y = _fwd(layer, xs, multi, training)
            if y.dtype != dtype:
                _fail(f"{np.dtype(dtype).name} inputs gave {y.dtype} output (training={training})")
        g = np.random.default_rng([seed, 3]).standard_normal(y.shape).astype(dtype)
        gx = layer.backward(g)
        gxs = list(gx) if multi else [gx]
        for i, a in enumerate(gxs):
            if a is not None and a.dtype != dtype:
                _fail(f"{np.dtype(dtype).name}: input gradient {i} is {a.dtype}")
        for k, a in layer.grads.items():
            if a.dtype != dtype:
                _fail(f"{np.dtype(dtype).name}: grads[{k!r}] is {a.dtype}")
        outs[dtype] = (y.astype(np.float64), [None if a is None else a.astype(np.float64)
                                              for a in gxs],
                       {k: v.astype(np.float64) for k, v in layer.grads.items()})
    (y32, g32, p32), (y64, g64, p64) = outs[np.float32], outs[np.float64]
    _close(y32, y64, 1e-3, 1e-4, "float32 vs float64 output")
    for i, (a, b) in enumerate(zip(g32, g64)):
        if a is not None and b is not None:
            _close(a, b, 1e-3, 1e-4, f"float32 vs float64 input gradient {i}")
    for k in p64:
        _close(p32[k], p64[k], 1e-3, 1e-4, f"float32 vs float64 grads[{k!r}]")


def _input_grads(gx, multi):
    return list(gx) if multi and isinstance(gx, (list, tuple)) else [gx]


def _refuses(layer, grad_y, exc_type, words, what):
    """backward(grad_y) must raise `exc_type` with a message containing every word."""
    try:
        layer.backward(grad_y)
    except exc_type as exc:
        missing = [w for w in words if w not in str(exc)]
        if missing:
            _fail(f"backward given {what} raised {exc_type.__name__} ({exc}), but the message "
                  f"does not name {', '.join(missing)}")
    except Exception as exc:  # noqa: BLE001
        _fail(f"backward given {what} raised {type(exc).__name__} ({exc}), expected "
              f"{exc_type.__name__}")
    else:
        _fail(f"backward accepted {what}; expected {exc_type.__name__}")


def _check_grad_y(cls, cfg, shape, seed, gc_kw):
    multi = _multi(cls, shape)
    base = cls.from_config(_seeded(cls, cfg, seed))
    for dtype, other in ((np.float32, np.float64), (np.float64, np.float32)):
        layer = copy_layer(base, dtype)
        xs = _inputs(shape, multi, seed, dtype)
        name, other_name = np.dtype(dtype).name, np.dtype(other).name
        y = _fwd(layer, xs, multi, True)
        g = np.random.default_rng([seed, 4]).standard_normal(y.shape).astype(other)
        want = [None if a is None else np.array(a, copy=True)
                for a in _input_grads(layer.backward(g.astype(dtype)), multi)]
        _fwd(layer, xs, multi, True)
        got = _input_grads(layer.backward(g), multi)
        for i, (a, b) in enumerate(zip(got, want)):
            if a is None or b is None:
                continue
            if a.dtype != dtype:
                _fail(f"{name} inputs and a {other_name} grad_y gave a {a.dtype} input "
                      f"gradient {i}; expected {name}, the dtype of the forward input")
            _close(a, b, 1e-6 if dtype == np.float32 else 1e-12, 0,
                   f"{name} layer: input gradient {i} for a {other_name} grad_y vs for that "
                   f"grad_y converted to {name}")
        shape_y = str(tuple(y.shape))
        _refuses(layer, g.astype(np.int64), TypeError, ("grad_y", "int64", name),
                 "an int64 grad_y")
        _refuses(layer, g.astype(bool), TypeError, ("grad_y", "bool", name), "a bool grad_y")
        _refuses(layer, g.tolist(), TypeError, ("grad_y", "list"), "a list as grad_y")
        wrong = np.zeros(y.shape[:-1] + (y.shape[-1] + 1,), dtype)
        _refuses(layer, wrong, ValueError, ("grad_y", str(wrong.shape), shape_y),
                 f"a grad_y of shape {wrong.shape} for an output of shape {shape_y}")
        bigger = np.zeros((2,) + y.shape, dtype)  # would broadcast against the output
        _refuses(layer, bigger, ValueError, ("grad_y", str(bigger.shape), shape_y),
                 f"a grad_y of shape {bigger.shape} for an output of shape {shape_y}")


_RUNNERS = {
    "gradcheck_train": _check_gradcheck(True),
    "gradcheck_eval": _check_gradcheck(False),
    "config_roundtrip": _check_config,
    "registry_roundtrip": _check_registry,
    "save_load": _check_save_load,
    "shape_inference": _check_shapes,
    "batch_independence": _check_batch,
    "dtypes": _check_dtypes,
    "grad_y": _check_grad_y,
}


@dataclass
class LayerCheck:
    """One conformance check of one config; call it to run it (raises ConformanceError)."""
    layer_cls: type
    config: dict
    input_shape: object
    check: str
    seed: int = 0
    gradcheck_kwargs: dict = field(default_factory=dict)
    case: int = 0

    @property
    def id(self):
        name = getattr(self.layer_cls, "type_name", None) or self.layer_cls.__name__
        return f"{name}-cfg{self.case}-{self.check}"

    def __call__(self):
        try:
            _RUNNERS[self.check](self.layer_cls, dict(self.config), self.input_shape, self.seed,
                                 dict(self.gradcheck_kwargs))
        except ConformanceError as exc:
            raise ConformanceError(f"{self.id} (config {self.config}, input shape "
                                   f"{self.input_shape}):\n{exc}") from None

    def __repr__(self):
        return f"LayerCheck({self.id})"


def _cases(configs, input_shape):
    if isinstance(configs, dict):
        configs = [configs]
    cases = []
    for entry in configs:
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], dict):
            cases.append((entry[0], entry[1]))
        elif isinstance(entry, dict):
            if input_shape is None:
                raise ValueError("give input_shape= (with the batch dimension) or configs as "
                                 "(config, input_shape) pairs")
            cases.append((entry, input_shape))
        else:
            raise TypeError(f"each config must be a dict or a (config, input_shape) pair, "
                            f"got {entry!r}")
    return cases


def layer_checks(layer_cls, configs, *, input_shape=None, checks=CHECKS, seed=0,
                 gradcheck_kwargs=None):
    """The list of :class:`LayerCheck` for every (config, check)."""
    unknown = [c for c in checks if c not in _RUNNERS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; valid: {', '.join(CHECKS)}")
    return [LayerCheck(layer_cls, cfg, shape, check, seed, dict(gradcheck_kwargs or {}), i)
            for i, (cfg, shape) in enumerate(_cases(configs, input_shape)) for check in checks]


@dataclass
class ConformanceReport:
    """Results of :func:`check_layer_conformance`: ``results`` maps check id -> error or None."""
    results: dict

    @property
    def passed(self):
        return all(v is None for v in self.results.values())

    @property
    def failures(self):
        return {k: v for k, v in self.results.items() if v is not None}

    def raise_if_failed(self):
        if not self.passed:
            raise ConformanceError(str(self))
        return self

    def __str__(self):
        lines = [f"conformance: {len(self.results) - len(self.failures)} of "
                 f"{len(self.results)} checks passed"]
        for k, v in self.results.items():
            lines.append(f"  {'ok    ' if v is None else 'FAILED'} {k}")
        for k, v in self.failures.items():
            lines.append(f"\n{v}")
        return "\n".join(lines)


def check_layer_conformance(layer_cls, configs, *, input_shape=None, checks=CHECKS, seed=0,
                            gradcheck_kwargs=None):
    """Run every conformance check on every config.

    Parameters
    ----------
    layer_cls : Layer subclass
    configs : dict, or list of dicts or of (config, input_shape) pairs
    input_shape : tuple or list of tuples, optional
        With the batch dimension (N >= 2 for the batch-independence check);
        for configs given without one.
    checks : sequence of str
        Subset of :data:`CHECKS`.
    seed : int
        Seeds inputs, initialisation (configs without a seed) and gradient checks.
    gradcheck_kwargs : dict, optional
        Extra arguments for :func:`cnnframe.gradcheck.check_layer` (e.g. atol).

    Returns
    -------
    ConformanceReport
        ``.passed``, ``.failures``, ``raise_if_failed()``, readable ``str()``.
    """
    results = {}
    for lc in layer_checks(layer_cls, configs, input_shape=input_shape, checks=checks, seed=seed,
                           gradcheck_kwargs=gradcheck_kwargs):
        try:
            lc()
            results[lc.id] = None
        except ConformanceError as exc:
            results[lc.id] = str(exc)
        except Exception:  # noqa: BLE001 - a crash is a failed check, with its traceback
            results[lc.id] = f"{lc.id}: raised\n{traceback.format_exc()}"
    return ConformanceReport(results)


def parametrize_layer_checks(layer_cls, configs, *, input_shape=None, checks=CHECKS, seed=0,
                             gradcheck_kwargs=None, argname="layer_check"):
    """A ``pytest.mark.parametrize`` decorator giving one test per (config, check).

    The test receives a :class:`LayerCheck` as `argname` and calls it; ids look like
    ``swish-cfg0-gradcheck_train``.
    """
    import pytest
    items = layer_checks(layer_cls, configs, input_shape=input_shape, checks=checks, seed=seed,
                         gradcheck_kwargs=gradcheck_kwargs)
    return pytest.mark.parametrize(argname, items, ids=[lc.id for lc in items])
