"""The memory a model needs, estimated from its config before anything is allocated.

A config fixes the size of every parameter and activation, so one describing layers
too large for the machine (``out_channels = 20000000``, say) is refused with a
:class:`ModelTooLargeError` naming the node and the bytes, before the layer is built,
instead of after a minute of filling gigabytes or with numpy's bare MemoryError.

What is counted per node, in bytes of the model dtype:

- parameters twice (the weights and their gradients, both allocated when the layer
  is built) and buffers (e.g. running statistics) once;
- its output for one image of the declared input shape, twice (the output and its
  gradient), whether or not the node passes its input through.

A model needs at least the sum over its nodes; batches of more than one image and
optimizer state need more.  The built-in layers with parameters (conv2d, linear,
batch_norm1d/2d) are estimated from their config before they are built; other layers
(plugins included) are measured once built, before the next node is.

The limit is the machine's physical memory (the smaller of its RAM and a cgroup
memory limit), unless the environment variable ``CNNFRAME_MAX_MODEL_BYTES`` or
:func:`set_model_size_limit` sets another.
"""
import math
import numbers
import os

from cnnframe.layers.conv import Conv2d
from cnnframe.layers.linear import Linear
from cnnframe.layers.normalization import BatchNorm1d, BatchNorm2d

LIMIT_ENV = "CNNFRAME_MAX_MODEL_BYTES"
_limit_override = None


class ModelTooLargeError(MemoryError):
    """A model config describes more memory than the limit (see :mod:`cnnframe.graph.sizes`).

    A MemoryError: the config itself is well formed, and the same config builds
    on a machine with more memory or under a higher limit.
    """


def physical_memory():
    """The bytes of memory this process could use: RAM, or a smaller cgroup limit."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: no limit we can tell
        return 1 << 62
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def set_model_size_limit(nbytes):
    """Set the most memory a model may need, in bytes (None: back to the default).

    The default is ``$CNNFRAME_MAX_MODEL_BYTES`` if set, else :func:`physical_memory`.
    """
    global _limit_override
    if nbytes is not None and (isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral)
                               or nbytes < 1):
        raise ValueError(f"set_model_size_limit: nbytes must be an int >= 1 or None, "
                         f"got {nbytes!r}")
    _limit_override = None if nbytes is None else int(nbytes)


def model_size_limit():
    """(the limit in bytes, where it comes from), as :func:`set_model_size_limit` describes."""
    if _limit_override is not None:
        return _limit_override, "set by cnnframe.graph.set_model_size_limit"
    text = os.environ.get(LIMIT_ENV)
    if text:
        if not text.strip().isdigit() or int(text) < 1:
            raise ValueError(f"${LIMIT_ENV} must be a number of bytes >= 1, got {text!r}")
        return int(text), f"set by ${LIMIT_ENV}"
    return physical_memory(), (f"this machine's physical memory; ${LIMIT_ENV} or "
                               "cnnframe.graph.set_model_size_limit() change the limit")


def _fmt(nbytes):
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes:,} bytes ({nbytes / size:.1f} {unit})"
    return f"{nbytes:,} bytes"


class SizeBudget:
    """Adds up what each node needs and raises ModelTooLargeError past the limit.

    Parameters
    ----------
    itemsize : int
        Bytes per value of the model dtype (4 for float32, 8 for float64).
    """

    def __init__(self, itemsize):
        self.itemsize = int(itemsize)
        self.limit, self.limit_source = model_size_limit()
        self.total = 0
        self.largest = None  # (bytes, name)

    def add(self, name, type_name, param_count, buffer_count, output_shape):
        """Count node `name`; `output_shape` (without the batch axis) may be None if unknown.

        Raises
        ------
        ModelTooLargeError
            If the nodes counted so far need more than the limit.
        """
        params = 2 * param_count * self.itemsize
        buffers = buffer_count * self.itemsize
        acts = 0 if output_shape is None else 2 * math.prod(output_shape) * self.itemsize
        need = params + buffers + acts
        self.total += need
        if self.largest is None or need > self.largest[0]:
            self.largest = (need, name)
        if self.total <= self.limit:
            return
        parts = [f"parameters and their gradients {_fmt(params)}"]
        if buffers:
            parts.append(f"buffers {_fmt(buffers)}")
        if output_shape is not None:
            parts.append(f"its output {list(output_shape)} for one image and its gradient "
                         f"{_fmt(acts)}")
        msg = f"node {name!r} ({type_name}) needs {_fmt(need)}: {', '.join(parts)}"
        if self.total > need:
            msg += f"; with the nodes before it the model needs {_fmt(self.total)}"
            if self.largest[1] != name:
                msg += f" (the largest is node {self.largest[1]!r}: {_fmt(self.largest[0])})"
        raise ModelTooLargeError(f"{msg}; that is more than the limit of {_fmt(self.limit)} "
                                 f"({self.limit_source})")


def count_arrays(layer):
    """(parameter values, buffer values) of a built layer."""
    return (sum(int(p.size) for p in layer.params.values()),
            sum(int(b.size) for b in layer.buffers.values()))


# --- estimates from a config, before the layer is built ------------------------------------------

class _Unsure(Exception):
    """A config value the layer's own checks will reject: leave the error to them."""


def _int(cfg, key, default=None, minimum=1):
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise _Unsure
    return int(value)


def _pair(cfg, key, default, minimum):
    value = cfg.get(key, default)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return tuple(_int({"v": v}, "v", minimum=minimum) for v in value)
    v = _int({"v": value}, "v", minimum=minimum)
    return v, v


def _conv2d(cfg, in_shape):
    cin, cout = _int(cfg, "in_channels"), _int(cfg, "out_channels")
    groups = _int(cfg, "groups", 1)
    kh, kw = _pair(cfg, "kernel_size", None, 1)
    params = cout * (cin // groups) * kh * kw + (cout if cfg.get("bias", True) else 0)
    if in_shape is None or len(in_shape) != 3:
        return params, 0, None
    stride, dilation = _pair(cfg, "stride", 1, 1), _pair(cfg, "dilation", 1, 1)
    padding = cfg.get("padding", 0)
    if padding == "same":
        return params, 0, (cout, *in_shape[1:])
    pad = (0, 0) if padding == "valid" else _pair(cfg, "padding", 0, 0)
    # Conv2d.output_shape's formula (test_model_size checks they agree)
    out = [(size + 2 * p - d * (k - 1) - 1) // s + 1
           for size, k, s, p, d in zip(in_shape[1:], (kh, kw), stride, pad, dilation)]
    return params, 0, ((cout, *out) if min(out) >= 1 else None)


def _linear(cfg, in_shape):
    cin, cout = _int(cfg, "in_features"), _int(cfg, "out_features")
    params = cin * cout + (cout if cfg.get("bias", True) else 0)
    return params, 0, (cout,)


def _batch_norm(cfg, in_shape):
    c = _int(cfg, "num_features")
    return 2 * c, 2 * c, in_shape


_ESTIMATES = {Conv2d: _conv2d, Linear: _linear, BatchNorm1d: _batch_norm,
              BatchNorm2d: _batch_norm}


def estimate_from_config(layer_cls, cfg, in_shape):
    """(parameter values, buffer values, output shape or None) of a layer not yet built.

    Parameters
    ----------
    layer_cls : type
        The layer class; only conv2d, linear and batch norm are estimated.
    cfg : dict
        Its config.
    in_shape : tuple of int or None
        Its input shape without the batch axis, if known.

    Returns
    -------
    tuple, or None for other classes and for configs the layer will reject itself.
    """
    estimate = _ESTIMATES.get(layer_cls)
    if estimate is None or not isinstance(cfg, dict):
        return None
    try:
        return estimate(cfg, in_shape)
    except _Unsure:
        return None
