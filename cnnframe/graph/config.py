"""Model configs: reading JSON/TOML files and normalising both config forms.

Graph form (what ``Model.to_config()`` returns)::

    {"inputs": {"image": [3, 32, 32]},
     "nodes": [{"name": "conv1", "type": "conv2d", "inputs": ["image"],
                "config": {"in_channels": 3, "out_channels": 16, "kernel_size": 3}},
               ...],
     "outputs": ["fc"],
     "dtype": "float32",      # optional: "float32" (default) or "float64"
     "seed": 0}               # optional: seeds every layer whose own seed is unset

A node's ``inputs`` defaults to the previous node (the graph input for the
first node) and ``outputs`` to the last node.  ``"trainable": false`` on a node
freezes its parameters (optimizers leave them alone; see ``Model.freeze``).

A training config (what ``cnnframe train`` runs: ``epochs``, ``[data]``, ...) holds
its model in a ``[model]`` table; :func:`training_model_config` picks that out, so
``Model.from_file`` accepts training configs too.

Sequential shorthand for plain stacks (layer config keys inline; nodes are
named ``<type>_<k>`` -- conv2d_1, relu_1, conv2d_2, ... -- unless an entry has a
"name"; the input is called "input" and the last layer is the output)::

    {"input_shape": [3, 32, 32],
     "layers": [{"type": "conv2d", "in_channels": 3, "out_channels": 16, "kernel_size": 3},
                {"type": "relu"}, ...]}
"""
import difflib
import json
import numbers
import os
import sys

GRAPH_KEYS = ("inputs", "nodes", "outputs", "dtype", "seed")
SEQUENTIAL_KEYS = ("input_shape", "layers", "dtype", "seed")
NODE_KEYS = ("name", "type", "inputs", "config", "trainable")
DTYPES = ("float32", "float64")
SEQUENTIAL_INPUT = "input"


def _closest(name, choices):
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config_file(path):
    """Read a model config from a .json or .toml file.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        For another extension or a parse error (with the file name and position).
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".json", ".toml"):
        raise ValueError(f"{path}: model configs are .json or .toml files (saved models with "
                         "weights load with Model.load)")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
        if ext == ".json":
            cfg = json.loads(text)
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - exercised on Python 3.10 only
                import tomli as tomllib
            cfg = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from None
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise ValueError(f"{path}: invalid {ext[1:].upper()}: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: a model config must be a JSON object, got {type(cfg).__name__}")
    return cfg


def is_training_config(cfg):
    """True for a training config: a "model" table and none of a model config's own keys."""
    model_keys = ("inputs", "nodes", "outputs", "input_shape", "layers")
    return (isinstance(cfg, dict) and isinstance(cfg.get("model"), dict)
            and not any(k in cfg for k in model_keys))


def training_model_config(cfg, path):
    """The model config of a training config read from `path`, as ``cnnframe train`` builds it.

    That is the ``[model]`` table, or the model config file its ``file`` key names
    (relative to `path`).  An inline ``[model]`` without its own ``seed`` gets the
    training config's ``seed`` (0 if it has none), so the model starts from the same
    weights as in ``cnnframe train``.

    Raises
    ------
    ValueError
        Naming `path`, for a ``file`` key with other keys beside it, or whose file is
        itself a training config.
    """
    path = os.fspath(path)
    model = dict(cfg["model"])
    if "file" in model:
        if len(model) != 1:
            raise ValueError(f"{path}: [model] with 'file' takes no other keys, got "
                             f"{sorted(model)}")
        target = model["file"]
        if not isinstance(target, str) or not target:
            raise ValueError(f"{path}: [model] file must be a path string, got {target!r}")
        target = os.path.join(os.path.dirname(path), target)
        inner = load_config_file(target)
        if is_training_config(inner):
            raise ValueError(f"{target} (the [model] file of {path}) is a training config; "
                             "[model] file must name a model config")
        return inner
    if model.get("seed") is None:
        model["seed"] = cfg.get("seed", 0)
    return model


def _check_name(name, what):
    if not isinstance(name, str) or not name or "." in name or name.strip() != name:
        raise ValueError(f"{what} must be a non-empty string without '.' or surrounding "
                         f"spaces, got {name!r}")
    return name


def _check_shape(shape, what):
    if (not isinstance(shape, (list, tuple)) or not shape or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
            for s in shape)):
        raise ValueError(f"{what} must be a non-empty list of ints >= 1 (without the batch "
                         f"dimension), e.g. [3, 32, 32]; got {shape!r}")
    return [int(s) for s in shape]


def _check_unknown(cfg, valid, where):
    unknown = [k for k in cfg if k not in valid]
    if unknown:
        k = unknown[0]
        raise ValueError(f"{where}: unknown key {k!r}{_closest(k, valid)}; valid keys: "
                         f"{', '.join(valid)}")


def normalize_config(cfg):
    """Check a config's structure and return it in graph form (a new dict; input not modified).

    Layer types and layer config keys are checked when the layers are built
    (:meth:`cnnframe.graph.Model.from_config`).
    """
    if not isinstance(cfg, dict):
        raise ValueError(f"model config must be a dict, got {type(cfg).__name__}")
    if "layers" in cfg or "input_shape" in cfg:
        if "nodes" in cfg or "inputs" in cfg:
            raise ValueError("model config: use either the graph form (inputs/nodes/outputs) or "
                             "the sequential form (input_shape/layers), not both")
        out = _sequential_to_graph(cfg)
    else:
        _check_unknown(cfg, GRAPH_KEYS, "model config")
        out = _graph(cfg)
    if "dtype" in cfg:
        if cfg["dtype"] not in DTYPES:
            raise ValueError(f"model config: dtype must be one of {', '.join(DTYPES)}, "
                             f"got {cfg['dtype']!r}")
        out["dtype"] = cfg["dtype"]
    if cfg.get("seed") is not None:
        seed = cfg["seed"]
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"model config: seed must be an int >= 0, got {seed!r}")
        out["seed"] = int(seed)
    return out


def _sequential_to_graph(cfg):
    _check_unknown(cfg, SEQUENTIAL_KEYS, "sequential model config")
    if "input_shape" not in cfg or "layers" not in cfg:
        raise ValueError("sequential model config needs 'input_shape' and 'layers'")
    shape = _check_shape(cfg["input_shape"], "input_shape")
    layers = cfg["layers"]
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"sequential model config: 'layers' must be a non-empty list, "
                         f"got {layers!r}")
    explicit = {e.get("name") for e in layers if isinstance(e, dict)}
    counters, nodes, prev = {}, [], SEQUENTIAL_INPUT
    for i, entry in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(entry, dict) or "type" not in entry:
            raise ValueError(f"{where}: each layer must be a table/object with a 'type', "
                             f"got {entry!r}")
        ltype = entry["type"]
        if not isinstance(ltype, str):
            raise ValueError(f"{where}: 'type' must be a string, got {ltype!r}")
        if "inputs" in entry:
            raise ValueError(f"{where} ({ltype}): 'inputs' is not allowed in the sequential form "
                             "(each layer feeds the next); use the graph form for branches")
        name = entry.get("name")
        if name is None:
            while True:
                counters[ltype] = counters.get(ltype, 0) + 1
                name = f"{ltype}_{counters[ltype]}"
                if name not in explicit:
                    break
        else:
            _check_name(name, f"{where}: 'name'")
        layer_cfg = {k: v for k, v in entry.items() if k not in ("type", "name", "trainable")}
        node = {"name": name, "type": ltype, "inputs": [prev], "config": layer_cfg}
        if "trainable" in entry:
            node["trainable"] = entry["trainable"]
        nodes.append(node)
        prev = name
    return _graph({"inputs": {SEQUENTIAL_INPUT: shape}, "nodes": nodes, "outputs": [prev]})


def _graph(cfg):
    for key in ("inputs", "nodes"):
        if key not in cfg:
            raise ValueError(f"model config: missing {key!r} (graph form: inputs, nodes, outputs; "
                             "or the sequential form: input_shape, layers)")
    inputs = cfg["inputs"]
    if not isinstance(inputs, dict) or not inputs:
        raise ValueError(f"model config: 'inputs' must map input names to shapes, e.g. "
                         f"{{\"image\": [3, 32, 32]}}; got {inputs!r}")
    inputs_out = {_check_name(k, "input name"): _check_shape(v, f"input {k!r}: shape")
                  for k, v in inputs.items()}
    nodes = cfg["nodes"]
    if not isinstance(nodes, list) or not nodes:
        raise ValueError(f"model config: 'nodes' must be a non-empty list, got {nodes!r}")
    out_nodes, seen = [], set()
    prev = next(iter(inputs_out))
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise ValueError(f"nodes[{i}]: each node must be an object, got {node!r}")
        name = node.get("name")
        where = f"node {name!r}" if isinstance(name, str) else f"nodes[{i}]"
        _check_unknown(node, NODE_KEYS, where)
        if "name" not in node or "type" not in node:
            raise ValueError(f"{where}: each node needs a 'name' and a 'type'")
        _check_name(name, f"nodes[{i}]: 'name'")
        if name in seen:
            raise ValueError(f"node {name!r}: duplicate node name (node names must be unique)")
        if name in inputs_out:
            raise ValueError(f"node {name!r}: the name is already used by a graph input")
        seen.add(name)
        if not isinstance(node["type"], str):
            raise ValueError(f"{where}: 'type' must be a string, got {node['type']!r}")
        node_inputs = node.get("inputs", [prev])
        if isinstance(node_inputs, str):
            node_inputs = [node_inputs]
        if not isinstance(node_inputs, list) or not node_inputs or not all(
                isinstance(s, str) for s in node_inputs):
            raise ValueError(f"{where}: 'inputs' must be a non-empty list of input or node "
                             f"names, got {node_inputs!r}")
        layer_cfg = node.get("config", {})
        if not isinstance(layer_cfg, dict):
            raise ValueError(f"{where}: 'config' must be an object of layer arguments, got "
                             f"{layer_cfg!r}")
        out_node = {"name": name, "type": node["type"], "inputs": list(node_inputs),
                    "config": dict(layer_cfg)}
        trainable = node.get("trainable", True)
        if not isinstance(trainable, bool):
            raise ValueError(f"{where}: 'trainable' must be true or false, got {trainable!r}")
        if not trainable:
            out_node["trainable"] = False
        out_nodes.append(out_node)
        prev = name
    outputs = cfg.get("outputs", [prev])
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(outputs, list) or not outputs or not all(isinstance(s, str) for s in outputs):
        raise ValueError(f"model config: 'outputs' must be a non-empty list of node names, "
                         f"got {outputs!r}")
    return {"inputs": inputs_out, "nodes": out_nodes, "outputs": list(outputs)}
