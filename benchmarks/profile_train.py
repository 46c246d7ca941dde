"""Per-layer time of a training step: where an epoch's time goes.

    python benchmarks/profile_train.py [--config CONFIG] [--batch N] [--threads 2]
                                       [--steps 10] [--only NODE_OR_TYPE]

CONFIG is a training config (default examples/configs/cifar10_fast.toml).  The script builds
its model, optimizer, loss, ``freeze`` and ``[ema]`` as ``cnnframe train`` does (the weights
random: a data-dependent ``init`` is skipped, which changes no timing), and runs `--steps`
training steps on random images after two warm-up steps.  Every node's forward and backward
are timed inside the real graph run.  The table gives per node the median milliseconds of
forward and backward per step and their share of the step; the last rows are the loss, the
optimizer step (with the EMA update), the graph's own overhead and the whole step.

The data pipeline (decoding, augmentation, batching) is not in these figures: compare the
whole step here with the training images/s that ``cnnframe train`` reports.
"""
import argparse
import os
import statistics
import time

import numpy as np

from _timing import aligned_table
from cnnframe._alloc import keep_freed_memory

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "examples", "configs", "cifar10_fast.toml")


def timed_nodes(model):
    """Shadow each node's forward and backward with timed ones.

    Returns node name -> {"forward": [seconds...], "backward": [seconds...]}.
    """
    times = {}
    for name, layer in model.nodes.items():
        spent = times[name] = {"forward": [], "backward": []}

        def forward(x, training=True, _f=layer.forward, _s=spent["forward"]):
            t0 = time.perf_counter()
            y = _f(x, training)
            _s.append(time.perf_counter() - t0)
            return y

        def backward(g, _b=layer.backward, _s=spent["backward"]):
            t0 = time.perf_counter()
            gx = _b(g)
            _s.append(time.perf_counter() - t0)
            return gx
        # instance attributes: the Model's executor calls these
        layer.forward, layer.backward = forward, backward
    return times


def build(config_path):
    """The model, loss, optimizer and EMA of a training config, as ``cnnframe train``."""
    from cnnframe.graph import Model
    from cnnframe.optim.config import build_optimizer
    from cnnframe.train.config import load_config
    from cnnframe.train.controls import build_controls
    from cnnframe.train.runs import build_loss

    cfg = load_config(config_path)
    model = Model.from_config(cfg["model"])
    loss = build_loss(cfg)
    optimizer = build_optimizer(cfg["optimizer"], model)
    controls = build_controls(cfg, model)  # freeze and [ema]
    return model, loss, optimizer, controls.get("ema")


def profile(model, loss, optimizer, ema, batch, steps, seed=0):
    """Median seconds per node (forward, backward) and of the step's other parts."""
    rng = np.random.default_rng(seed)
    (shape,) = model.inputs.values()
    x = rng.standard_normal((batch, *shape)).astype(model.dtype)
    classes = model.shapes[model.outputs[0]][0]
    y = rng.integers(0, classes, batch)
    times = timed_nodes(model)
    parts = {"loss": [], "optimizer + ema": [], "whole step": []}

    def step():
        t0 = time.perf_counter()
        logits = model.forward(x, training=True)
        t1 = time.perf_counter()
        loss.forward(logits, y)
        g = loss.backward()
        t2 = time.perf_counter()
        model.backward(g, need_input_grad=False)
        t3 = time.perf_counter()
        optimizer.step()
        if ema is not None:
            ema.update()
        t4 = time.perf_counter()
        parts["loss"].append(t2 - t1)
        parts["optimizer + ema"].append(t4 - t3)
        parts["whole step"].append(t4 - t0)

    for _ in range(2):  # warm-up: memory plan, workspaces
        step()
    for spent in [*times.values(), parts]:
        for v in spent.values():
            v.clear()
    for _ in range(steps):
        step()
    med = {name: {k: statistics.median(v) if v else 0.0 for k, v in s.items()}
           for name, s in times.items()}
    other = {k: statistics.median(v) for k, v in parts.items()}
    nodes = [sum(s[k][i] for s in times.values() for k in ("forward", "backward")
                 if s[k]) for i in range(steps)]
    other["graph overhead"] = statistics.median(
        w - n - lo - oe for w, n, lo, oe in zip(parts["whole step"], nodes, parts["loss"],
                                                parts["optimizer + ema"]))
    return med, other


def table(model, med, other, only=None):
    whole = other["whole step"]
    rows = [("node", "type", "output shape", "fwd ms", "bwd ms", "share")]
    for name, layer in model.nodes.items():
        kind = layer.type_name or type(layer).__name__
        if only and only not in name and only not in kind:
            continue
        f, b = med[name]["forward"], med[name]["backward"]
        rows.append((name, kind, "x".join(map(str, model.shapes[name])), f"{f * 1e3:.2f}",
                     f"{b * 1e3:.2f}", f"{100 * (f + b) / whole:.1f}%"))
    fsum = sum(m["forward"] for m in med.values())
    bsum = sum(m["backward"] for m in med.values())
    rows.append(("(sum of nodes)", "", "", f"{fsum * 1e3:.2f}", f"{bsum * 1e3:.2f}",
                 f"{100 * (fsum + bsum) / whole:.1f}%"))
    for k in ("loss", "optimizer + ema", "graph overhead", "whole step"):
        rows.append((f"({k})", "", "", "", f"{other[k] * 1e3:.2f}",
                     f"{100 * other[k] / whole:.1f}%"))
    return aligned_table(rows, left=3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size (default: the config's batch_size)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only", default=None, metavar="TEXT",
                    help="rows of the nodes whose name or type contains TEXT")
    args = ap.parse_args(argv)
    for value, name in ((args.batch, "--batch"), (args.threads, "--threads"),
                        (args.steps, "--steps")):
        if value is not None and value < 1:
            ap.error(f"{name} must be >= 1, got {value}")
    keep_freed_memory()
    import cnnframe
    from cnnframe.train.config import load_config
    cnnframe.set_num_threads(args.threads)
    batch = args.batch or load_config(args.config)["batch_size"]
    model, loss, optimizer, ema = build(args.config)
    med, other = profile(model, loss, optimizer, ema, batch, args.steps)
    whole = other["whole step"]
    print(f"{os.path.basename(args.config)}: training step at batch {batch}, {args.threads} "
          f"threads, {cnnframe.active_isa()}, medians of {args.steps} steps: "
          f"{whole * 1e3:.1f} ms, {batch / whole:.0f} images/s without the data pipeline")
    print("\n".join(table(model, med, other, args.only)))


if __name__ == "__main__":
    main()
