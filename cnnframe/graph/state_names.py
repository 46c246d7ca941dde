"""Matching the keys of a state dict to a Model's parameters and buffers
(:meth:`cnnframe.graph.Model.load_state_dict`).

A cnnframe state dict is keyed ``node.param``.  A PyTorch one is keyed by nested module
paths (``layer1.0.conv1.weight``, ``bn1.running_mean``); its parameter names and layouts
are cnnframe's (``weight``, ``bias``, ``running_mean``, ``running_var``), so only the
module paths need matching.  Each state key is matched, in this order:

1. through ``mapping``: a dict of state key (or module path) -> model key (or node name),
   or a callable state key -> model key; None drops the key;
2. by name: the key is a model key (``conv1.weight``);
3. by node name: the module path with ``.`` written ``_`` is a node's name
   (``layer1.0.conv1.weight`` -> node ``layer1_0_conv1``); then the other keys of a
   module whose keys so far all went to one node go to that node;
4. by order: the remaining modules, in the state dict's order, are paired with the
   remaining nodes that have parameters or buffers, in graph order; each module's
   kinds of parameters (``weight``, ``bias``, ...) must be the node's (kinds it lacks
   are missing) with the same shapes.

PyTorch's ``num_batches_tracked`` counters are dropped (cnnframe keeps no such counter).
"""
import numpy as np

DROPPED_SUFFIXES = ("num_batches_tracked",)
_TABLE_ROWS = 80  # longer tables show only the rows that did not match


def _split(key):
    """("module.path", "param") of a state key; ("", key) for a key without dots."""
    head, _, tail = key.rpartition(".")
    return head, tail


def as_array(value, key):
    """`value` as a numpy array (a PyTorch tensor too, without importing torch)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"load_state_dict: {key!r} has dtype {arr.dtype}, expected floats")
    return arr


class Plan:
    """The outcome of matching: which state key goes to which model key, and the problems."""

    def __init__(self):
        self.pairs = {}          # state key -> model key
        self.how = {}            # state key -> "mapping", "name", "node name", "module", "order"
        self.dropped = []        # state keys left out (num_batches_tracked, mapping -> None)
        self.unexpected = []     # state keys matching no model key
        self.missing = []        # model keys no state key matched
        self.bad = {}            # state key -> why the pair is wrong


def plan(model, state, mapping=None):
    """Match the keys of `state` to `model`'s params and buffers (see the module docstring).

    Returns
    -------
    Plan
    """
    targets = {**model.params, **model.buffers}
    result = Plan()
    keys = []
    for k in state:
        if not isinstance(k, str):
            raise TypeError(f"load_state_dict: state keys must be strings, got {k!r}")
        if _split(k)[1] in DROPPED_SUFFIXES:
            result.dropped.append(k)
        else:
            keys.append(k)
    claimed = {}  # model key -> state key

    def assign(k, target, how):
        result.pairs[k], result.how[k] = target, how
        if target not in targets:
            result.bad[k] = f"mapped to {target!r}, which is not a parameter or buffer of the model"
        elif target in claimed:
            result.bad[k] = f"{target!r} is also given by {claimed[target]!r}"
        else:
            claimed[target] = k

    # 1. the caller's mapping
    if mapping is not None:
        if not (callable(mapping) or isinstance(mapping, dict)):
            raise TypeError(f"load_state_dict: mapping must be a dict or a callable, got "
                            f"{type(mapping).__name__}")
        for k in list(keys):
            module, param = _split(k)
            if callable(mapping) and not isinstance(mapping, dict):
                target, found = mapping(k), True
            elif k in mapping:
                target, found = mapping[k], True
            elif module and module in mapping:  # a module path mapped to a node name
                target = None if mapping[module] is None else f"{mapping[module]}.{param}"
                found = True
            else:
                found = False
            if not found:
                continue
            keys.remove(k)
            if target is None:
                result.dropped.append(k)
            elif not isinstance(target, str):
                raise TypeError(f"load_state_dict: mapping gave {target!r} for {k!r}; expected "
                                "a model key such as 'conv1.weight' or None")
            else:
                assign(k, target, "mapping")
    # 2. model keys as they are
    for k in list(keys):
        if k in targets and k not in claimed:
            keys.remove(k)
            assign(k, k, "name")
    # 3. module paths naming nodes with "_" for "."
    for k in list(keys):
        module, param = _split(k)
        target = f"{module.replace('.', '_')}.{param}"
        if module and target in targets and target not in claimed:
            keys.remove(k)
            assign(k, target, "node name")
    # 3b. keys of a module whose other keys went to one node go to that node
    module_nodes = {}
    for k, target in result.pairs.items():
        module_nodes.setdefault(_split(k)[0], set()).add(target.partition(".")[0])
    for k in list(keys):
        module, param = _split(k)
        nodes = module_nodes.get(module, ())
        if len(nodes) == 1:
            keys.remove(k)
            assign(k, f"{next(iter(nodes))}.{param}", "module")
    # 4. the rest by order: modules of the state dict against untouched nodes of the graph
    modules = {}
    for k in keys:
        modules.setdefault(_split(k)[0], []).append(k)
    touched = {t.partition(".")[0] for t in claimed}
    nodes = [n for n in model._order if n not in touched
             and (model.nodes[n].params or model.nodes[n].buffers)]
    for (module, mkeys), node in zip(modules.items(), nodes):
        layer = model.nodes[node]
        node_kinds = [*layer.params, *layer.buffers]
        kinds = [_split(k)[1] for k in mkeys]
        if set(kinds) <= set(node_kinds):  # kinds the module lacks are reported missing
            for k, kind in zip(mkeys, kinds):
                assign(k, f"{node}.{kind}", "order")
            continue
        # Not the same kinds of parameters: the orders differ here (nothing is loaded).
        for k, kind in zip(mkeys, kinds):
            result.pairs[k], result.how[k] = f"{node}.{kind}", "order"
            result.bad[k] = "kind mismatch"
        result.bad[mkeys[0]] = (f"kind mismatch: {module or '(top level)'} has "
                                f"{', '.join(kinds)}; node {node!r} ({layer.type_name}) has "
                                f"{', '.join(node_kinds)}")
    result.unexpected = [k for k in keys if k not in result.pairs]
    result.missing = [t for t in targets if t not in claimed]
    for k, target in result.pairs.items():
        if k not in result.bad and np.shape(state[k]) != targets[target].shape:
            result.bad[k] = "shape mismatch"
    return result


def _shape(s):
    return str(tuple(s))


def table(model, state, result):
    """The matching as a text table: state key, shape, model key, shape, how or what is wrong."""
    targets = {**model.params, **model.buffers}
    rows = []
    for k in state:
        if k in result.dropped:
            continue
        target = result.pairs.get(k)
        status = (result.bad.get(k) or f"ok ({result.how[k]})") if target else "unexpected"
        rows.append((k, _shape(np.shape(state[k])), target or "-",
                     _shape(targets[target].shape) if target in targets else "-", status))
    rows += [("-", "-", t, _shape(targets[t].shape), "missing") for t in result.missing]
    hidden = 0
    if len(rows) > _TABLE_ROWS:
        kept = [r for r in rows if not r[4].startswith("ok")]
        hidden = len(rows) - len(kept)
        rows = kept
    head = ("state key", "shape", "model key", "shape", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4]
             for r in [head, *rows]]
    if hidden:
        lines.append(f"  ({hidden} matched keys not shown)")
    if result.dropped:
        lines.append(f"  (dropped: {', '.join(result.dropped[:5])}"
                     f"{', ...' if len(result.dropped) > 5 else ''})")
    return "\n".join(lines)
