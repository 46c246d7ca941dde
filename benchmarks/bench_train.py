"""Training and inference throughput of cifar10_small, next to PyTorch (CPU) on the same net.

    python benchmarks/bench_train.py [--threads 2] [--batch 128] [--infer-batch 256]
                                     [--rounds 5] [--steps 10] [--config CONFIG]

Measures, in one run and interleaved round by round (so both see the same machine load):

- training images/s: one optimizer step of the Trainer (forward, softmax cross-entropy,
  backward without the input gradient, SGD with Nesterov momentum and weight decay) on a
  float32 batch of random CIFAR-sized images;
- inference images/s: forward in eval mode;
- the same two for PyTorch when it is importable (never a cnnframe dependency), the net
  built layer for layer from the same config, torch.set_num_threads(threads);
- a per-layer breakdown of one cnnframe training step (forward and backward of every node,
  the loss and the optimizer step): where the time goes.

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


def build_torch(model_cfg, optim_cfg, loss_cfg):
    """The same layer stack in PyTorch, from the model's graph config (sequential chains)."""
    import torch
    from torch import nn
    layers = []
    prev = None
    for node in model_cfg["nodes"]:
        if prev is not None and node["inputs"] != [prev]:
            raise ValueError("bench_train builds PyTorch nets for sequential models only")
        prev = node["name"]
        t, c = node["type"], node["config"]
        if t == "conv2d":
            pad = c["padding"]
            layers.append(nn.Conv2d(c["in_channels"], c["out_channels"], c["kernel_size"],
                                    c["stride"], pad, c["dilation"], c["groups"], c["bias"]))
        elif t == "batch_norm2d":
            layers.append(nn.BatchNorm2d(c["num_features"], eps=c["eps"], momentum=c["momentum"]))
        elif t == "relu":
            layers.append(nn.ReLU(inplace=True))
        elif t == "max_pool2d":
            layers.append(nn.MaxPool2d(c["kernel_size"], c["stride"], c["padding"]))
        elif t == "avg_pool2d":
            layers.append(nn.AvgPool2d(c["kernel_size"], c["stride"], c["padding"]))
        elif t == "global_avg_pool2d":
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif t == "flatten":
            layers.append(nn.Flatten())
        elif t == "linear":
            layers.append(nn.Linear(c["in_features"], c["out_features"], c["bias"]))
        elif t == "dropout":
            layers.append(nn.Dropout(c["p"]))
        else:
            raise ValueError(f"bench_train: no PyTorch equivalent for layer type {t!r}")
    net = nn.Sequential(*layers)
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
    return net, opt, loss


def time_calls(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def layer_breakdown(trainer, x, y, repeats):
    """Seconds per node forward/backward, loss and optimizer step, medians over `repeats`."""
    model, loss_fn, opt = trainer.model, trainer.loss, trainer.optimizer
    order = list(model._order)
    for name in order:
        if model.nodes[name].num_inputs is None:
            raise ValueError("layer breakdown: sequential models only")
    samples = {}

    def add(key, dt):
        samples.setdefault(key, []).append(dt)
    for _ in range(repeats):
        h = x
        for name in order:
            t0 = time.perf_counter()
            h = model.nodes[name].forward(h, True)
            add((name, "forward"), time.perf_counter() - t0)
        t0 = time.perf_counter()
        loss_fn.forward(h, y)
        g = loss_fn.backward()
        add(("loss", "fwd+bwd"), time.perf_counter() - t0)
        for i, name in enumerate(reversed(order)):
            layer = model.nodes[name]
            layer.needs_input_grad = i != len(order) - 1
            t0 = time.perf_counter()
            g = layer.backward(g)
            add((name, "backward"), time.perf_counter() - t0)
        t0 = time.perf_counter()
        opt.step()
        add(("optimizer", "step"), time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


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
        net, topt, tloss = build_torch(model.to_config(), cfg["optimizer"], cfg["loss"])
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
          f"sum {1e3 * total:.1f} ms):")
    print(f"{'node':<22}{'type':<20}{'forward ms':>11}{'backward ms':>13}{'share':>8}")
    # A ReLU fused into the batch norm before it costs nothing of its own (graph/model.py).
    rows = [(n, model.nodes[n].type_name + (" (fused)" if getattr(model.nodes[n], "fused", False)
                                            else "")) for n in model._order]
    rows += [("loss", type(trainer.loss).__name__),
             ("optimizer", type(trainer.optimizer).__name__)]
    for n, t in rows:
        f = bd.get((n, "forward"), bd.get((n, "fwd+bwd"), bd.get((n, "step"), 0.0)))
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
