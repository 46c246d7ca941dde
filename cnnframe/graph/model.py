"""Model: a directed acyclic graph of named layer nodes, run in topological order."""
import difflib
import os
import threading
import zlib

import numpy as np

from cnnframe.graph.config import (DTYPES, is_training_config, load_config_file,
                                   normalize_config, training_model_config)
from cnnframe.graph.memory import (arena_capacity, argmax_recomputable, memory_estimate,
                                   new_arena, plan_memory)
from cnnframe.graph.sizes import (ModelTooLargeError, SizeBudget, count_arrays,
                                  estimate_from_config)
from cnnframe.layers.base import FLOAT_DTYPES, Layer
from cnnframe.registry import UnknownLayerError, get_layer

# A batch norm whose only consumer is a ReLU runs as one op (batch_norm_train(relu=True)
# and batch_norm_backward(relu_y=...)): bit for bit the same results with one pass over
# memory fewer each way; the ReLU node then passes its input and gradient through.
FUSE_BATCH_NORM_RELU = True
# Internal outputs, input gradients and saved arrays share one arena per thread, laid out by
# their lifetimes in a training step (cnnframe.graph.memory).  Tests switch it off to compare
# against every layer keeping buffers of its own.
PLAN_MEMORY = True
# Memory plans (and each thread's views of its arena) kept per model for this many batch
# sizes: a service answering batches of a few sizes plans each once.
MAX_CACHED_PLANS = 8


def _closest(name, choices):
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Runner:
    """What one thread runs the graph with: the layers whose caches and output buffers it
    uses (the model's own for one thread, copies for the others) and its gradient sums."""

    __slots__ = ("layers", "acc", "generation", "serial", "arena", "bound", "spent", "views")

    def __init__(self, layers, generation):
        self.layers = layers          # node name -> layer
        self.acc = {}                 # node name -> gradient-sum buffer of Model.backward
        self.generation = generation  # Model._generation when the copies were made
        self.serial = None            # Model._train_forwards after this thread's latest forward
        self.arena = None             # memory of the planned arrays (cnnframe.graph.memory)
        self.bound = None             # (batch size, dtype) whose plan the layers hold views of
        self.spent = False            # a backward has reused the latest forward's memory
        self.views = {}               # (batch size, dtype) -> node -> its views of the arena


def _try_output_shape(layer, in_shapes):
    """layer.output_shape for these input shapes, or None if it raises (reported later)."""
    try:
        shape = layer.output_shape(in_shapes if layer.num_inputs is None else in_shapes[0])
        return tuple(int(s) for s in shape)
    except Exception:  # noqa: BLE001 - Model._validate reports shape errors with context
        return None


def _node_seed(seed, name):
    """A per-node seed derived from the model seed and the node name (stable across runs)."""
    seq = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


class Model:
    """A graph of named layers with one or more inputs and outputs.

    Build one from a config (:meth:`from_config`, :meth:`from_file`; see
    :mod:`cnnframe.graph.config` for the format) or directly::

        Model(inputs={"image": (3, 32, 32)},
              nodes=[("conv1", Conv2d(3, 8, 3), ["image"]), ("relu1", ReLU(), ["conv1"]), ...],
              outputs=["fc"])

    Parameters
    ----------
    inputs : dict
        Graph input name -> shape without the batch dimension.
    nodes : list of (name, layer, input names)
        Any order; they run in a topological order (ties keep the given order).
        Layers with several inputs (add, concat) get a list in the given order.
    outputs : list of str, optional
        Output node names (default: the last node).
    dtype : "float32" (default) or "float64"
    seed : int, optional
        Re-initialises every layer with parameters or randomness whose own
        ``seed`` is None, from a seed derived from this one and the node name.

    Attributes
    ----------
    nodes : dict
        Node name -> layer (config order).
    inputs : dict
        Graph input name -> shape tuple.
    outputs : list of str
    shapes : dict
        Node or input name -> output shape without the batch dimension.

    Raises
    ------
    ValueError
        Naming the node: unknown input, wrong number of inputs, a cycle, a shape
        mismatch, duplicate names, a node feeding no output.
    cnnframe.graph.sizes.ModelTooLargeError
        A MemoryError naming the node and the bytes, if the parameters and one
        image's activations would need more memory than the limit (the machine's
        physical memory by default; see :mod:`cnnframe.graph.sizes`).

    Notes
    -----
    A single-input model takes an array and a single-output model returns one;
    otherwise they take/return dicts keyed by name.  Gradients of nodes used by
    several others are summed.  Internal nodes write their outputs, input gradients
    and what they keep for backward into one memory arena per thread, laid out by
    lifetime (:mod:`cnnframe.graph.memory`): a gradient reuses the memory of
    activations whose backward is done, so a backward uses up its forward (a second
    backward after one forward raises RuntimeError), and the arena is reused across
    steps.  Outputs and input gradients returned to the caller are never reused.

    Threads: ``forward(x, training=False)`` is thread-safe; any number of threads
    may run one model at once.  The first thread to run the model uses the layers
    in ``nodes``; every other thread gets, on its first call, copies of them
    (:meth:`cnnframe.layers.Layer.thread_copy`) that share the parameter, gradient
    and buffer arrays but own their caches and output buffers, and reuses them
    from then on (copies are remade after :meth:`astype`).  So all threads see
    the current weights: an optimizer step or :meth:`load_state_dict` reaches
    every thread's next call (a call running while weights change sees some of
    each).  The training path -- ``forward(x, training=True)``, :meth:`backward`
    and the optimizer step -- updates shared gradients, running statistics and
    weights, so one thread at a time may use it: a training-path call while
    another thread is inside one, or a :meth:`backward` after another thread ran
    ``forward(training=True)`` since this thread's forward, raises RuntimeError.
    Threads may take turns (one lock around each whole step), and a backward
    runs in the thread that ran its forward.  A layer attribute replaced by hand
    on ``model.nodes[name]`` after other threads have run the model is not seen
    by their copies.
    """

    def __init__(self, inputs, nodes, outputs=None, dtype="float32", seed=None):
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError(f"Model: inputs must be a non-empty dict name -> shape, "
                             f"got {inputs!r}")
        self.inputs = {}
        for name, shape in inputs.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"Model: input name must be a non-empty string without '.', "
                                 f"got {name!r}")
            if (not isinstance(shape, (tuple, list)) or not shape or not all(
                    isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                    for s in shape)):
                raise ValueError(f"Model: input {name!r}: shape must be a list of ints >= 1 "
                                 f"(without the batch dimension), got {shape!r}")
            self.inputs[name] = tuple(int(s) for s in shape)
        self.nodes = {}
        self.node_inputs = {}
        for entry in nodes:
            try:
                name, layer, node_inputs = entry
            except (TypeError, ValueError):
                raise ValueError(f"Model: each node must be (name, layer, input names), got "
                                 f"{entry!r}") from None
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"Model: node name must be a non-empty string without '.', "
                                 f"got {name!r}")
            if name in self.nodes:
                raise ValueError(f"node {name!r}: duplicate node name (node names must be unique)")
            if name in self.inputs:
                raise ValueError(f"node {name!r}: the name is already used by a graph input")
            if not isinstance(layer, Layer):
                raise TypeError(f"node {name!r}: {layer!r} is not a cnnframe.layers.Layer")
            if isinstance(node_inputs, str):
                node_inputs = [node_inputs]
            self.nodes[name] = layer
            self.node_inputs[name] = list(node_inputs)
        if not self.nodes:
            raise ValueError("Model: needs at least one node")
        if outputs is None:
            outputs = [next(reversed(self.nodes))]
        if isinstance(outputs, str):
            outputs = [outputs]
        self.outputs = list(outputs)
        if dtype not in DTYPES and np.dtype(dtype) not in FLOAT_DTYPES:
            raise ValueError(f"Model: dtype must be float32 or float64, got {dtype!r}")
        self.seed = seed
        self._validate()
        self._check_size(np.dtype(dtype).itemsize)
        self._fuse_batch_norm_relu()
        self._plan_buffers()
        if seed is not None:
            for name, layer in self.nodes.items():
                if (layer.params or layer.stochastic) and getattr(layer, "seed", None) is None:
                    layer.reset_parameters(_node_seed(seed, name))
        self.dtype = np.dtype(np.float32)
        for layer in self.nodes.values():
            layer.astype(np.float32)
        self._init_threads()
        self.astype(dtype)

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg):
        """Build a model from a config dict (graph form or sequential shorthand).

        Raises
        ------
        ValueError
            Naming the node, for anything wrong in the config.
        cnnframe.graph.sizes.ModelTooLargeError
            A MemoryError naming the node and the bytes, if the model would need more
            memory than the limit (:mod:`cnnframe.graph.sizes`); raised before that
            node's parameters are allocated.
        """
        cfg = normalize_config(cfg)
        budget = SizeBudget(np.dtype(cfg.get("dtype", "float32")).itemsize)
        shapes = {name: tuple(shape) for name, shape in cfg["inputs"].items()}
        nodes = []
        for node in cfg["nodes"]:
            name, ltype = node["name"], node["type"]
            try:
                layer_cls = get_layer(ltype)
            except UnknownLayerError as exc:
                raise ValueError(f"node {name!r}: {exc}") from None
            # Input shapes as far as the nodes so far tell (None: unknown or wrong; the
            # Model's own shape check reports those).
            in_shapes = [shapes.get(i) for i in node["inputs"]]
            known = all(s is not None for s in in_shapes)
            estimate = estimate_from_config(layer_cls, node["config"],
                                            in_shapes[0] if known and in_shapes else None)
            if estimate is not None:  # count it before building allocates the parameters
                budget.add(name, ltype, *estimate)
            try:
                layer = layer_cls.from_config(node["config"])
            except (ValueError, TypeError) as exc:
                msg = str(exc)
                for prefix in (f"{ltype}: ", f"{layer_cls.__name__}: "):
                    msg = msg[len(prefix):] if msg.startswith(prefix) else msg
                raise ValueError(f"node {name!r} ({ltype}): {msg}") from None
            if estimate is None:
                out_shape = _try_output_shape(layer, in_shapes) if known else None
                budget.add(name, ltype, *count_arrays(layer), out_shape)
            else:
                out_shape = estimate[2]
            shapes[name] = out_shape
            if node.get("trainable") is False:
                layer.trainable = False
            nodes.append((name, layer, node["inputs"]))
        return cls(cfg["inputs"], nodes, cfg["outputs"], cfg.get("dtype", "float32"),
                   cfg.get("seed"))

    @classmethod
    def from_file(cls, path):
        """Build a model from a .json or .toml config file (errors name the file).

        The file is a model config, or a training config (``cnnframe train``'s), whose
        ``[model]`` table is used as ``cnnframe train`` uses it
        (:func:`cnnframe.graph.config.training_model_config`).
        """
        cfg = load_config_file(path)
        where = os.fspath(path)
        if is_training_config(cfg):
            cfg = training_model_config(cfg, path)
            where += " [model]"
        try:
            return cls.from_config(cfg)
        except (ValueError, ModelTooLargeError) as exc:
            raise type(exc)(f"{where}: {exc}") from None

    def to_config(self):
        """The graph-form config (plain JSON values); ``from_config`` of it rebuilds this model."""
        nodes = []
        for name, layer in self.nodes.items():
            if layer.type_name is None:
                raise ValueError(f"node {name!r}: {type(layer).__name__} is not registered "
                                 "(use @register_layer), so it cannot be written to a config")
            try:
                layer_cfg = layer.get_config()
            except TypeError as exc:  # e.g. an unregistered Python initialiser
                raise TypeError(f"node {name!r}: {exc}") from None
            node = {"name": name, "type": layer.type_name,
                    "inputs": list(self.node_inputs[name]), "config": layer_cfg}
            if not layer.trainable:
                node["trainable"] = False
            nodes.append(node)
        cfg = {"inputs": {k: list(v) for k, v in self.inputs.items()}, "nodes": nodes,
               "outputs": list(self.outputs), "dtype": self.dtype.name}
        if self.seed is not None:
            cfg["seed"] = int(self.seed)
        return cfg

    def _validate(self):
        known = list(self.inputs) + list(self.nodes)
        for name, layer in self.nodes.items():
            ins = self.node_inputs[name]
            if not ins or not all(isinstance(i, str) for i in ins):
                raise ValueError(f"node {name!r}: inputs must be a non-empty list of names, "
                                 f"got {ins!r}")
            for i in ins:
                if i not in self.inputs and i not in self.nodes:
                    raise ValueError(f"node {name!r}: unknown input {i!r}{_closest(i, known)}; "
                                     f"graph inputs: {', '.join(self.inputs)}; nodes: "
                                     f"{', '.join(self.nodes)}")
            if layer.num_inputs is None and len(ins) < 2:
                raise ValueError(f"node {name!r} ({layer.type_name}): takes at least 2 inputs, "
                                 f"got {ins}")
            if layer.num_inputs is not None and len(ins) != layer.num_inputs:
                raise ValueError(f"node {name!r} ({layer.type_name}): takes {layer.num_inputs} "
                                 f"input(s), got {len(ins)}: {ins}")
        for o in self.outputs:
            if o not in self.nodes:
                raise ValueError(f"outputs: unknown node {o!r}{_closest(o, self.nodes)}; nodes: "
                                 f"{', '.join(self.nodes)}")
        if len(set(self.outputs)) != len(self.outputs):
            raise ValueError(f"outputs: duplicate names in {self.outputs}")
        self._order = self._toposort()
        self._consumers = {k: [] for k in known}
        for name in self._order:
            for i in self.node_inputs[name]:
                if name not in self._consumers[i]:
                    self._consumers[i].append(name)
        # Every node must feed an output, and every graph input must be used.
        live, stack = set(), list(self.outputs)
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(self.node_inputs.get(n, ()))
        for name in self.nodes:
            if name not in live:
                raise ValueError(f"node {name!r}: does not feed any output (outputs: "
                                 f"{', '.join(self.outputs)}); remove it or list it in outputs")
        for name in self.inputs:
            if name not in live:
                raise ValueError(f"graph input {name!r} is not used by any node")
        self.shapes = dict(self.inputs)
        for name in self._order:
            layer = self.nodes[name]
            in_shapes = [self.shapes[i] for i in self.node_inputs[name]]
            arg = in_shapes if layer.num_inputs is None else in_shapes[0]
            try:
                shape = layer.output_shape(arg)
            except (ValueError, TypeError) as exc:
                shown = ", ".join(str(list(s)) for s in in_shapes)
                raise ValueError(f"node {name!r} ({layer.type_name}): shape mismatch: input "
                                 f"shape {shown} from {self.node_inputs[name]}: {exc}") from None
            self.shapes[name] = tuple(int(s) for s in shape)
        # What the executor reads per node, looked up once: (name, input names, whether
        # the layer takes a list, output shape without the batch axis).
        self._steps = tuple((name, tuple(self.node_inputs[name]),
                             self.nodes[name].num_inputs is None, self.shapes[name])
                            for name in self._order)

    def _check_size(self, itemsize):
        """Raise ModelTooLargeError if the model would need more memory than the limit."""
        budget = SizeBudget(itemsize)
        for name, layer in self.nodes.items():
            budget.add(name, layer.type_name or type(layer).__name__, *count_arrays(layer),
                       self.shapes[name])

    def _toposort(self):
        names = list(self.nodes)
        indeg = {n: sum(1 for i in self.node_inputs[n] if i in self.nodes) for n in names}
        users = {n: [] for n in names}
        for n in names:
            for i in self.node_inputs[n]:
                if i in self.nodes:
                    users[i].append(n)
        order, ready = [], [n for n in names if indeg[n] == 0]
        pos = {n: k for k, n in enumerate(names)}
        while ready:
            ready.sort(key=pos.__getitem__)
            n = ready.pop(0)
            order.append(n)
            for u in users[n]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    ready.append(u)
        if len(order) < len(names):
            left = [n for n in names if n not in set(order)]
            raise ValueError(f"cycle in the graph: {' -> '.join(self._find_cycle(left))} "
                             f"(nodes on or after a cycle: {', '.join(left)})")
        return order

    def _find_cycle(self, left):
        left = set(left)
        start = next(n for n in self.nodes if n in left)
        path, seen = [start], {start: 0}
        while True:
            nxt = next(i for i in self.node_inputs[path[-1]] if i in left)
            if nxt in seen:
                cyc = path[seen[nxt]:] + [nxt]
                return list(reversed(cyc))
            seen[nxt] = len(path)
            path.append(nxt)

    def _fuse_batch_norm_relu(self):
        """Fuse each batch norm whose only consumer is a ReLU into one op (see FUSE_BATCH_NORM_RELU)."""
        from cnnframe.layers.activations import ReLU
        from cnnframe.layers.normalization import BatchNorm1d, BatchNorm2d
        for layer in self.nodes.values():
            if type(layer) is ReLU:
                layer.fused = False
        for name, layer in self.nodes.items():
            if type(layer) not in (BatchNorm1d, BatchNorm2d):
                continue
            consumers = self._consumers[name]
            layer.fused_relu = (FUSE_BATCH_NORM_RELU and name not in self.outputs
                                and len(consumers) == 1 and type(self.nodes[consumers[0]]) is ReLU)
            if layer.fused_relu:
                self.nodes[consumers[0]].fused = True

    def _plan_buffers(self):
        """Decide which layers may reuse output buffers across calls, and which layers' input
        gradients go to the caller (those get fresh arrays)."""
        exposed_out = set(self.outputs)
        stack = list(self.outputs)
        while stack:  # outputs that are views of an upstream node's buffer expose it too
            n = stack.pop()
            if self.nodes[n].aliases:
                for i in self.node_inputs[n]:
                    if i in self.nodes and i not in exposed_out:
                        exposed_out.add(i)
                        stack.append(i)
        self._fed_by_graph = {n for n in self.nodes
                              if any(i in self.inputs for i in self.node_inputs[n])}
        exposed_grad = set(self._fed_by_graph)
        stack = list(exposed_grad)
        while stack:  # input gradients that are views of grad_y expose the consumers' buffers
            n = stack.pop()
            if self.nodes[n].aliases:
                for c in self._consumers[n]:
                    if c not in exposed_grad:
                        exposed_grad.add(c)
                        stack.append(c)
        self._only_graph_inputs = {n for n in self.nodes
                                   if all(i in self.inputs for i in self.node_inputs[n])}
        for name, layer in self.nodes.items():
            layer.reuse_buffers = name not in exposed_out and name not in exposed_grad
        # Outputs and input gradients that stay inside the model share one arena per
        # thread, laid out per batch size by cnnframe.graph.memory (plans cached here).
        self._exposed_out, self._exposed_grad = exposed_out, exposed_grad
        self._memory_plans = {}
        from cnnframe.layers.pooling import MaxPool2d
        pools = [layer for layer in self.nodes.values() if type(layer) is MaxPool2d]
        for layer in pools:
            layer.keep_argmax = True
        if PLAN_MEMORY:
            for name in argmax_recomputable(self):
                self.nodes[name].keep_argmax = False

    def _memory_plan(self, batch_size):
        """The memory plan for `batch_size` in the model's dtype (cached: planning takes
        milliseconds, a lookup none; the latest MAX_CACHED_PLANS batch sizes are kept)."""
        key = (batch_size, self.dtype)
        plan = self._memory_plans.get(key)
        if plan is None:
            plan = plan_memory(self, batch_size)
            with self._plan_lock:  # several threads may be planning at once
                while len(self._memory_plans) >= MAX_CACHED_PLANS:
                    del self._memory_plans[next(iter(self._memory_plans))]
                self._memory_plans[key] = plan
        return plan

    def _bind_plan(self, runner, batch_size):
        """Give the runner's layers their views of its arena for this batch size.

        Called on every forward: the same batch size as the last call costs one
        comparison; a batch size seen before (within MAX_CACHED_PLANS) reuses its plan
        and, while the arena is the same, its views.
        """
        key = (batch_size, self.dtype)
        if runner.bound == key:
            return
        views = runner.views.get(key)
        if views is None:
            plan = self._memory_plan(batch_size)
            if arena_capacity(runner.arena) < plan.nbytes:
                runner.arena = None  # let the old one go before the new one is touched
                runner.views.clear()  # views of the old arena
                runner.arena = new_arena(plan.nbytes)
            views = {name: plan.views(runner.arena, name) for name in runner.layers}
            while len(runner.views) >= MAX_CACHED_PLANS:
                del runner.views[next(iter(runner.views))]
            runner.views[key] = views
        for name, layer in runner.layers.items():
            layer._planned = views[name]
        runner.bound = key

    def memory_estimate(self, batch_size=128):
        """Planned memory of one training step (forward and backward) on `batch_size` samples.

        Returns
        -------
        dict of byte counts: "activations" (what forward keeps for backward),
        "gradients" (what backward needs beyond that), "workspace" (the kernels'
        scratch held now) and "total"; see :func:`cnnframe.graph.memory.memory_estimate`.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"Model.memory_estimate: batch_size must be an int >= 1, "
                             f"got {batch_size!r}")
        return memory_estimate(self, int(batch_size))

    # --- threads (see the class docstring) -----------------------------------------------------
    def _init_threads(self):
        self._local = threading.local()     # .runner: this thread's _Runner
        self._runner_lock = threading.Lock()
        self._plan_lock = threading.Lock()    # held while adding to _memory_plans
        self._home = None                   # the thread that runs on the layers in self.nodes
        self._generation = 0                # bumped when the layers' arrays are replaced
        self._step_lock = threading.Lock()  # held inside forward(training=True) and backward
        self._step_thread = None            # the thread holding it
        self._train_forwards = 0            # forward(training=True) calls so far ...
        self._last_train_thread = None      # ... and the thread of the latest one

    def __getstate__(self):  # copy.deepcopy and pickle: locks and threads are not copied
        state = dict(self.__dict__)
        for key in ("_local", "_runner_lock", "_plan_lock", "_home", "_step_lock",
                    "_step_thread", "_last_train_thread"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_threads()

    def _runner(self):
        """This thread's _Runner, made on its first call (and after astype)."""
        runner = getattr(self._local, "runner", None)
        if runner is None or runner.generation != self._generation:
            runner = self._new_runner()
            self._local.runner = runner
        return runner

    def _new_runner(self):
        me = threading.current_thread()
        with self._runner_lock:
            home = self._home
            if home is None or home is me or not home.is_alive():
                self._home = me
                return _Runner(self.nodes, self._generation)
        copies = {name: layer.thread_copy() for name, layer in self.nodes.items()}
        return _Runner(copies, self._generation)

    def _enter_step(self, what):
        """Claim the training path for this thread, or raise if another thread is inside it."""
        me = threading.current_thread()
        if not self._step_lock.acquire(blocking=False):
            other = self._step_thread
            who = f"thread {other.name!r}" if other is not None else "another thread"
            raise RuntimeError(
                f"Model.{what} called in thread {me.name!r} while {who} is inside "
                "forward(training=True) or backward of the same model.  Training changes the "
                "model's shared gradients, batch-norm running statistics and weights, so one "
                "thread at a time may train a model: train from one thread, or hold one lock "
                "around each whole step (forward, backward, optimizer step).  For inference "
                "from several threads call forward(x, training=False), which is thread-safe.")
        self._step_thread = me
        return me

    def _leave_step(self):
        self._step_thread = None
        self._step_lock.release()

    # --- running ---------------------------------------------------------------------------------
    def _feeds(self, x):
        if isinstance(x, dict):
            missing = [k for k in self.inputs if k not in x]
            extra = [k for k in x if k not in self.inputs]
            if missing or extra:
                raise ValueError(f"Model.forward: the input dict must have exactly the keys "
                                 f"{list(self.inputs)}; missing {missing}, unexpected {extra}")
            items = [(k, x[k]) for k in self.inputs]
        elif len(self.inputs) == 1:
            items = [(next(iter(self.inputs)), x)]
        else:
            raise TypeError(f"Model.forward: this model has several inputs {list(self.inputs)}; "
                            f"pass a dict name -> array")
        feeds = {}
        for name, arr in items:
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"Model.forward: input {name!r} must be a numpy ndarray, got "
                                f"{type(arr).__name__}")
            if arr.shape[1:] != self.inputs[name] or arr.ndim != len(self.inputs[name]) + 1:
                raise ValueError(f"Model.forward: input {name!r} must have shape (N, "
                                 f"{', '.join(map(str, self.inputs[name]))}), got {arr.shape}")
            if arr.dtype != self.dtype:
                if arr.dtype.kind not in "fiu":
                    raise TypeError(f"Model.forward: input {name!r} has dtype {arr.dtype}; "
                                    f"expected {self.dtype}")
                arr = arr.astype(self.dtype)
            feeds[name] = arr
        return feeds

    def forward(self, x, training=True):
        """Run the graph.

        Parameters
        ----------
        x : ndarray ``(N, *input_shape)``, or dict input name -> ndarray
            Inputs of another dtype are converted to the model dtype.
        training : bool
            Training mode (batch statistics, dropout) or eval mode.

        Returns
        -------
        ndarray, or dict output name -> ndarray for several outputs.

        Raises
        ------
        RuntimeError
            For ``training=True`` while another thread is inside forward(training=True)
            or backward of this model (see "Threads" in the class docstring).
        """
        runner = self._runner()
        runner.serial = None  # until this forward completes, there is nothing to backpropagate
        runner.spent = False
        if not training:
            y = self._forward(runner.layers, x, training, runner)
            runner.serial = self._train_forwards
            return y
        me = self._enter_step("forward(training=True)")
        try:
            y = self._forward(runner.layers, x, training, runner)
            self._train_forwards += 1
            self._last_train_thread = me
            runner.serial = self._train_forwards
        finally:
            self._leave_step()
        return y

    __call__ = forward

    def _forward(self, layers, x, training, runner=None):
        values = self._feeds(x)
        if runner is not None and PLAN_MEMORY:
            self._bind_plan(runner, next(iter(values.values())).shape[0])
        for name, ins, several, shape in self._steps:
            layer = layers[name]
            y = layer.forward([values[i] for i in ins] if several else values[ins[0]], training)
            if not isinstance(y, np.ndarray) or y.shape[1:] != shape:
                raise RuntimeError(f"node {name!r} ({layer.type_name}): forward returned shape "
                                   f"{getattr(y, 'shape', type(y).__name__)}, but output_shape "
                                   f"promised (N, {', '.join(map(str, self.shapes[name]))})")
            values[name] = y
        if len(self.outputs) == 1:
            return values[self.outputs[0]]
        return {o: values[o] for o in self.outputs}

    @staticmethod
    def _acc_buffer(acc, name, like):
        size = like.size
        buf = acc.get(name)
        if buf is None or buf.dtype != like.dtype or buf.size < size:
            buf = np.empty(size, like.dtype)
            acc[name] = buf
        return buf[:size].reshape(like.shape)

    def _sum_grads(self, runner, name, grads, gi):
        """grads[name] + gi for a node or graph input that feeds several others.

        The sum goes in place into grads[name] when that is this thread's planned memory
        (the plan keeps it until the node's backward) and no other pending gradient shares
        it (add hands the same grad_y to all its inputs): no buffer of its own, and the
        in-place add makes one pass fewer over memory.  Otherwise it goes into a buffer of
        the model's (fresh for graph inputs, whose gradient is handed to the caller).
        Either way the values are grads[name] + gi, bit for bit.
        """
        first = grads[name]
        if (name in self.nodes and runner.arena is not None
                and np.may_share_memory(first, runner.arena)
                and not any(np.may_share_memory(first, g) for k, g in grads.items()
                            if k != name)):
            np.add(first, gi, out=first)
            return first
        out = (np.empty(gi.shape, first.dtype) if name in self.inputs
               else self._acc_buffer(runner.acc, name, first))
        np.add(first, gi, out=out)
        return out

    def backward(self, grad_y, need_input_grad=True, layer_done=None):
        """Backpropagate from the outputs, filling every layer's ``grads``.

        Parameters
        ----------
        grad_y : ndarray, or dict output name -> ndarray
            Gradient of the loss with respect to the output(s) of the latest forward.
        need_input_grad : bool
            False skips the gradient with respect to the graph inputs (and the
            first convolutions' input-gradient work), returning None.
        layer_done : callable(node name), optional
            Called right after each node's backward, in backward order, when that
            node's ``grads`` are final (data-parallel training starts reducing
            them there, while the rest of backward runs).

        Returns
        -------
        The gradient with respect to the input (ndarray, or dict for several
        inputs), or None when need_input_grad is False.

        Raises
        ------
        RuntimeError
            If this thread has no completed forward, if another thread is inside
            forward(training=True) or backward of this model, or if another thread
            ran forward(training=True) since this thread's forward (see "Threads" in
            the class docstring).
        """
        runner = self._runner()
        me = self._enter_step("backward")
        try:
            if runner.serial is None:
                raise RuntimeError(
                    f"Model.backward called before forward in thread {me.name!r}: run "
                    "forward in this thread first (a forward that raised leaves nothing to "
                    "backpropagate, and a backward runs in the thread that ran its forward)")
            if runner.serial != self._train_forwards:
                other = self._last_train_thread
                raise RuntimeError(
                    f"Model.backward in thread {me.name!r}: thread "
                    f"{other.name if other is not None else '?'!r} ran forward(training=True) "
                    "on this model after this thread's forward, so two threads are training "
                    "one model at once and their gradients and weight updates would mix.  "
                    "Train from one thread, or hold one lock around each whole step (forward, "
                    "backward, optimizer step).")
            if runner.spent:
                raise RuntimeError(
                    f"Model.backward called twice after one forward in thread {me.name!r}: "
                    "the first backward wrote gradients into the memory of the arrays the "
                    "forward kept for it (cnnframe.graph.memory), so run forward again "
                    "before another backward")
            return self._backward(runner, grad_y, need_input_grad, layer_done)
        finally:
            self._leave_step()

    def _backward(self, runner, grad_y, need_input_grad, layer_done=None):
        if isinstance(grad_y, dict):
            if set(grad_y) != set(self.outputs):
                raise ValueError(f"Model.backward: grad_y must have exactly the keys "
                                 f"{self.outputs}, got {list(grad_y)}")
            grads = dict(grad_y)
        elif len(self.outputs) == 1:
            grads = {self.outputs[0]: grad_y}
        else:
            raise TypeError(f"Model.backward: this model has several outputs {self.outputs}; "
                            "pass a dict name -> gradient")
        for name, g in grads.items():
            if not isinstance(g, np.ndarray) or g.shape[1:] != self.shapes[name]:
                raise ValueError(f"Model.backward: gradient for output {name!r} must have shape "
                                 f"(N, {', '.join(map(str, self.shapes[name]))}), got "
                                 f"{getattr(g, 'shape', type(g).__name__)}")
            if g.dtype != self.dtype:
                grads[name] = g.astype(self.dtype)
        runner.spent = True  # from here on the forward's kept arrays are overwritten
        owned = set()
        plan = None if need_input_grad else self._frozen_plan()
        for name in reversed(self._order):
            layer = runner.layers[name]
            if plan is None:
                g = grads.pop(name)
                layer.needs_input_grad = need_input_grad or name not in self._only_graph_inputs
            else:
                g = grads.pop(name, None)
                if name not in plan:  # frozen, and nothing upstream trains: no work at all
                    if layer_done is not None:
                        layer_done(name)
                    continue
                layer.needs_input_grad = plan[name]
            gx = layer.backward(g)
            if layer_done is not None:
                layer_done(name)
            ins = self.node_inputs[name]
            gxs = gx if layer.num_inputs is None else [gx]
            for i, gi in zip(ins, gxs):
                if gi is None or (i in self.inputs and not need_input_grad):
                    continue
                if i not in grads:
                    grads[i] = gi
                elif i in owned:
                    grads[i] += gi
                else:
                    grads[i] = self._sum_grads(runner, i, grads, gi)
                    owned.add(i)
        if not need_input_grad:
            return None
        if len(self.inputs) == 1:
            return grads[next(iter(self.inputs))]
        return {k: grads[k] for k in self.inputs}

    def _frozen_plan(self):
        """With frozen parameters: node -> whether it needs its input gradient, for the nodes
        whose backward must run (None when nothing is frozen: every node runs).

        A node's input gradient is needed only when a node upstream of it has trainable
        parameters; a node needing neither that nor its own weight gradients is skipped.
        """
        if not any(getattr(layer, "frozen_params", None) for layer in self.nodes.values()):
            return None
        upstream = {}  # node -> a node upstream of it has trainable parameters
        plan = {}
        for name in self._order:
            upstream[name] = any(i in self.nodes and (upstream[i] or self.nodes[i].trainable
                                                      and bool(self.nodes[i].params))
                                 for i in self.node_inputs[name])
            layer = self.nodes[name]
            if upstream[name] or (layer.params and layer.trainable):
                plan[name] = upstream[name]
        return plan

    # --- parameters and state ----------------------------------------------------------------
    @property
    def frozen_params(self):
        """The "node.param" keys of frozen parameters (optimizers skip them; see `freeze`)."""
        return {f"{n}.{k}" for n, layer in self.nodes.items()
                for k in getattr(layer, "frozen_params", ())}

    def freeze(self, *patterns):
        """Freeze the parameters the patterns select; returns their keys.

        Patterns as `cnnframe.optim.groups` ("conv1" for a node's parameters, "*.bias",
        "bn*", "conv1.weight").  Frozen parameters get no update and no weight decay from
        the optimizers, and backward skips the work only they would need (the whole
        backward of frozen nodes with nothing trainable upstream).  Batch-norm running
        statistics still update in training mode, as in PyTorch.

        Raises
        ------
        ValueError
            A pattern that selects no parameter (naming the parameters).
        """
        from cnnframe.optim.groups import select
        keys = select(self.params, patterns, "Model.freeze")
        for key in keys:
            node, _, name = key.partition(".")
            self.nodes[node].frozen_params.add(name)
        return keys

    def unfreeze(self, *patterns):
        """Unfreeze the parameters the patterns select (all without patterns); returns them."""
        from cnnframe.optim.groups import select
        keys = select(self.params, patterns, "Model.unfreeze") if patterns else list(self.params)
        for key in keys:
            node, _, name = key.partition(".")
            self.nodes[node].frozen_params.discard(name)
        return keys

    def _collect(self, attr):
        return {f"{n}.{k}": v for n, layer in self.nodes.items()
                for k, v in getattr(layer, attr).items()}

    @property
    def params(self):
        """"node.param" -> the live parameter arrays (updated in place by optimizers)."""
        return self._collect("params")

    @property
    def grads(self):
        """"node.param" -> the latest backward's gradients (same keys and shapes as params)."""
        return self._collect("grads")

    @property
    def buffers(self):
        """"node.buffer" -> untrained state such as batch-norm running statistics."""
        return self._collect("buffers")

    def num_params(self):
        return int(sum(p.size for p in self.params.values()))

    def zero_grad(self):
        for layer in self.nodes.values():
            layer.zero_grad()

    def state_dict(self):
        """Copies of params and buffers, "node.name" -> ndarray."""
        state = {k: v.copy() for k, v in self.params.items()}
        state.update({k: v.copy() for k, v in self.buffers.items()})
        return state

    def load_state_dict(self, state, mapping=None, strict=True):
        """Copy params and buffers from `state` in place (converted to the model dtype).

        `state` may use cnnframe's keys (``node.param``, as :meth:`state_dict` gives) or
        PyTorch's nested module paths (``layer1.0.conv1.weight``, ``bn1.running_var``):
        keys are matched by `mapping`, then by name, then by node name (the module path
        with ``_`` for ``.``), then the remaining modules in the state dict's order to the
        remaining nodes in graph order, each pair holding the same kinds of parameters
        with the same shapes (:mod:`cnnframe.graph.state_names`).  ``num_batches_tracked``
        entries are dropped.  Values may be numpy arrays or PyTorch tensors.

        Parameters
        ----------
        state : dict
            Key -> array.  Read it from a file with :func:`cnnframe.interop.read_weights`.
        mapping : dict or callable, optional
            State key (or module path) -> model key (or node name), or a function of the
            state key returning the model key; None drops that key.
        strict : bool
            False loads what matches and leaves model params that nothing matched as
            they are, ignoring unmatched keys of `state` (wrong shapes, wrong kinds of
            parameters and two keys for one parameter are still errors).

        Returns
        -------
        dict
            State key -> the model key it was loaded into.

        Raises
        ------
        ValueError
            Nothing is loaded: the first line lists the missing keys, unexpected keys and
            shape mismatches; a table follows with every state key, its shape, the model
            key it matched (and how) or what is wrong.
        TypeError
            For a non-numeric value, or a bad `mapping`.
        """
        from cnnframe.graph import state_names
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict: state must be a dict key -> array, got "
                            f"{type(state).__name__}")
        state = {k: state_names.as_array(v, k) for k, v in state.items()}
        plan = state_names.plan(self, state, mapping)
        targets = self.params
        targets.update(self.buffers)
        shapes = [f"{k}: expected {targets[t].shape}, got {np.shape(state[k])}"
                  for k, t in plan.pairs.items() if plan.bad.get(k) == "shape mismatch"]
        others = [f"{k}: {why}" for k, why in plan.bad.items() if why != "shape mismatch"
                  and why != "kind mismatch"]
        if plan.bad or (strict and (plan.missing or plan.unexpected)):
            parts = ([f"missing keys {plan.missing}"] if plan.missing else []) + (
                [f"unexpected keys {plan.unexpected}"] if plan.unexpected else []) + (
                [f"shape mismatch ({'; '.join(shapes)})"] if shapes else []) + others
            hint = ("" if mapping is not None else "\nPass mapping={state key or module path: "
                    "model key or node name} (or a function) for the keys matched wrongly "
                    "or not at all.")
            raise ValueError("load_state_dict: " + ", ".join(parts) + "\n"
                             + state_names.table(self, state, plan) + hint)
        for k, target in plan.pairs.items():
            np.copyto(targets[target], state[k], casting="unsafe")
        return dict(plan.pairs)

    def astype(self, dtype):
        """Convert every layer to `dtype` (float32 or float64) in place; return self.

        Parameter arrays are replaced, so build optimizers after converting.
        """
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"Model.astype: dtype must be float32 or float64, got {dtype}")
        if dtype.itemsize > self.dtype.itemsize:
            self._check_size(dtype.itemsize)
        for layer in self.nodes.values():
            layer.astype(dtype)
        self.dtype = dtype
        self._generation += 1  # every thread's runner is remade: copies hold the old arrays
        return self

    # --- persistence and reporting ---------------------------------------------------------------
    def save(self, path):
        """Write config, weights and buffers to one file (:func:`cnnframe.graph.io.save_model`).

        A path ending in ``.safetensors`` gets a safetensors file (the config in its
        metadata); any other path cnnframe's own format (``.cnnf``).
        """
        from cnnframe.graph.io import save_model
        return save_model(self, path)

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save`, .cnnf or .safetensors
        (see :func:`cnnframe.graph.io.load_model`)."""
        from cnnframe.graph.io import load_model
        return load_model(path, cls)

    def summary(self, batch_size=128):
        """A table: node, type, inputs, output shape, params, forward FLOPs, receptive field;
        then totals and the planned training memory at `batch_size` (:meth:`memory_estimate`)."""
        from cnnframe.graph.summary import summary
        return summary(self, batch_size)

    def __repr__(self):
        return (f"Model(inputs={list(self.inputs)}, nodes={len(self.nodes)}, "
                f"outputs={self.outputs}, params={self.num_params()}, dtype={self.dtype.name})")
