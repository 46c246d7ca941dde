"""Argument checks shared by the functional ops, the layers and plugin layers.

The one place where arguments are validated: cnnframe.functional's ops, the layer
constructors (cnnframe.layers.base re-exports `check_int`, `check_pair`,
`check_float`, `check_seed` and `as_shape` for plugins) and batch norm all use
these.  Every check runs in Python before a kernel sees the data: a kernel without
bounds checks must only ever receive shapes it can handle.

Messages start with the function or layer name (`fn` / `layer`) when one is given.
"""
import math
import numbers
import os
from typing import NamedTuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _prefix(where):
    return f"{where}: " if where else ""


# --- numbers ------------------------------------------------------------------------------------

def check_int(value, name, minimum=None, layer=""):
    """`value` as an int (not a bool) >= minimum, else TypeError / ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_prefix(layer)}{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{_prefix(layer)}{name} must be >= {minimum}, got {value}")
    return int(value)


def positive_int(value, name):
    return check_int(value, name, 1)


def check_float(value, name, low=None, high=None, layer="", low_open=False):
    """`value` as a finite float in [low, high] (or (low, high] with low_open)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_prefix(layer)}{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"{_prefix(layer)}{name} must be a finite number, got an int of "
                         f"{int(value).bit_length()} bits (beyond float range)") from None
    low_ok = low is None or (value > low if low_open else value >= low)
    if not (math.isfinite(value) and low_ok and (high is None or value <= high)):
        bounds = (f"> {low}" if low_open and high is None else
                  f"in [{'-inf' if low is None else low}, {'inf' if high is None else high}]")
        raise ValueError(f"{_prefix(layer)}{name} must be a finite number {bounds}, got {value}")
    return value


def check_flag(value, name, fn=""):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{_prefix(fn)}{name} must be True or False, got {value!r}")
    return bool(value)


def check_seed(seed, layer=""):
    """None, or an int >= 0."""
    if seed is None:
        return None
    return check_int(seed, "seed", 0, layer)


# --- geometry -----------------------------------------------------------------------------------

def check_pair(value, name, minimum, layer=""):
    """Validate a layer argument given as an int or an [h, w] pair.

    Returns (JSON form: the int or a list, as get_config() stores it; (h, w) tuple).
    """
    if isinstance(value, (tuple, list)) and len(value) == 2:
        pair_ = tuple(check_int(v, name, minimum, layer) for v in value)
        return list(pair_), pair_
    if isinstance(value, (tuple, list)):
        raise ValueError(f"{_prefix(layer)}{name} must be an int or a pair [h, w], got {value!r}")
    v = check_int(value, name, minimum, layer)
    return v, (v, v)


def pair(value, name, minimum):
    """Turn a functional op's int or (h, w) argument into a tuple of two ints >= minimum.

    Values above 2**30 are refused: the kernels index planes with C ints.
    """
    is_int = (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)))
    if is_int(value):
        value = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_int, value)):
        value = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if value[0] < minimum or value[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if max(value) > 2**30:
        raise ValueError(f"{name} is too large: {value}")
    return value


def as_shape(shape, what="input_shape", layer=""):
    """A tuple of ints >= 1 (a shape without the batch dimension)."""
    if isinstance(shape, np.ndarray):
        shape = shape.tolist()
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"{_prefix(layer)}{what} must be a list of ints >= 1 (without the "
                         f"batch dimension), got {shape!r}")
    return tuple(int(s) for s in shape)


def out_size(size, kernel, stride, pad, dilation=1):
    """floor((size + 2*pad - dilation*(kernel-1) - 1) / stride) + 1, as torch.nn.functional.

    Unchecked (callers have validated every value); may be < 1.
    """
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


class ConvGeometry(NamedTuple):
    """One conv2d call's validated geometry: shapes, normalised arguments and output size.

    Built once at the public entry (`conv_geometry`) and passed down to the dispatch
    (functional/conv_dispatch.py) and the algorithms, which read it instead of
    normalising stride, padding and dilation again.  (Not to be confused with
    cnnframe.testing.strategies.ConvGeometry, a hypothesis strategy's draw.)

    n, c, h, w : the input (N, C, H, W); n may be 0.
    f, kh, kw : output channels and kernel size; the weight is (F, C / groups, KH, KW).
    stride, padding, dilation : (int, int) pairs.
    groups : int.
    out_h, out_w : the output size (>= 1).
    """
    n: int
    c: int
    h: int
    w: int
    f: int
    kh: int
    kw: int
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    out_h: int
    out_w: int

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def weight_shape(self):
        return (self.f, self.c // self.groups, self.kh, self.kw)

    @property
    def out_shape(self):
        return (self.n, self.f, self.out_h, self.out_w)

    @property
    def kernel(self):
        return (self.kh, self.kw)

    @property
    def out_pixels(self):
        return self.out_h * self.out_w

    def has_grad_x_conv(self):
        """True if grad_x is a stride-1 conv of grad_y (`grad_x_conv`): stride 1,
        dilation 1 and padding at most K - 1 on each axis."""
        return (self.stride == (1, 1) and self.dilation == (1, 1)
                and self.padding[0] < self.kh and self.padding[1] < self.kw)

    def grad_x_conv(self):
        """The geometry of the stride-1 conv that computes grad_x (see `has_grad_x_conv`):
        grad_y (N, F, OH, OW) with the flipped, transposed kernel (C, F / groups, KH, KW)
        and padding K - 1 - p, whose output is x's (H, W)."""
        return ConvGeometry(self.n, self.f, self.out_h, self.out_w, self.c, self.kh, self.kw,
                            (1, 1), (self.kh - 1 - self.padding[0], self.kw - 1 - self.padding[1]),
                            (1, 1), self.groups, self.h, self.w)


def conv_geometry(x_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                  fn="conv2d"):
    """Validate a conv2d call's shapes and arguments once; return its `ConvGeometry`.

    Parameters
    ----------
    x_shape : (N, C, H, W)
        N >= 0; C, H, W >= 1.
    weight_shape : (F, C / groups, KH, KW)
        Every dimension >= 1.
    stride, padding, dilation : int or (int, int)
        Stride >= 1, padding >= 0, dilation >= 1.
    groups : int
        >= 1, dividing C and F.
    fn : str
        The public function's name, which starts the messages.

    Raises
    ------
    TypeError, ValueError
        Naming the argument, the shapes and what was expected; ValueError too for an
        output size < 1.
    """
    stride = pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    dilation = pair(dilation, "dilation", 1)
    groups = positive_int(groups, "groups")
    n, c, h, w = x_shape
    if c == 0 or h == 0 or w == 0:
        raise ValueError(f"x has shape {tuple(x_shape)}: channels, height and width must be "
                         ">= 1 (only the batch may be empty)")
    f, cg, kh, kw = weight_shape
    if f == 0 or kh == 0 or kw == 0 or cg == 0:
        raise ValueError(f"{fn}: weight has shape {tuple(weight_shape)}; every dimension must "
                         "be >= 1")
    if c % groups or f % groups:
        raise ValueError(f"{fn}: groups={groups} must divide the input channels ({c}) and the "
                         f"output channels ({f}); x has shape {tuple(x_shape)}, weight "
                         f"{tuple(weight_shape)}")
    if cg * groups != c:
        raise ValueError(f"{fn}: weight has shape {tuple(weight_shape)}, so it expects "
                         f"{cg} x groups={groups} = {cg * groups} input channels, "
                         f"but x has shape {tuple(x_shape)} ({c} channels)")
    oh = out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = out_size(w, kw, stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{fn}: output size would be {oh} x {ow} (< 1) for input {h} x {w}, kernel {kh} x {kw}, "
            f"stride {stride}, padding {padding}, dilation {dilation}; the dilated kernel "
            f"({dilation[0] * (kh - 1) + 1} x {dilation[1] * (kw - 1) + 1}) must fit in the "
            f"padded input ({h + 2 * padding[0]} x {w + 2 * padding[1]})")
    return ConvGeometry(int(n), int(c), int(h), int(w), int(f), int(kh), int(kw), stride,
                        padding, dilation, groups, oh, ow)


def conv_output_size(input_size, kernel_size, stride=1, padding=0, dilation=1):
    """Output size of a convolution or pooling window sliding over an input, per axis.

    floor((input_size + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1, as
    torch.nn.Conv2d, MaxPool2d and AvgPool2d (pooling has dilation 1).

    Parameters
    ----------
    input_size : int or (int, int)
        Height and width of the input (>= 1).
    kernel_size : int or (int, int)
        >= 1.
    stride : int or (int, int)
        >= 1.
    padding : int or (int, int)
        Zero padding on each side, >= 0.
    dilation : int or (int, int)
        >= 1.

    Returns
    -------
    int, or (int, int) when any argument is a pair
        The output size; < 1 when the dilated kernel does not fit in the padded
        input (callers report that with their own shapes).

    Raises
    ------
    TypeError, ValueError
        For an argument that is not an int or a pair of ints, or below its minimum.

    Examples
    --------
    >>> conv_output_size(32, 3, stride=2, padding=1)
    16
    >>> conv_output_size((32, 20), 5, padding=(2, 0))
    (32, 16)
    """
    args = dict(input_size=(input_size, 1), kernel_size=(kernel_size, 1), stride=(stride, 1),
                padding=(padding, 0), dilation=(dilation, 1))
    pairs = {name: pair(value, name, minimum) for name, (value, minimum) in args.items()}
    sizes = tuple(out_size(*axis) for axis in zip(*(pairs[name] for name in args)))
    if not any(isinstance(value, (tuple, list)) for value, _ in args.values()):
        return sizes[0]
    return sizes


# --- arrays -------------------------------------------------------------------------------------

def float_ndarray(a, name, fn="", min_ndim=0):
    """Check `a` is a float32/float64 ndarray (any byte order) of >= min_ndim dims."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{_prefix(fn)}{name} must be a numpy ndarray, got {type(a).__name__}")
    if a.dtype.newbyteorder("=") not in FLOAT_DTYPES:
        raise TypeError(f"{_prefix(fn)}{name} must be float32 or float64, got {a.dtype}")
    if a.ndim < min_ndim:
        raise ValueError(f"{_prefix(fn)}{name} must have at least {min_ndim} dimensions "
                         f"(N, C, ...), got shape {a.shape}")
    return a


def same_dtype(a, name, dtype, fn="", other="the input"):
    """Refuse `a` unless its dtype (in native byte order) is `dtype`, the dtype of `other`."""
    if a.dtype.newbyteorder("=") != dtype:
        raise TypeError(f"{_prefix(fn)}{name} has dtype {a.dtype} but {other} has dtype "
                        f"{dtype}; convert one so both match")
    return a


def float_array(x, name, ndim, dtype=None, copy=True):
    """Check x is a float32/float64 ndarray of `ndim` dims; return it C-contiguous.

    A non-contiguous or non-native-byte-order input is copied once.
    `dtype`, when given, is the dtype x must share (e.g. the input's, for weights).
    With copy=False x is only checked and returned as it is (check shapes first, then
    call `contiguous`: copying a huge broadcast array before a shape error costs seconds).
    """
    float_ndarray(x, name)
    if dtype is not None:
        same_dtype(x, name, dtype)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    return contiguous(x) if copy else x


def contiguous(x):
    """x as a C-contiguous array in native byte order (a copy only when needed)."""
    return np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))


def nonempty_planes(x, name):
    if x.shape[1] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} has shape {x.shape}: channels, height and width must be >= 1 "
                         "(only the batch may be empty)")


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return 1 << 46


PHYSICAL_MEMORY = _physical_memory()


def output_array(shape, dtype, fn, what="output", out=None, inputs=()):
    """The array a kernel writes its result into: `out` after checks, else a new one.

    A caller that passes `out` (e.g. a layer reusing its buffer between training
    steps) must give a C-contiguous, writeable array of exactly `shape` and `dtype`
    that does not overlap any of `inputs` (arrays, or a dict naming them for the
    message; None entries are skipped).  A new array is np.empty(shape, dtype),
    refusing sizes beyond the machine's RAM with MemoryError: with memory overcommit
    the allocation itself may succeed and the process then be killed by the OS while
    filling it; refusing first names the sizes instead.
    """
    shape = tuple(shape)
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{fn}: out (for the {what}) must be a numpy ndarray, "
                            f"got {type(out).__name__}")
        if out.shape != shape or out.dtype != dtype:
            raise ValueError(f"{fn}: out (for the {what}) must have shape {shape} and dtype "
                             f"{np.dtype(dtype)}, got shape {out.shape} and dtype {out.dtype}")
        if not (out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"{fn}: out (for the {what}) must be C-contiguous and writeable")
        named = inputs.items() if isinstance(inputs, dict) else ((None, a) for a in inputs)
        for name, a in named:
            if a is not None and np.may_share_memory(out, a):
                which = f" (it overlaps {name})" if name else ""
                raise ValueError(f"{fn}: out (for the {what}) must not overlap the inputs{which}")
        return out
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > PHYSICAL_MEMORY:
        raise MemoryError(f"{fn}: the {what} of shape {shape} needs "
                          f"{nbytes / 2**30:.1f} GiB, more than this machine's "
                          f"{PHYSICAL_MEMORY / 2**30:.1f} GiB of RAM")
    return np.empty(shape, dtype)
