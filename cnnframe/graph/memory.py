"""Training-memory planning: where each layer's output, input gradient and saved arrays live.

A training step runs every node's forward in the model's order, then every node's
backward in the reverse order: with n nodes, node k's forward is step k and its
backward step 2n - 1 - k.  Each array a layer writes -- its output, its input
gradient, an array it keeps for backward (max pooling's argmax) -- is needed from
the step that writes it to the last step that reads it:

- an output until the last forward that reads it, and until the backward of every
  layer that keeps it (the layer itself if its backward reads its output, as ReLU's
  does; each consumer whose backward reads its input, as a convolution's does);
- an input gradient until the backward of the node that produced that input (for
  layers that pass gradients through, as flatten and add do, until the backward of
  the node that finally reads it);
- a saved array until the layer's own backward.

Arrays whose lifetimes do not overlap share memory: the planner places them in one
byte arena per thread (greedy by size, the largest first, each at the lowest offset
free for its whole lifetime), and the Model hands every layer views into it through
``Layer._planned`` (``Layer._buffer`` returns them).  So a gradient takes the place of
activations whose backward is done, and the peak is about what forward keeps for
backward plus the few gradients live at once.

The planner knows what the built-in layers keep (:data:`LAYER_MEMORY`); it assumes
any other layer keeps its input, and its own arrays stay its own.  Outputs handed
to the caller (model outputs and views of them) and input gradients handed to the
caller are never planned: they are fresh arrays, as before.
"""
import math
from collections import namedtuple

import numpy as np

# Offsets (and the arena start) are multiples of this many bytes: cache lines, SIMD loads.
ALIGN = 64


class LayerMemory(namedtuple("LayerMemory", "out_key grad_key keeps_input keeps_output saved "
                                             "forward_temp backward_temp",
                             defaults=((), ()))):
    """What a layer type writes and keeps, for the planner.

    out_key : str or None
        ``Layer._buffer`` key of the forward output; None: forward returns (a view of)
        its input.
    grad_key : str or None
        ``_buffer`` key of the input gradient (single-input layers); None: backward
        returns grad_y or views of it.
    keeps_input, keeps_output : bool
        Whether backward reads the forward input / output.
    saved : tuple of (key, dtype)
        Further arrays of the output's shape that forward writes and backward reads
        (dtype None: the model's).
    forward_temp, backward_temp : tuple of (key, dtype)
        Arrays of the output's shape used within forward / within backward only.
    """


def _relu(layer):
    if layer.fused:  # the batch norm before it applies max(., 0): passes x and grad_y through
        return LayerMemory(None, None, False, False, ())
    return LayerMemory("y", "gx", False, True, ())


def _max_pool(layer):
    if layer.keep_argmax:
        return LayerMemory("y", "grad_x", False, False, (("argmax", np.int64),))
    # backward recomputes the argmax from the input (see argmax_recomputable)
    # (and rewrites its own output with the same values on the way)
    return LayerMemory("y", "grad_x", True, True, (), (("argmax", np.int64),),
                       (("argmax_again", np.int64),))


def _batch_norm(layer):
    return LayerMemory("y", "gx", True, bool(layer.fused_relu), ())


def _layer_memory_table():
    from cnnframe.layers.activations import ReLU
    from cnnframe.layers.conv import Conv2d
    from cnnframe.layers.linear import Linear
    from cnnframe.layers.merge import Add, Concat
    from cnnframe.layers.normalization import BatchNorm1d, BatchNorm2d
    from cnnframe.layers.pooling import AvgPool2d, MaxPool2d
    from cnnframe.layers.reshape import Flatten, Identity
    return {
        Conv2d: LayerMemory("y", "grad_x", True, False, ()),
        BatchNorm1d: _batch_norm,
        BatchNorm2d: _batch_norm,
        ReLU: _relu,
        MaxPool2d: _max_pool,
        AvgPool2d: LayerMemory("y", "grad_x", False, False, ()),
        Linear: LayerMemory("y", "gx", True, False, ()),
        Flatten: LayerMemory(None, None, False, False, ()),
        Identity: LayerMemory(None, None, False, False, ()),
        Add: LayerMemory("y", None, False, False, ()),
        Concat: LayerMemory("y", None, False, False, ()),
    }


_TABLE = None


def layer_memory(layer):
    """The :class:`LayerMemory` of `layer`, or None for a type the planner does not know
    (subclasses included: they may keep other things)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _layer_memory_table()
    entry = _TABLE.get(type(layer))
    return entry(layer) if callable(entry) else entry


class PlannedBuffer(namedtuple("PlannedBuffer",
                               "node key kind shape dtype nbytes start end offset")):
    """One planned array: node, its ``_buffer`` key, kind ("output", "gradient" or
    "saved"), shape (with the batch axis), dtype, size in bytes, first and last step
    (inclusive) and byte offset in the arena."""


class MemoryPlan:
    """Where every planned array of a training step at one batch size lives.

    Attributes
    ----------
    batch_size : int
    buffers : list of PlannedBuffer
    nbytes : int
        Arena size: the largest offset + size (a multiple of ALIGN).
    steps : int
        2 x the number of nodes.
    """

    def __init__(self, batch_size, buffers, steps):
        self.batch_size = batch_size
        self.buffers = buffers
        self.steps = steps
        self.nbytes = max((b.offset + _aligned(b.nbytes) for b in buffers), default=0)
        self._by_node = {}
        for b in buffers:
            self._by_node.setdefault(b.node, []).append(b)

    def live_bytes(self, step):
        """Bytes of the planned arrays live at `step`."""
        return sum(b.nbytes for b in self.buffers if b.start <= step <= b.end)

    def views(self, arena, node):
        """{key: ndarray view into `arena`} for `node`'s planned arrays."""
        mine = self._by_node.get(node, ())
        if not mine:
            return {}
        base = _arena_base(arena)
        out = {}
        for b in mine:
            raw = arena[base + b.offset: base + b.offset + b.nbytes]
            out[b.key] = raw.view(b.dtype).reshape(b.shape)
        return out


def _aligned(n):
    return -(-n // ALIGN) * ALIGN


def _arena_base(arena):
    """Offset into `arena` (a uint8 array) of its first ALIGN-aligned byte."""
    return -arena.ctypes.data % ALIGN


def new_arena(nbytes):
    """An uninitialised uint8 arena holding `nbytes` from an ALIGN-aligned start
    (pages are touched, and so resident, only as the layers write them)."""
    return np.empty(nbytes + ALIGN, np.uint8)


def arena_capacity(arena):
    return 0 if arena is None else arena.size - _arena_base(arena)


def lifetimes(model):
    """Per-node lifetime facts of one training step of `model`.

    Returns
    -------
    (fwd, bwd, value_end, grad_end, specs) where fwd[name] / bwd[name] are a node's
    forward / backward steps, value_end(name) the last step reading that node's output
    (or memory it shares), grad_end(name) the last step reading the gradient with
    respect to that node's output, and specs[name] its LayerMemory (or None).
    """
    order = model._order
    n = len(order)
    fwd = {name: k for k, name in enumerate(order)}
    bwd = {name: 2 * n - 1 - k for k, name in enumerate(order)}
    specs = {name: layer_memory(model.nodes[name]) for name in order}

    def output_aliases(name):
        spec = specs[name]
        return model.nodes[name].aliases if spec is None else spec.out_key is None

    def grad_aliases(name):
        spec = specs[name]
        return model.nodes[name].aliases if spec is None else spec.grad_key is None

    value_cache, grad_cache = {}, {}

    def value_end(v):
        if v not in value_cache:
            spec = specs[v]
            end = fwd[v]
            if spec is None or spec.keeps_output:
                end = bwd[v]
            for c in model._consumers[v]:
                cspec = specs[c]
                end = max(end, fwd[c])
                if cspec is None or cspec.keeps_input:
                    end = max(end, bwd[c])
                if output_aliases(c):  # c's output may be a view of v
                    end = max(end, value_end(c))
            value_cache[v] = end
        return value_cache[v]

    def grad_end(v):
        if v not in grad_cache:
            end = bwd[v]
            if grad_aliases(v):  # v hands grad_y (or views of it) on to its inputs
                for i in model.node_inputs[v]:
                    if i in model.nodes:
                        end = max(end, grad_end(i))
            grad_cache[v] = end
        return grad_cache[v]

    return fwd, bwd, value_end, grad_end, specs


def argmax_recomputable(model):
    """Names of the max-pooling nodes whose backward may recompute the argmax from the input
    (``MaxPool2d.keep_argmax = False``) at no memory cost: exact MaxPool2d layers whose input
    lives in memory the model keeps until their backward anyway (for a batch norm fused with
    a ReLU, or a ReLU, before them).  Call with every ``keep_argmax`` True."""
    from cnnframe.layers.pooling import MaxPool2d
    fwd, bwd, value_end, grad_end, specs = lifetimes(model)
    chosen = set()
    for name in model._order:
        if type(model.nodes[name]) is not MaxPool2d:
            continue
        root = model.node_inputs[name][0]
        # walk back through layers whose output is a view of their input (a fused ReLU)
        while (root in model.nodes and specs[root] is not None and specs[root].out_key is None
               and len(model.node_inputs[root]) == 1):
            root = model.node_inputs[root][0]
        if root in model.nodes and value_end(root) >= bwd[name]:
            chosen.add(name)
    return chosen


def plan_memory(model, batch_size):
    """The :class:`MemoryPlan` of a training step of `model` on `batch_size` samples.

    Uses the model's ``_exposed_out`` / ``_exposed_grad`` (set by
    ``Model._plan_buffers``): arrays handed to the caller are not planned.
    """
    fwd, bwd, value_end, grad_end, specs = lifetimes(model)
    dtype = np.dtype(model.dtype)
    wanted = []

    def add(node, key, kind, shape, dt, start, end):
        shape = (batch_size, *shape)
        nbytes = math.prod(shape) * dt.itemsize
        wanted.append((node, key, kind, shape, dt, nbytes, start, end))

    for name in model._order:
        spec = specs[name]
        if spec is None:
            continue
        if spec.out_key is not None and name not in model._exposed_out:
            add(name, spec.out_key, "output", model.shapes[name], dtype, fwd[name],
                value_end(name))
        for keys, kind, start, end in ((spec.saved, "saved", fwd[name], bwd[name]),
                                       (spec.forward_temp, "temporary", fwd[name], fwd[name]),
                                       (spec.backward_temp, "temporary", bwd[name], bwd[name])):
            for key, dt in keys:
                add(name, key, kind, model.shapes[name], dtype if dt is None else np.dtype(dt),
                    start, end)
        ins = model.node_inputs[name]
        if (spec.grad_key is not None and len(ins) == 1 and ins[0] in model.nodes
                and name not in model._exposed_grad):
            add(name, spec.grad_key, "gradient", model.shapes[ins[0]], dtype, bwd[name],
                grad_end(ins[0]))
    return MemoryPlan(batch_size, _place(wanted), 2 * len(model._order))


def _place(wanted):
    """Greedy placement by size: each array, largest first, at the lowest aligned offset
    that overlaps no already placed array live at the same time."""
    placed = []
    for node, key, kind, shape, dt, nbytes, start, end in sorted(
            wanted, key=lambda w: (-w[5], w[6], w[0], w[1])):
        busy = sorted((b.offset, b.offset + _aligned(b.nbytes)) for b in placed
                      if b.start <= end and start <= b.end)
        offset = 0
        for lo, hi in busy:
            if offset + nbytes <= lo:
                break
            offset = max(offset, hi)
        placed.append(PlannedBuffer(node, key, kind, shape, dt, nbytes, start, end, offset))
    return placed


def workspace_bytes():
    """Bytes the kernels' scratch buffers (:mod:`cnnframe.functional._workspace`) hold now."""
    from cnnframe.functional import _workspace
    with _workspace._lock:
        return sum(buf.nbytes for buf in _workspace._buffers.values())


def memory_estimate(model, batch_size):
    """Planned memory of a training step (forward and backward) on `batch_size` samples.

    Returns
    -------
    dict with byte counts:
        "activations": what forward keeps for backward (planned arrays live across the
        end of forward, plus the outputs of layers that keep their own);
        "gradients": the rest of the arena (gradients, which reuse the memory of
        activations whose backward is done) plus the input gradients of layers that
        keep their own (gradients with respect to the graph inputs, which training
        does not compute, are not counted);
        "workspace": the kernels' scratch buffers held now in this process
        (:mod:`cnnframe.functional._workspace`; their blocking bounds them, whatever the
        batch size; 0 before the first step);
        "total": the sum.
    """
    plan = plan_memory(model, batch_size)
    n = len(model._order)
    activations = sum(b.nbytes for b in plan.buffers if b.start <= n - 1 and n <= b.end)
    gradients = plan.nbytes - activations
    itemsize = np.dtype(model.dtype).itemsize
    planned = {(b.node, b.kind) for b in plan.buffers}
    for name in model._order:
        layer, spec = model.nodes[name], layer_memory(model.nodes[name])
        own_out = (spec.out_key is not None) if spec is not None else not layer.aliases
        if own_out and (name, "output") not in planned:
            activations += batch_size * math.prod(model.shapes[name]) * itemsize
        own_grad = (spec.grad_key is not None) if spec is not None else not layer.aliases
        if own_grad and (name, "gradient") not in planned:
            gradients += sum(batch_size * math.prod(model.shapes[i]) * itemsize
                             for i in model.node_inputs[name] if i in model.nodes)
    workspace = workspace_bytes()
    return {"activations": activations, "gradients": gradients, "workspace": workspace,
            "total": activations + gradients + workspace}
