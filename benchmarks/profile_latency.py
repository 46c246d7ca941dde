"""Per-layer time of inference at a small batch (default 1): where the latency goes.

    python benchmarks/profile_latency.py [--config CONFIG] [--batch 1] [--threads 2]
                                         [--calls 200] [--only NODE_OR_TYPE]

CONFIG is a model or training config (default examples/configs/cifar10_small.toml).  The
script builds the model, runs ``model.forward(x, training=False)`` on a batch of `--batch`
random images `--calls` times (after a warm-up), timing every node's ``forward`` call inside
the real graph run, and prints a table: node, type, output shape, median microseconds per
call and share of the whole forward.  The last rows are the sum of the nodes' medians, the
graph's own overhead (the median over the calls of the whole forward minus its nodes' time:
input checks, the memory plan, the executor loop) and the median whole forward.

`--only` keeps the rows of the nodes whose name or type contains the text (the totals stay
those of the whole forward).  Times on a loaded machine are noisy: compare rows taken in one
run, and rerun on a quiet machine for absolute figures.
"""
import argparse
import os
import statistics
import time

import numpy as np

from _timing import aligned_table
from cnnframe._alloc import keep_freed_memory

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "examples", "configs", "cifar10_small.toml")


def timed_layers(model):
    """Shadow each node's forward with a timed one; returns node name -> list of seconds."""
    times = {}
    for name, layer in model.nodes.items():
        spent = times[name] = []

        def timed(x, training=True, _forward=layer.forward, _spent=spent):
            t0 = time.perf_counter()
            y = _forward(x, training)
            _spent.append(time.perf_counter() - t0)
            return y
        layer.forward = timed  # an instance attribute: the Model's executor calls this one
    return times


def profile(model, batch, calls, seed=0):
    """Median seconds per node and of the whole forward, over `calls` forward calls.

    Returns
    -------
    per_node : dict node name -> median seconds of its forward
    whole : float, median seconds of model.forward(x, training=False)
    overhead : float, median over the calls of the whole forward minus its nodes' forwards
    """
    rng = np.random.default_rng(seed)
    feeds = {name: rng.standard_normal((batch, *shape)).astype(model.dtype)
             for name, shape in model.inputs.items()}
    x = feeds if len(feeds) > 1 else next(iter(feeds.values()))
    times = timed_layers(model)
    for _ in range(max(5, calls // 10)):  # warm-up: buffers, workspaces, caches
        model.forward(x, training=False)
    for spent in times.values():
        spent.clear()
    whole, overhead = [], []
    for k in range(calls):
        t0 = time.perf_counter()
        model.forward(x, training=False)
        whole.append(time.perf_counter() - t0)
        overhead.append(whole[-1] - sum(spent[k] for spent in times.values()))
    return ({name: statistics.median(spent) for name, spent in times.items()},
            statistics.median(whole), statistics.median(overhead))


def table(model, per_node, whole, overhead, only=None):
    """The printed table (a list of lines)."""
    rows = [("node", "type", "output shape", "us", "share")]
    for name, layer in model.nodes.items():
        kind = layer.type_name or type(layer).__name__
        if only and only not in name and only not in kind:
            continue
        shape = "x".join(map(str, model.shapes[name]))
        rows.append((name, kind, shape, f"{per_node[name] * 1e6:.1f}",
                     f"{100 * per_node[name] / whole:.1f}%"))
    nodes = sum(per_node.values())
    rows.append(("(sum of nodes)", "", "", f"{nodes * 1e6:.1f}", f"{100 * nodes / whole:.1f}%"))
    rows.append(("(graph overhead)", "", "", f"{overhead * 1e6:.1f}",
                 f"{100 * overhead / whole:.1f}%"))
    rows.append(("(whole forward)", "", "", f"{whole * 1e6:.1f}", "100.0%"))
    return aligned_table(rows, left=3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--only", default=None, metavar="TEXT",
                    help="rows of the nodes whose name or type contains TEXT")
    args = ap.parse_args(argv)
    for value, name in ((args.batch, "--batch"), (args.threads, "--threads"),
                        (args.calls, "--calls")):
        if value < 1:
            ap.error(f"{name} must be >= 1, got {value}")
    keep_freed_memory()
    import cnnframe
    from cnnframe.graph import Model
    cnnframe.set_num_threads(args.threads)
    model = Model.from_file(args.config)
    per_node, whole, overhead = profile(model, args.batch, args.calls)
    print(f"{os.path.basename(args.config)}: inference at batch {args.batch}, {args.threads} "
          f"threads, medians of {args.calls} calls (per node and whole forward)")
    print("\n".join(table(model, per_node, whole, overhead, args.only)))


if __name__ == "__main__":
    main()
