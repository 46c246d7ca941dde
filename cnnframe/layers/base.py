"""The Layer protocol shared by built-in and plugin layers, and weight initialisers.

A layer is a small object with

- ``forward(x, training=True) -> y``: computes the output and caches what
  ``backward`` needs.  Multi-input layers (``num_inputs = None``: add, concat)
  take a list of arrays.
- ``backward(grad_y) -> grad_x``: the gradient with respect to the input of the
  latest forward call (a list for multi-input layers); it also *overwrites*
  ``self.grads`` (gradients are not accumulated across calls).  When
  ``self.needs_input_grad`` is False (set by a Model for layers fed only by
  graph inputs when no input gradient is wanted) a layer may skip that work and
  return None.  The dtype rule (PyTorch autograd's): each input gradient has the
  dtype of its forward input; a float32 or float64 ``grad_y`` of the other dtype is
  converted to the output's dtype before the layer's own backward sees it; a
  ``grad_y`` that is not a float32/float64 array of the output's shape is a
  TypeError/ValueError.  The base class applies this to every subclass.
- ``params`` / ``grads`` (same keys and shapes) and ``buffers`` (state that is
  saved but not trained, e.g. batch-norm running statistics): dicts of
  ndarrays.  The arrays are allocated once and updated in place, so references
  to them (optimizers, ``Model.params``) stay valid.
- ``output_shape(input_shape)``: shapes *without* the batch dimension.
- ``get_config()`` / ``from_config(cfg)``: plain JSON values mirroring ``__init__``.
- ``astype(dtype)``: float32 by default; float64 for gradient checks.
- ``to_onnx(ctx, inputs, name)``: optional, the layer's ONNX form for
  :func:`cnnframe.onnx.export` (built-in layers are mapped by the exporter; see
  :meth:`Layer.to_onnx`).

Layers never modify their inputs (``x`` or ``grad_y``) in place.  Outputs are
fresh arrays unless ``reuse_buffers`` is True (a Model sets it for internal
nodes): then a layer may write each call's result into the same buffer, which
saves page-faulting fresh memory (about 1 ms per MiB) on every step.
"""
import functools
import inspect
import math

import numpy as np

# The argument checks of layer constructors (and of plugin layers, which import them
# from here) live with the functional ops' in one module.
from cnnframe.functional._args import (FLOAT_DTYPES, as_shape, check_float,  # noqa: F401
                                       check_int, check_pair, check_seed)

INITIALIZERS = ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "lecun_normal",
                "lecun_uniform", "zeros", "ones", "dirac", "orthogonal", "constant")
# Options of the initialisers that take some (given as {type = "constant", value = 0.1}).
_INIT_OPTIONS = {"constant": {"value": None}, "orthogonal": {"gain": 1.0}}
_REGISTERED_INITIALIZERS = {}   # name -> callable(shape, rng, fan_in, fan_out)


def register_initializer(name, fn):
    """Make a Python initialiser usable by name in layer configs (``init = "name"``).

    Parameters
    ----------
    name : str
        Not one of `INITIALIZERS`.
    fn : callable
        ``fn(shape, rng, fan_in, fan_out) -> array of shape`` (float values; `rng` is a
        numpy Generator seeded from the layer's seed).

    A layer given `fn` itself (or its name) stores the name in its config, so models
    using it save and load -- in processes that registered the same name.  A function
    that was never registered still initialises a layer, but such a layer has no config:
    ``get_config`` (and so ``Model.save`` and ``cnnframe train``'s model file) raises a
    TypeError saying to register it.

    Returns
    -------
    fn (so it can be used as a decorator: ``register_initializer("mine", fn)``).
    """
    if not isinstance(name, str) or not name or name in INITIALIZERS:
        raise ValueError(f"register_initializer: name must be a new string (not one of "
                         f"{', '.join(INITIALIZERS)}), got {name!r}")
    if not callable(fn):
        raise TypeError(f"register_initializer: fn must be callable, got {type(fn).__name__}")
    _REGISTERED_INITIALIZERS[name] = fn
    return fn


def _init_names():
    return (*(n for n in INITIALIZERS if n != "constant"), *_REGISTERED_INITIALIZERS)


def check_init(init, name="init"):
    """Validate an initialiser; returns what the layer stores (and its config holds).

    `init` is a name (`INITIALIZERS` or a registered one), a table ``{"type": name,
    **options}`` (``{"type": "constant", "value": 0.1}``, ``{"type": "orthogonal",
    "gain": 2.0}``), or a callable ``fn(shape, rng, fan_in, fan_out)``: a registered
    function becomes its name; another one is kept as it is (see `register_initializer`).
    """
    if callable(init) and not isinstance(init, (str, dict)):
        for reg_name, fn in _REGISTERED_INITIALIZERS.items():
            if fn is init:
                return reg_name
        return init
    if isinstance(init, str):
        if init == "constant":
            raise ValueError(f"{name}: \"constant\" needs a value: {name} = {{type = "
                             f"\"constant\", value = 0.1}}")
        if init not in _init_names():
            raise ValueError(f"{name} must be one of {', '.join(_init_names())}, a table "
                             f"{{type = \"constant\", value = ...}} or a callable; got {init!r}")
        return init
    if isinstance(init, dict):
        kind = init.get("type")
        if kind not in INITIALIZERS and kind not in _REGISTERED_INITIALIZERS:
            raise ValueError(f"{name}: a table needs 'type', one of "
                             f"{', '.join((*INITIALIZERS, *_REGISTERED_INITIALIZERS))}; "
                             f"got {init!r}")
        options = _INIT_OPTIONS.get(kind, {})
        if kind == "dirac":  # the filters the identity leaves out: another initialiser
            unknown = [k for k in init if k not in ("type", "rest")]
            if unknown:
                raise ValueError(f"{name}: unknown key(s) {', '.join(map(repr, unknown))} for "
                                 f"'dirac'; valid keys: type, rest")
            out = dict(init)
            if "rest" in out:
                rest = out["rest"]
                if rest == "dirac" or (isinstance(rest, dict) and rest.get("type") == "dirac") \
                        or callable(rest):
                    raise ValueError(f"{name}: dirac rest must be an initialiser name or table "
                                     f"other than dirac, got {rest!r}")
                out["rest"] = check_init(rest, f"{name}.rest")
            return out
        unknown = [k for k in init if k != "type" and k not in options]
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {', '.join(map(repr, unknown))} for "
                             f"{kind!r}; valid keys: {', '.join(['type', *options])}")
        for key, default in options.items():
            value = init.get(key, default)
            if value is None:
                raise ValueError(f"{name}: {kind!r} needs {key!r}, e.g. {{type = {kind!r}, "
                                 f"{key} = 0.1}}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f"{name}: {key} must be a finite number, got {value!r}")
        return dict(init)
    raise ValueError(f"{name} must be an initialiser name ({', '.join(_init_names())}), a "
                     f"table {{type = ..., ...}} or a callable; got {init!r}")


def _dirac(shape, groups):
    """Identity weights: channel d of each group passes to channel d (PyTorch's dirac_)."""
    if len(shape) < 2:
        raise ValueError(f"init \"dirac\" needs a weight of 2 or more dimensions, got shape "
                         f"{tuple(shape)} (use it for conv or linear weights, not biases)")
    w = np.zeros(shape)
    if shape[0] % groups:
        raise ValueError(f"init \"dirac\": groups={groups} must divide {shape[0]}")
    per_group = shape[0] // groups
    center = tuple(k // 2 for k in shape[2:])
    for g in range(groups):
        for d in range(min(per_group, shape[1])):
            w[(g * per_group + d, d, *center)] = 1.0
    return w


def _orthogonal(shape, rng, gain):
    """A (semi-)orthogonal matrix over (shape[0], prod(shape[1:])), as PyTorch's orthogonal_."""
    if len(shape) < 2:
        raise ValueError(f"init \"orthogonal\" needs a weight of 2 or more dimensions, got "
                         f"shape {tuple(shape)}")
    rows, cols = shape[0], math.prod(shape[1:])
    a = rng.standard_normal((rows, cols))
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


def init_array(shape, init, rng, fan_in, fan_out, dtype=np.float32, groups=1):
    """A freshly initialised array of `shape`.

    Parameters
    ----------
    shape : tuple of int
    init : str, dict or callable (see `check_init`)
        "he_normal" (std sqrt(2 / fan_in)), "he_uniform" (bound sqrt(6 / fan_in)),
        "xavier_normal" (std sqrt(2 / (fan_in + fan_out))), "xavier_uniform"
        (bound sqrt(6 / (fan_in + fan_out))), "lecun_normal" (std sqrt(1 / fan_in)),
        "lecun_uniform" (bound sqrt(1 / fan_in), PyTorch's default for conv/linear
        weights and, with the weight's fans, biases), "zeros", "ones",
        {"type": "constant", "value": v}, "dirac" (identity: channel d of each group
        to channel d at the kernel centre; 2-D: the identity matrix; the filters beyond
        the input channels are zero, or with {"type": "dirac", "rest": init} drawn by
        that initialiser: airbench's partial identity),
        "orthogonal" / {"type": "orthogonal", "gain": g} (a semi-orthogonal matrix over
        (shape[0], the rest), times g), a registered name, or a callable
        ``fn(shape, rng, fan_in, fan_out)``.
    rng : numpy.random.Generator
    fan_in, fan_out : int
        For a conv weight (Cout, Cin/groups, KH, KW): Cin/groups*KH*KW and Cout*KH*KW.
    dtype : float dtype
    groups : int
        Channel groups of a conv weight (for "dirac").

    Returns
    -------
    ndarray of `shape` and `dtype` (drawn in float64, so float32 and float64
    layers built from the same seed hold the same values up to rounding).

    Raises
    ------
    ValueError
        An unknown initialiser, "dirac"/"orthogonal" for a 1-D shape, or a callable
        returning an array of another shape or non-finite values.
    """
    init = check_init(init)
    shape = tuple(int(s) for s in shape)
    fan_in, fan_out = max(int(fan_in), 1), max(int(fan_out), 1)
    options = init if isinstance(init, dict) else {}
    kind = init["type"] if isinstance(init, dict) else init
    if isinstance(kind, str) and kind in _REGISTERED_INITIALIZERS:
        kind = _REGISTERED_INITIALIZERS[kind]
    if callable(kind):
        out = np.asarray(kind(shape, rng, fan_in, fan_out))
        what = getattr(kind, "__qualname__", repr(kind))
        if out.shape != shape or out.dtype.kind not in "fiub":
            raise ValueError(f"initialiser {what} returned {out.dtype} shape {out.shape}, "
                             f"expected numbers of shape {shape}")
        if not np.isfinite(out).all():
            raise ValueError(f"initialiser {what} returned non-finite values")
        return out.astype(dtype)
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if kind == "ones":
        return np.ones(shape, dtype)
    if kind == "constant":
        return np.full(shape, options["value"], dtype)
    if kind == "dirac":
        w = _dirac(shape, groups)
        if "rest" in options and shape[0] // groups > shape[1]:
            # airbench's partial identity: the first in-channels filters of each group
            # pass their channel on, the others are drawn as `rest` says.
            rest = init_array(shape, options["rest"], rng, fan_in, fan_out, np.float64, groups)
            per_group = shape[0] // groups
            drawn = (np.arange(shape[0]) % per_group) >= shape[1]
            w[drawn] = rest[drawn]
        return w.astype(dtype)
    if kind == "orthogonal":
        return _orthogonal(shape, rng, float(options.get("gain", 1.0))).astype(dtype)
    if kind.endswith("_normal"):
        var = {"he": 2.0 / fan_in, "xavier": 2.0 / (fan_in + fan_out), "lecun": 1.0 / fan_in}
        return (rng.standard_normal(shape) * math.sqrt(var[kind[:-7]])).astype(dtype)
    bound = {"he": 6.0 / fan_in, "xavier": 6.0 / (fan_in + fan_out), "lecun": 1.0 / fan_in}
    b = math.sqrt(bound[kind[:-8]])
    return rng.uniform(-b, b, shape).astype(dtype)


def to_json(value):
    """Tuples -> lists and numpy scalars -> Python numbers, recursively."""
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dtypes_of(x):
    """The dtype of each input (a tuple for a list of inputs; None for non-arrays)."""
    if isinstance(x, (list, tuple)):
        return tuple(getattr(a, "dtype", None) for a in x)
    return getattr(x, "dtype", None)


def _recording_forward(forward):
    """Wrap a subclass's forward to remember its output's shape and dtype and its
    inputs' dtypes (for backward)."""
    @functools.wraps(forward)
    def wrapper(self, x, training=True):
        y = forward(self, x, training)
        self._output_spec = (y.shape, y.dtype) if isinstance(y, np.ndarray) else None
        self._input_dtypes = _dtypes_of(x)
        return y
    wrapper._protocol_wrapper = True
    return wrapper


def _cast_to(grad, dtype):
    """`grad` in float `dtype` (other dtypes, e.g. of an integer input, are left alone)."""
    if (isinstance(grad, np.ndarray) and dtype is not None and dtype.kind == "f"
            and grad.dtype != dtype):
        return grad.astype(dtype)
    return grad


def _checked_backward(backward):
    """Wrap a subclass's backward to apply the grad_y rule of the Layer protocol.

    grad_y must be a float32 or float64 array of the latest output's shape (without
    this a wrong-shaped gradient could broadcast silently into a wrong-shaped input
    gradient, and a list or an int array fail deep inside numpy).  A grad_y of the
    other float dtype is converted to the output's dtype, and each input gradient is
    returned in the dtype of its forward input, as in PyTorch's autograd.
    """
    @functools.wraps(backward)
    def wrapper(self, grad_y):
        name = self.type_name or type(self).__name__
        if not hasattr(self, "_output_spec"):
            raise RuntimeError(f"{name}: backward called before forward")
        if self._output_spec is not None:
            shape, dtype = self._output_spec
            if not isinstance(grad_y, np.ndarray):
                raise TypeError(f"{name}: grad_y must be a numpy ndarray of shape {shape} "
                                f"(the output of forward), got {type(grad_y).__name__}")
            if grad_y.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{name}: grad_y must be float32 or float64 (the output of "
                                f"forward is {dtype}), got {grad_y.dtype}")
            if grad_y.shape != shape:
                raise ValueError(f"{name}: grad_y has shape {grad_y.shape} but the output of "
                                 f"forward has shape {shape}")
            grad_y = _cast_to(grad_y, dtype)
        grad_x = backward(self, grad_y)
        dtypes = self._input_dtypes
        if (isinstance(dtypes, tuple) and isinstance(grad_x, (list, tuple))
                and len(grad_x) == len(dtypes)):
            return type(grad_x)(_cast_to(g, d) for g, d in zip(grad_x, dtypes))
        return _cast_to(grad_x, dtypes)
    wrapper._protocol_wrapper = True
    return wrapper


class Layer:
    """Base class of every layer.

    Subclasses call ``super().__init__()`` first, create their parameters with
    :meth:`add_param` and buffers with :meth:`add_buffer`, and implement
    ``forward``, ``backward`` and (if the shape changes) ``output_shape``.
    ``get_config`` by default reads the attributes named like the ``__init__``
    arguments, so storing each argument under its own name is enough.

    The base class wraps every subclass's ``forward`` and ``backward``, so a
    layer's own ``backward`` may rely on these rules without checking anything:

    - ``backward`` before any ``forward`` raises RuntimeError;
    - ``grad_y`` must be a float32 or float64 ndarray with the shape of the
      latest output (else TypeError or ValueError naming grad_y, its dtype or
      shape and the output's);
    - a ``grad_y`` of the other float dtype is converted to the output's dtype
      first, and each returned input gradient is converted, if needed, to the
      dtype of its forward input (as PyTorch's autograd does).

    Class attributes
    ----------------
    type_name : str
        The registry name (set by ``@register_layer``).
    num_inputs : int or None
        1 for layers taking one array; None for layers taking a list (add, concat).
    stochastic : bool
        True for layers drawing randomness in forward; they draw all of it from
        ``self.rng`` (a numpy Generator), so saving ``rng.bit_generator.state`` and
        restoring it replays a forward pass exactly.
    aliases : bool
        True if forward or backward may return (a view of) its argument, not an
        array the layer owns.  A Model uses this to decide which buffers it may reuse.
    """

    type_name = None
    num_inputs = 1
    stochastic = False
    aliases = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Every layer, built-in or plugin, follows the grad_y rule.  Wrap the forward and
        # backward the class resolves to unless they already are wrappers (inherited from
        # a wrapped Layer subclass), so methods from a mixin are wrapped too.
        for method, wrap in (("forward", _recording_forward), ("backward", _checked_backward)):
            fn = getattr(cls, method)
            if not getattr(fn, "_protocol_wrapper", False):
                setattr(cls, method, wrap(fn))

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.dtype = np.dtype(np.float32)
        self.needs_input_grad = True
        self.reuse_buffers = False
        self.frozen_params = set()  # names of params the optimizers leave alone
        self._scratch = {}
        self._planned = {}  # key -> array a Model's memory plan gives this key (see _buffer)

    # --- parameters and state ------------------------------------------------------------------
    def add_param(self, name, value):
        """Register a trainable parameter (converted to the layer dtype) and its zeroed gradient."""
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def add_buffer(self, name, value):
        """Register saved, untrained state (e.g. running statistics)."""
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self.buffers[name] = value
        return value

    def reset_parameters(self, seed=None):
        """Re-draw the initial parameters (and a stochastic layer's ``rng``) from `seed`.

        Layers with parameters override this; a Model with a top-level seed calls
        it with a per-node seed for nodes whose own ``seed`` is None.
        """
        if self.stochastic:
            self.rng = np.random.default_rng(seed)

    def astype(self, dtype):
        """Convert params, grads and buffers to `dtype` (float32/float64) in place; return self."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{self.type_name or type(self).__name__}: dtype must be float32 or "
                            f"float64, got {dtype}")
        if dtype != self.dtype:
            for store in (self.params, self.grads, self.buffers):
                for k, v in store.items():
                    store[k] = v.astype(dtype)
            self._scratch.clear()
            self._planned = {}
            self.dtype = dtype
        return self

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    @property
    def trainable(self):
        """False when every parameter is frozen (see ``frozen_params``); True without params.

        Setting it freezes or unfreezes all the layer's parameters: optimizers skip
        frozen ones (no update, no weight decay) and a Model skips backward work that
        only frozen parameters would need.  Buffers (batch-norm running statistics)
        still update in training-mode forward passes, as in PyTorch.
        """
        return not self.params or not set(self.params) <= set(self.frozen_params)

    @trainable.setter
    def trainable(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{self.type_name or type(self).__name__}: trainable must be True "
                            f"or False, got {value!r}")
        self.frozen_params = set() if value else set(self.params)

    def num_params(self):
        return int(sum(p.size for p in self.params.values()))

    def _buffer(self, key, shape, dtype=None):
        """An uninitialised array of `shape`: reused across calls when ``reuse_buffers`` is on.

        A Model planning its memory (cnnframe.graph.memory) hands the layer the array for
        `key` in ``_planned``; it is used when its shape and dtype are the ones asked for.
        """
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        planned = getattr(self, "_planned", None)
        if planned:
            buf = planned.get(key)
            if buf is not None and buf.shape == tuple(shape) and buf.dtype == dtype:
                return buf
        if not self.reuse_buffers:
            return np.empty(shape, dtype)
        size = math.prod(shape)
        buf = self._scratch.get(key)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = np.empty(size, dtype)
            self._scratch[key] = buf
        return buf[:size].reshape(shape)

    def _check_input(self, x, ndim=None, what="x"):
        """Check x is a float ndarray (of the parameter dtype, if the layer has parameters)."""
        name = self.type_name or type(self).__name__
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: {what} must be a numpy ndarray, got {type(x).__name__}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: {what} must be float32 or float64, got {x.dtype}")
        if self.params and x.dtype != self.dtype:
            raise TypeError(f"{name}: {what} is {x.dtype} but the layer's parameters are "
                            f"{self.dtype}; convert the input or call .astype({x.dtype.name})")
        if ndim is not None:
            ok = x.ndim in ndim if isinstance(ndim, tuple) else x.ndim == ndim
            if not ok:
                raise ValueError(f"{name}: {what} must have {ndim} dimensions (batch first), "
                                 f"got shape {x.shape}")
        return x

    # --- the protocol ----------------------------------------------------------------------------
    def forward(self, x, training=True):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_y):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, x, training=True):
        return self.forward(x, training)

    def output_shape(self, input_shape):
        """The output shape for `input_shape` (both without the batch dimension).

        The default keeps the shape (element-wise layers); override otherwise.
        Raises ValueError for inputs the layer cannot take.
        """
        if self.num_inputs is None:
            raise NotImplementedError(f"{type(self).__name__}.output_shape")
        return as_shape(input_shape, layer=self.type_name or type(self).__name__)

    def flops(self, input_shape):
        """Forward FLOPs per sample (None if unknown).  Convention: see cnnframe.graph.summary."""
        return None

    def receptive_step(self, input_shape):
        """How the layer grows receptive fields: ((kh, kw), (sh, sw)) with the dilated kernel
        extent and stride, or None if each output sees the whole input (global pooling,
        linear).  Element-wise layers keep the default ((1, 1), (1, 1))."""
        return (1, 1), (1, 1)

    def to_onnx(self, ctx, inputs, name):
        """Write this layer (in inference mode) into an ONNX graph; return its output name.

        :func:`cnnframe.onnx.export` maps the built-in layers itself; a plugin layer
        overrides this method to be exportable.  `inputs` are the names of the tensors
        feeding the node (one per node input) and `name` is the node's name.  `ctx`
        (:class:`cnnframe.onnx.export.ExportContext`) adds to the graph:

        - ``ctx.node(op_type, inputs, outputs=None, **attributes)``: an ONNX node; returns
          its output name (a list for ``outputs=k`` outputs);
        - ``ctx.constant(array, name=None)``: an initializer (float arrays in the model
          dtype, integer arrays as int64); returns its name;
        - ``ctx.opset`` (the target opset), ``ctx.dtype``, ``ctx.shape(tensor)`` (the
          shape of an input tensor, batch dimension None).

        For example a layer computing ``x * sigmoid(x)``::

            def to_onnx(self, ctx, inputs, name):
                return ctx.node("Mul", [inputs[0], ctx.node("Sigmoid", inputs)], outputs=[name])

        Raises
        ------
        NotImplementedError
            Naming the node and the layer type (this default).
        """
        raise NotImplementedError(
            f"node {name!r} ({self.type_name or type(self).__name__}, class "
            f"{type(self).__module__}.{type(self).__qualname__}): this layer type has no ONNX "
            "export; give its class a to_onnx(ctx, inputs, name) method (see "
            "cnnframe.layers.Layer.to_onnx)")

    # --- configuration ----------------------------------------------------------------------
    @classmethod
    def config_keys(cls):
        """{key: default} of the constructor (inspect.Parameter.empty for required keys)."""
        sig = inspect.signature(cls.__init__)
        return {p.name: p.default for p in list(sig.parameters.values())[1:]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def get_config(self):
        """Plain JSON values mirroring ``__init__`` (read from attributes of the same names)."""
        cfg = {}
        for key in self.config_keys():
            if not hasattr(self, key):
                raise NotImplementedError(
                    f"{type(self).__name__}: store the __init__ argument {key!r} as self.{key} "
                    "or override get_config()")
            value = getattr(self, key)
            if callable(value) and not isinstance(value, type):
                what = getattr(value, "__qualname__", repr(value))
                raise TypeError(
                    f"{self.type_name or type(self).__name__}: {key} is the Python function "
                    f"{what}, which a config cannot hold; register it with "
                    f"cnnframe.layers.register_initializer(\"name\", {what}) and pass it (or "
                    "the name), so that the config stores the name")
            cfg[key] = to_json(value)
        return cfg

    @classmethod
    def from_config(cls, cfg):
        """Build a layer from ``get_config()`` output; unknown or missing keys raise ValueError."""
        name = cls.type_name or cls.__name__
        if not isinstance(cfg, dict):
            raise ValueError(f"{name}: config must be a dict, got {type(cfg).__name__}")
        keys = cls.config_keys()
        sig = inspect.signature(cls.__init__)
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        unknown = [k for k in cfg if k not in keys]
        if unknown and not takes_kwargs:
            raise ValueError(f"{name}: unknown config key{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))}; valid keys: "
                             f"{', '.join(keys) or '(none)'}")
        missing = [k for k, d in keys.items() if d is inspect.Parameter.empty and k not in cfg]
        if missing:
            raise ValueError(f"{name}: missing required config key"
                             f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; "
                             f"valid keys: {', '.join(keys)}")
        return cls(**cfg)

    def __repr__(self):
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except (NotImplementedError, TypeError):
            args = "..."
        return f"{type(self).__name__}({args})"

    # --- threads ---------------------------------------------------------------------------------
    def thread_copy(self):
        """A copy of this layer for running the same model in another thread.

        A Model gives each further thread that calls it such copies (see
        :class:`cnnframe.graph.Model`, "Threads").  The copy shares the ``params``,
        ``grads`` and ``buffers`` dicts and every other attribute's value with this layer,
        so optimizer steps and ``load_state_dict`` reach it, but it owns its output
        buffers, and the attributes forward sets (``self._x = x``) are set on the copy
        alone.  Other dict, list and set attributes are copied one level deep (the arrays
        in them stay shared), so per-call state kept in such a container is the copy's
        own too.  A layer keeping per-call state anywhere else (an array it writes into
        in place, say) must override this method and give the copy its own.
        """
        twin = type(self).__new__(type(self))
        shared = (self.params, self.grads, self.buffers)
        # a snapshot: the thread using this layer may be adding attributes right now
        for key, value in self.__dict__.copy().items():
            if isinstance(value, (dict, list, set)) and not any(value is s for s in shared):
                value = value.copy()
            twin.__dict__[key] = value
        twin._scratch = {}
        twin._planned = {}  # the Model gives each thread's copies views of that thread's arena
        twin.__dict__.pop("_output_spec", None)  # no forward yet: backward refuses to run
        return twin
