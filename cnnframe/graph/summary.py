"""Model summaries: a per-node table of shapes, parameters, FLOPs and receptive fields.

FLOP convention (forward pass, per sample): 2 FLOPs per multiply-add in
conv2d and linear (bias adds not counted); 1 per output element for
element-wise layers (activations, dropout, add); 1 per window element for
pooling; 2 per element for batch norm (scale and shift); 4 per element for
softmax; 0 for flatten, identity and concat.  Plugin layers report their own
(``Layer.flops``) or show "?".

Receptive field: the size (h, w) of the window of the first graph input that
one output element of a node can see, ignoring padding and image borders
(so it can exceed the input size).  With r the receptive field, j the jump
(product of strides so far) and k the dilated kernel extent, each layer does
r <- r + (k - 1) j and j <- j s; merges (add, concat) take the maximum over
their inputs; layers that see their whole input (global pooling, linear) extend
r over the whole spatial extent of the last feature map.
"""


def _spatial(shape):
    return tuple(shape[1:3]) if len(shape) == 3 else None


def receptive_fields(model):
    """node name -> receptive field (h, w) on the first graph input (None if unrelated to it).

    Raises ValueError if the first graph input is not an image (C, H, W).
    """
    first = next(iter(model.inputs))
    size = _spatial(model.inputs[first])
    if size is None:
        raise ValueError(f"receptive fields need an image input of shape (C, H, W); input "
                         f"{first!r} has shape {list(model.inputs[first])}")
    # state: (r, j, spatial extent of the last feature map), each an (h, w) pair
    state = {first: ((1, 1), (1, 1), size)}
    for name in model.inputs:
        state.setdefault(name, None)
    result = {}
    for name in model._order:
        layer = model.nodes[name]
        ins = [state[i] for i in model.node_inputs[name] if state[i] is not None]
        if not ins:
            state[name] = result[name] = None
            continue
        r = tuple(max(s[0][a] for s in ins) for a in (0, 1))
        j = tuple(max(s[1][a] for s in ins) for a in (0, 1))
        extent = ins[0][2]
        in_shapes = [model.shapes[i] for i in model.node_inputs[name]]
        arg = in_shapes if layer.num_inputs is None else in_shapes[0]
        step = layer.receptive_step(arg)
        if step is None:  # sees its whole input
            ext = _spatial(in_shapes[0]) or extent
            r = tuple(r[a] + (ext[a] - 1) * j[a] for a in (0, 1))
            j = tuple(j[a] * ext[a] for a in (0, 1))
            extent = (1, 1)
        else:
            (kh, kw), (sh, sw) = step
            r = (r[0] + (kh - 1) * j[0], r[1] + (kw - 1) * j[1])
            j = (j[0] * sh, j[1] * sw)
            extent = _spatial(model.shapes[name]) or extent
        state[name] = (r, j, extent)
        result[name] = r
    return result


def receptive_field(model, node):
    """Receptive field (h, w) of `node`'s outputs on the model's first input.

    E.g. two stacked 2x2 convolutions with stride 1 give (3, 3).

    Raises
    ------
    ValueError
        For an unknown node, a node that does not depend on the first input, or a
        first input that is not an image (C, H, W).
    """
    if node not in model.nodes:
        raise ValueError(f"receptive_field: unknown node {node!r}; nodes: {', '.join(model.nodes)}")
    rf = receptive_fields(model)[node]
    if rf is None:
        raise ValueError(f"receptive_field: node {node!r} does not depend on the first input "
                         f"{next(iter(model.inputs))!r}")
    return rf


def _human(n):
    if n is None:
        return "?"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def memory_line(model, batch_size=128):
    """One line: the planned memory of a training step (Model.memory_estimate)."""
    est = model.memory_estimate(batch_size)
    mib = 2.0 ** 20
    return (f"Training memory (batch {batch_size}): activations {est['activations'] / mib:.2f} "
            f"MiB, gradients {est['gradients'] / mib:.2f} MiB, workspace "
            f"{est['workspace'] / mib:.2f} MiB (kernel scratch held now)")


def summary(model, batch_size=128):
    """The summary table of `model` as a string (see the module docstring for conventions),
    with the planned training memory at `batch_size`."""
    try:
        rfs = receptive_fields(model)
    except ValueError:
        rfs = {}
    rows = []
    total_flops, unknown = 0, False
    for name in model._order:
        layer = model.nodes[name]
        in_shapes = [model.shapes[i] for i in model.node_inputs[name]]
        arg = in_shapes if layer.num_inputs is None else in_shapes[0]
        flops = layer.flops(arg)
        if flops is None:
            unknown = True
        else:
            total_flops += flops
        rf = rfs.get(name)
        rows.append((name, layer.type_name or type(layer).__name__,
                     ", ".join(model.node_inputs[name]),
                     "(" + ", ".join(map(str, model.shapes[name])) + ")",
                     f"{layer.num_params():,}", _human(flops),
                     f"{rf[0]}x{rf[1]}" if rf else "-"))
    head = ("node", "type", "inputs", "output shape", "params", "FLOPs", "receptive field")
    widths = [max(len(head[c]), *(len(r[c]) for r in rows)) for c in range(len(head))]
    right = {4, 5}

    def fmt(row):
        return "  ".join(v.rjust(w) if c in right else v.ljust(w)
                         for c, (v, w) in enumerate(zip(row, widths))).rstrip()

    line = "-" * len(fmt(head))
    inputs = ", ".join(f"{k} (N, {', '.join(map(str, v))})" for k, v in model.inputs.items())
    nbuf = sum(b.size for b in model.buffers.values())
    out = [f"Model: inputs {inputs}; outputs {', '.join(model.outputs)}; dtype {model.dtype.name}",
           line, fmt(head), line, *(fmt(r) for r in rows), line,
           f"Total params: {model.num_params():,} (all trainable); buffers: {nbuf:,} values",
           f"Forward FLOPs per sample: {_human(total_flops)}{' + unknown' if unknown else ''} "
           "(2 per multiply-add; see cnnframe.graph.summary for the convention)",
           memory_line(model, batch_size)]
    return "\n".join(out)
