"""Fuzz cases for every registered layer: configs, forward and backward.

`run_layer_case(chooser)` picks a registered layer, builds it from a random (valid or
broken) config, feeds it a random array (any ndim, dtype, layout, empty axes, NaN/inf)
and, when forward succeeds, a gradient (the right one or a broken one).  Contract:

- construction, forward and backward return, or raise TypeError/ValueError/MemoryError
  with a message (backward before a successful forward may raise RuntimeError);
- a returned output has the layer's declared ``output_shape`` and the input dtype, and
  is finite when the input is finite and moderate;
- a returned input gradient has the input's shape and dtype (also for a grad_y of the
  other float dtype, which is converted: the Layer protocol's rule); a gradient of the
  wrong shape or a non-float dtype must be refused, not silently broadcast.
"""
import time

import numpy as np

import cnnframe.layers
from cnnframe.registry import available_layers, get_layer
from fuzz.cases import BAD_DTYPES, ContractViolation, _relayout

ALLOWED = (TypeError, ValueError, MemoryError)


# The project's own example plugin (examples/plugins/cnnframe_swish, installed by `make setup`).
EXAMPLE_PLUGIN = "cnnframe_swish"


def fuzzed_layers():
    """The built-in layers and the example plugin's, whatever else is installed.

    Other plugins in the environment (or layers other tests register) are left out:
    `_config` cannot know their required arguments.
    """
    builtin = {cls.type_name for cls in vars(cnnframe.layers).values()
               if isinstance(cls, type) and issubclass(cls, cnnframe.layers.Layer)
               and cls.type_name}
    # registered through its entry point (available_layers loads them), as users get it
    plugin = {n for n in available_layers()
              if get_layer(n).__module__.split(".")[0] == EXAMPLE_PLUGIN}
    if not plugin:  # not silently skipped: the plugin is part of the test setup
        raise AssertionError(f"the example plugin {EXAMPLE_PLUGIN} is not installed: pip install "
                             "--no-build-isolation -e examples/plugins/cnnframe_swish")
    return sorted(builtin | plugin)


TIME_LIMIT = 5.0


def _config(c, name, chan):
    """A valid config for built-in `name` with `chan` input channels/features (or None)."""
    k = [c.int(1, 3), c.int(1, 3)]
    if name in ("conv2d", "separable_conv2d"):
        cfg = {"in_channels": chan, "out_channels": chan * c.int(1, 2), "kernel_size": k,
               "stride": c.int(1, 2), "padding": c.choice((0, 1, "valid")), "seed": 0}
        if name == "conv2d":
            cfg["groups"] = c.choice((1, chan))
        return cfg
    if name in ("max_pool2d", "avg_pool2d"):
        return {"kernel_size": k, "stride": c.choice((None, 1, 2)), "padding": 0}
    if name in ("batch_norm1d", "batch_norm2d"):
        return {"num_features": chan}
    if name == "linear":
        return {"in_features": chan, "out_features": c.int(1, 4), "seed": 0}
    if name == "dropout":
        return {"p": c.choice((0.0, 0.5, 0.9)), "seed": 0}
    if name == "leaky_relu":
        return {"negative_slope": c.choice((0.0, 0.01, 1.0))}
    if name in ("softmax", "concat"):
        return {"axis": c.choice((1, -1))}
    return _config_issue18(c, name, chan, k)


def _config_issue18(c, name, chan, k):
    """Configs of the layers issue 18 added (None: the layer takes no arguments)."""
    if name == "group_norm":
        return {"num_groups": c.choice((1, chan)), "num_channels": chan, "affine": c.bool()}
    if name == "layer_norm":   # the last axis: the channels of a 2-d input
        return {"normalized_shape": chan, "elementwise_affine": c.bool()}
    if name == "instance_norm2d":
        return {"num_features": chan, "affine": c.bool(), "track_running_stats": c.bool()}
    if name == "gelu":
        return {"approximate": c.choice(("none", "tanh"))}
    if name == "elu":
        return {"alpha": c.choice((1.0, 0.5))}
    if name == "prelu":
        return {"num_parameters": c.choice((1, chan))}
    if name == "conv_transpose2d":
        return {"in_channels": chan, "out_channels": chan * c.int(1, 2), "kernel_size": k,
                "stride": c.int(1, 2), "groups": c.choice((1, chan)), "seed": 0}
    if name == "upsample":
        return c.choice(({"scale_factor": 2}, {"size": [3, 4], "mode": "bilinear"}))
    if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        return {"output_size": c.choice((1, 2, [3, None]))}
    if name == "dropout2d":
        return {"p": c.choice((0.0, 0.5)), "seed": 0}
    return _config_onnx_ops(c, name, chan, k)


def _config_onnx_ops(c, name, chan, k):
    """Configs of the layers added for imported ONNX graphs (None: no arguments)."""
    if name == "elementwise":
        return {"op": c.choice(("add", "sub", "mul", "div"))}
    if name == "elementwise_const":
        return {"op": c.choice(("add", "sub", "mul", "div", "rsub")), "shape": c.choice(([], [1]))}
    if name == "clip":
        return {"min": c.choice((None, -0.5)), "max": c.choice((None, 0.5))}
    if name == "reshape":
        return {"shape": c.choice(([chan], [1, chan]))}
    if name == "transpose":
        return {"perm": c.choice(([0, 2, 1], [0, 1, 3, 2]))}
    if name == "pad":
        return {"pads": [[0, 0], [1, 0], [0, 1]],
                "mode": c.choice(("constant", "reflect", "edge"))}
    if name == "pool2d":
        return {"mode": c.choice(("max", "avg")), "kernel_size": k, "stride": c.int(1, 2),
                "ceil_mode": c.bool(), "count_include_pad": c.bool()}
    if name == "lrn":
        return {"size": c.choice((1, 3))}
    if name == "matmul_const":
        return {"in_features": chan, "out_features": c.int(1, 3), "seed": 0}
    return {}


BAD_CONFIG_VALUES = (-1, 0, 2**40, 1.5, "x", None, [], [1, 2, 3], {"a": 1}, float("nan"), True)


def build_layer(c):
    name = c.choice(fuzzed_layers())
    chan = c.int(1, 3)
    cfg = _config(c, name, chan)
    broken = cfg and c.int(0, 5) == 0
    if broken:
        key = c.choice(sorted(cfg) + ["no_such_key"])
        cfg[key] = c.choice(BAD_CONFIG_VALUES)
    return name, chan, cfg, broken


def _input(c, name, chan, rng):
    ndim = c.choice((2, 4, 4, 4, 3, 1, 5)) if name not in ("linear", "batch_norm1d") else \
        c.choice((2, 2, 3, 4))
    shape = [c.int(1, 3), chan] + [c.int(1, 6) for _ in range(ndim - 2)]
    shape = shape[:ndim]
    mutation = c.choice(("none", "none", "none", "layout", "dtype", "zero", "nan", "channels",
                         "not_array", "float64"))
    dtype = np.float64 if mutation == "float64" else np.float32
    x = rng.standard_normal(shape).astype(dtype)
    if mutation == "layout":
        x, _ = _relayout(c, x)
    elif mutation == "dtype":
        dt = c.choice(BAD_DTYPES)
        x = np.zeros(x.shape, dt) if np.dtype(dt).kind in "OUMV" else x.astype(dt)
    elif mutation == "zero":
        x = np.take(x, [], axis=c.int(0, x.ndim - 1))
    elif mutation == "nan" and x.size:
        x.flat[c.int(0, x.size - 1)] = c.choice((np.nan, np.inf, -np.inf))
    elif mutation == "channels" and x.ndim > 1:
        x = np.concatenate([x, x], axis=1)
    elif mutation == "not_array":
        x = x.tolist()
    return x, mutation


def _check_exc(exc, where, allowed=ALLOWED):
    if not isinstance(exc, allowed):
        raise ContractViolation(f"{where}: raised {type(exc).__name__}: {exc}") from exc
    if not str(exc):
        raise ContractViolation(f"{where}: {type(exc).__name__} without a message") from exc


def run_layer_case(c):
    """Build, run forward and backward once; return an outcome label."""
    name, chan, cfg, broken = build_layer(c)
    where = f"{name}({cfg})"
    try:
        layer = get_layer(name).from_config(cfg)
    except Exception as exc:  # noqa: BLE001 - checked below
        _check_exc(exc, where)
        return f"config-{type(exc).__name__}:{name}"
    rng = np.random.default_rng(c.int(0, 2**16))
    if c.int(0, 9) == 0:  # backward before any forward
        try:
            layer.backward(np.zeros((1, chan), np.float32))
        except Exception as exc:  # noqa: BLE001
            _check_exc(exc, f"{where}.backward before forward", ALLOWED + (RuntimeError,))
    multi = layer.num_inputs is None
    x, mutation = _input(c, name, chan, rng)
    if multi:
        x = [x, x.copy() if isinstance(x, np.ndarray) else x]
    where += f" x[{mutation}]={getattr(x, 'shape', type(x).__name__)}"
    t0 = time.perf_counter()
    try:
        y = layer.forward(x, training=c.bool())
    except Exception as exc:  # noqa: BLE001
        _check_exc(exc, where + ".forward")
        return f"forward-{type(exc).__name__}:{name}"
    finally:
        if time.perf_counter() - t0 > TIME_LIMIT:
            raise ContractViolation(f"{where}.forward took too long")
    x0 = x[0] if multi else x
    if not isinstance(x0, np.ndarray) or mutation in ("dtype", "not_array"):
        raise ContractViolation(f"{where}: forward accepted a bad input (got {type(y)})")
    if not isinstance(y, np.ndarray) or y.dtype != x0.dtype:
        raise ContractViolation(f"{where}: output {type(y).__name__} "
                                f"{getattr(y, 'dtype', '')} for input {x0.dtype}")
    try:
        declared = layer.output_shape([x0.shape[1:]] * 2 if multi else x0.shape[1:])
    except ValueError:
        declared = None  # e.g. an empty axis: output_shape takes sizes >= 1
    if declared is not None and y.shape != (x0.shape[0],) + tuple(declared):
        raise ContractViolation(f"{where}: output shape {y.shape}, output_shape says "
                                f"{declared}")
    if mutation != "nan" and y.size and not np.all(np.isfinite(y)):
        raise ContractViolation(f"{where}: non-finite output for a finite input")
    grad_kind = c.choice(("right", "right", "right", "shape", "dtype", "list", "bigger",
                           "other_float"))
    g = rng.standard_normal(y.shape).astype(y.dtype)
    if grad_kind == "shape" and g.ndim and g.size:
        g = g[..., :-1] if g.shape[-1] > 1 else np.concatenate([g, g], axis=-1)
    elif grad_kind == "bigger":
        g = np.broadcast_to(g, (2,) + g.shape).copy()
    elif grad_kind == "dtype":
        g = g.astype(c.choice(("int64", "float16", "complex128", "object", "bool")))
    elif grad_kind == "other_float":  # float64 for float32 and back: converted, then accepted
        g = g.astype(np.float64 if g.dtype == np.float32 else np.float32)
    elif grad_kind == "list":
        g = g.tolist()
    elif grad_kind != "other_float":
        grad_kind = "right"
    try:
        gx = layer.backward(g)
    except Exception as exc:  # noqa: BLE001
        _check_exc(exc, f"{where}.backward[{grad_kind}]")
        if grad_kind in ("right", "other_float") and not (mutation == "zero" or x0.size == 0):
            raise ContractViolation(f"{where}.backward refused the right gradient: {exc}")
        return f"backward-{type(exc).__name__}:{name}"
    if grad_kind not in ("right", "other_float"):
        raise ContractViolation(f"{where}.backward accepted a {grad_kind} gradient "
                                f"{getattr(g, 'shape', '')} {getattr(g, 'dtype', '')} for "
                                f"output {y.shape} {y.dtype}")
    gxs = gx if multi else [gx]
    for gi in gxs:
        if gi is None:
            continue
        if gi.shape != x0.shape or gi.dtype != x0.dtype:
            raise ContractViolation(f"{where}: input gradient {gi.shape} {gi.dtype} for "
                                    f"input {x0.shape} {x0.dtype}")
    for k, v in layer.grads.items():
        if v.shape != layer.params[k].shape:
            raise ContractViolation(f"{where}: grads[{k}] has shape {v.shape}")
    return f"ok:{name}"
