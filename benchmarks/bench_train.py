"""Training and inference throughput of a config's net, next to PyTorch (CPU) on the same net.

    python benchmarks/bench_train.py [--threads 2] [--batch 128] [--infer-batch 256]
                                     [--rounds 5] [--steps 10] [--config CONFIG]

CONFIG defaults to examples/configs/cifar10_small.toml; graphs with residual adds, such as
cifar10_resnet.toml, work too.

Measures, in one run and interleaved round by round (so both see the same machine load):

- training images/s: one optimizer step of the Trainer (forward, softmax cross-entropy,
  backward without the input gradient, SGD with Nesterov momentum and weight decay) on a
  float32 batch of random CIFAR-sized images;
- inference images/s: forward in eval mode;
- the same two for PyTorch when it is importable (never a cnnframe dependency), the net
  built node for node from the same config, torch.set_num_threads(threads); before timing,
  it gets cnnframe's weights and must give the same outputs;
- a per-layer breakdown of cnnframe's training step (forward and backward of every node,
  the loss, the optimizer step and the graph's own work): where the time goes.

Numbers are medians over rounds.  Data loading and augmentation are not included (they
run in the loader's background thread during training).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

from cnnframe._alloc import keep_freed_memory

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "examples", "configs", "cifar10_small.toml")


def build_cnnframe(cfg):
    from cnnframe.optim import build_optimizer
    from cnnframe.train import Trainer
    from cnnframe.train.runs import build_loss, build_model
    model = build_model(cfg)
    opt = build_optimizer(cfg["optimizer"], model)
    return Trainer(model, build_loss(cfg), opt, progress=False, log=lambda *a: None)


def torch_layer(node, inplace_relu):
    """The PyTorch module for one node of the graph config (None for merge nodes)."""
    from torch import nn
    t, c = node["type"], node["config"]
    if t == "conv2d":
        return nn.Conv2d(c["in_channels"], c["out_channels"], c["kernel_size"], c["stride"],
                         c["padding"], c["dilation"], c["groups"], c["bias"])
    if t == "batch_norm2d":
        return nn.BatchNorm2d(c["num_features"], eps=c["eps"], momentum=c["momentum"])
    if t == "relu":
        return nn.ReLU(inplace=inplace_relu)
    if t == "max_pool2d":
        return nn.MaxPool2d(c["kernel_size"], c["stride"], c["padding"])
    if t == "avg_pool2d":
        return nn.AvgPool2d(c["kernel_size"], c["stride"], c["padding"])
    if t == "global_avg_pool2d":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if t == "flatten":
        return nn.Flatten()
    if t == "linear":
        return nn.Linear(c["in_features"], c["out_features"], c["bias"])
    if t == "dropout":
        return nn.Dropout(c["p"])
    if t == "add":
        return None
    raise ValueError(f"bench_train: no PyTorch equivalent for layer type {t!r}")


def build_torch(model_cfg, optim_cfg, loss_cfg):
    """The same net in PyTorch, from the model's graph config.

    A chain becomes an nn.Sequential; a graph with branches (residual adds) a module that
    runs the nodes in the config's order.  ReLUs work in place, as PyTorch users write them,
    where nothing else reads their input.
    """
    import torch
    from torch import nn
    nodes = model_cfg["nodes"]
    readers = {}
    for node in nodes:
        for i in node["inputs"]:
            readers[i] = readers.get(i, 0) + 1
    layers = {n["name"]: torch_layer(n, inplace_relu=all(readers[i] == 1 for i in n["inputs"]))
              for n in nodes}
    chain = all(n["inputs"] == [p["name"]] for p, n in zip(nodes, nodes[1:]))
    if chain and None not in layers.values():
        net = nn.Sequential(*layers.values())
    else:
        class GraphNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.nodes = nn.ModuleDict({k: v for k, v in layers.items() if v is not None})

            def forward(self, x):
                values = {name: x for name in model_cfg["inputs"]}
                for node in nodes:
                    xs = [values[i] for i in node["inputs"]]
                    values[node["name"]] = (sum(xs[1:], xs[0]) if node["type"] == "add"
                                            else self.nodes[node["name"]](xs[0]))
                return values[model_cfg["outputs"][0]]
        net = GraphNet()
    o = {k: v for k, v in optim_cfg.items() if k != "type"}
    kind = optim_cfg["type"].lower()
    if kind == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=o.get("lr", 0.01),
                              momentum=o.get("momentum", 0), nesterov=o.get("nesterov", False),
                              weight_decay=o.get("weight_decay", 0))
    elif kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        kw = {k: o[k] for k in ("lr", "eps", "weight_decay") if k in o}
        if "betas" in o:
            kw["betas"] = tuple(o["betas"])
        opt = cls(net.parameters(), **kw)
    else:
        raise ValueError(f"bench_train: no PyTorch equivalent for optimizer {kind!r}")
    loss = nn.CrossEntropyLoss(label_smoothing=loss_cfg.get("label_smoothing", 0.0))
    return net, opt, loss, layers


def copy_weights_and_compare(model, net, modules, x):
    """Give the PyTorch net cnnframe's parameters and running statistics, and return the
    largest difference of the two nets' eval-mode outputs on x relative to the largest
    logit: evidence that both sides time the same function."""
    import torch
    with torch.no_grad():
        for name, module in modules.items():
            if module is None:
                continue
            layer = model.nodes[name]
            for key, value in {**layer.params, **layer.buffers}.items():
                getattr(module, key).copy_(torch.from_numpy(np.asarray(value, np.float32)))
        net.eval()
        theirs = net(torch.from_numpy(x)).numpy()
    mine = model.forward(x, training=False)
    return float(np.abs(mine - theirs).max() / np.abs(theirs).max())


def time_calls(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def layer_breakdown(trainer, x, y, repeats):
    """Seconds per node forward/backward, loss, optimizer step and the rest of the step.

    Times the real `Trainer.train_step` with a timer around every layer's forward and
    backward, the loss and the optimizer; "graph" is what is left of the step (gradient
    sums where a node feeds several others, shape checks, the schedule).  Medians over
    `repeats` steps.
    """
    model, loss_fn, opt = trainer.model, trainer.loss, trainer.optimizer
    samples = {}

    def timed(obj, method, key):
        fn = getattr(obj, method)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            samples.setdefault(key, []).append(time.perf_counter() - t0)
            return out
        setattr(obj, method, wrapper)  # an instance attribute over the class's method

    patched = [(layer, m, (name, m)) for name, layer in model.nodes.items()
               for m in ("forward", "backward")]
    patched += [(loss_fn, m, ("loss", m)) for m in ("forward", "backward")]
    patched.append((opt, "step", ("optimizer", "step")))
    for obj, m, key in patched:
        timed(obj, m, key)
    try:
        steps = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            trainer.train_step(x, y)
            steps.append(time.perf_counter() - t0)
    finally:
        for obj, m, _ in patched:
            delattr(obj, m)
    bd = {k: statistics.median(v) for k, v in samples.items()}
    bd[("graph", "other")] = max(0.0, statistics.median(steps) - sum(bd.values()))
    return bd


def main(argv=None):
    keep_freed_memory()  # page faults would otherwise swamp both sides (cnnframe/_alloc.py)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--infer-batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8, help="training steps timed per round")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)

    import cnnframe
    from cnnframe.train import load_config
    cnnframe.set_num_threads(args.threads)
    cfg = load_config(args.config)
    trainer = build_cnnframe(cfg)
    model = trainer.model
    shape = next(iter(model.inputs.values()))
    n_classes = model.shapes[model.outputs[0]][0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, *shape), dtype=np.float32)
    y = rng.integers(0, n_classes, args.batch)
    xi = rng.standard_normal((args.infer_batch, *shape), dtype=np.float32)

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch is not installed: cnnframe numbers only "
                  "(pip install torch to compare)")
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        net, topt, tloss, modules = build_torch(model.to_config(), cfg["optimizer"], cfg["loss"])
        diff = copy_weights_and_compare(model, net, modules, xi[:16])
        print(f"same net in PyTorch: eval outputs agree to {diff:.1e} of the largest logit")
        if diff > 1e-3:
            raise SystemExit("bench_train: the PyTorch net does not compute what cnnframe's does")
        tx, ty, txi = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xi)

        def torch_train():
            topt.zero_grad(set_to_none=True)
            tloss(net(tx), ty).backward()
            topt.step()

        def torch_infer():
            with torch.no_grad():
                net(txi)

    def cf_train():
        trainer.train_step(x, y)

    def cf_infer():
        model.forward(xi, training=False)

    # Warm-up: buffers, scratch memory, BLAS/OpenMP pools.
    for _ in range(3):
        cf_train()
        cf_infer()
        if torch is not None:
            net.train()
            torch_train()
            net.eval()
            torch_infer()
    res = {"cnnframe train": [], "cnnframe infer": [], "torch train": [], "torch infer": []}
    infer_calls = max(2, args.steps // 2)
    for _ in range(args.rounds):
        res["cnnframe train"].append(args.batch / time_calls(cf_train, args.steps))
        res["cnnframe infer"].append(args.infer_batch / time_calls(cf_infer, infer_calls))
        if torch is not None:
            net.train()
            res["torch train"].append(args.batch / time_calls(torch_train, args.steps))
            net.eval()
            res["torch infer"].append(args.infer_batch / time_calls(torch_infer, infer_calls))
    med = {k: statistics.median(v) for k, v in res.items() if v}

    name = os.path.splitext(os.path.basename(args.config))[0]
    print(f"\n{name}: {model.num_params():,} parameters; float32; {args.threads} threads; "
          f"median of {args.rounds} rounds")
    tv = f"PyTorch {torch.__version__}" if torch is not None else "PyTorch"
    print(f"{'':<36}{'cnnframe':>12}{tv:>22}{'ratio':>9}")
    for what, key, b in (("training images/s (batch %d)" % args.batch, "train", args.batch),
                         ("inference images/s (batch %d)" % args.infer_batch, "infer",
                          args.infer_batch)):
        c = med[f"cnnframe {key}"]
        t = med.get(f"torch {key}")
        tcol = f"{t:>22.0f}" if t else f"{'-':>22}"
        ratio = f"{c / t:>8.2f}x" if t else f"{'-':>9}"
        print(f"{what:<36}{c:>12.0f}{tcol}{ratio}")

    bd = layer_breakdown(trainer, x, y, repeats=max(3, args.rounds))
    total = sum(bd.values())
    print(f"\nper-layer time of one cnnframe training step (batch {args.batch}; "
          f"{1e3 * total:.1f} ms; graph: what the step spends outside the layers):")
    print(f"{'node':<22}{'type':<20}{'forward ms':>11}{'backward ms':>13}{'share':>8}")
    # A ReLU fused into the batch norm before it costs nothing of its own (graph/model.py).
    rows = [(n, model.nodes[n].type_name + (" (fused)" if getattr(model.nodes[n], "fused", False)
                                            else "")) for n in model._order]
    rows += [("loss", type(trainer.loss).__name__),
             ("optimizer", type(trainer.optimizer).__name__), ("graph", "other")]
    for n, t in rows:
        f = bd.get((n, "forward"), bd.get((n, "step"), bd.get((n, "other"), 0.0)))
        b = bd.get((n, "backward"), 0.0)
        print(f"{n:<22}{t:<20}{1e3 * f:>11.2f}{1e3 * b:>13.2f}{100 * (f + b) / total:>7.1f}%")
    by_type = {}
    for n, t in rows:
        t = t.split(" ")[0]
        by_type[t] = by_type.get(t, 0.0) + sum(v for (k, _), v in bd.items() if k == n)
    print("by layer type: " + ", ".join(f"{t} {100 * v / total:.0f}%" for t, v in
                                         sorted(by_type.items(), key=lambda kv: -kv[1]) if v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
