"""Peak memory of a training step per image, next to PyTorch (CPU), on the same net.

    python benchmarks/bench_memory.py [--config CONFIG] [--threads 2] [--steps 3]
                                      [--cases 2x32,128x32,512x32,1024x32,32x128]
                                      [--max-mb 3000] [--no-torch] [--keep-freed]

Each case (batch x image side) runs in a fresh subprocess per framework: build the net of
CONFIG (default examples/configs/cifar10_small.toml) for that image size, one warm-up
training step (forward, softmax cross-entropy, backward, SGD), then --steps timed steps,
then read the process's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).
The fixed cost (interpreter, libraries, weights) is the same at every batch size, so the
table also gives the slope between consecutive batch sizes of one image size: megabytes
per extra image, the figure that decides how large a batch fits.

Both sides run with glibc's default allocation settings; --keep-freed makes glibc keep freed
memory for reuse on both sides, as the `cnnframe` command does (cnnframe/_alloc.py; PyTorch's
peaks grow with it).  PyTorch is optional (never a cnnframe dependency): without it only
cnnframe's columns are printed.

A case whose estimated peak (PyTorch's ~1.1 MB per 32x32 image, scaled by pixels, plus
300 MB) exceeds --max-mb is skipped: the machine is shared.
"""
import argparse
import importlib.metadata
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "examples", "configs", "cifar10_small.toml")
DEFAULT_CASES = "2x32,128x32,512x32,1024x32,32x128"


def resized_model_config(model_cfg, side):
    """The graph config of `model_cfg` for square images of `side` pixels.

    Convolutions and pools keep their settings; a linear layer's in_features follow the
    size of what feeds it."""
    import math

    from cnnframe.graph.config import normalize_config
    from cnnframe.registry import get_layer
    cfg = normalize_config(model_cfg)
    for name, shape in cfg["inputs"].items():
        cfg["inputs"][name] = [shape[0], side, side]
    shapes = {k: tuple(v) for k, v in cfg["inputs"].items()}
    for node in cfg["nodes"]:
        src = [shapes[i] for i in node["inputs"]]
        if node["type"] == "linear":
            node["config"]["in_features"] = math.prod(src[0]) if len(src[0]) > 1 else src[0][0]
        layer = get_layer(node["type"]).from_config(node["config"])
        shapes[node["name"]] = tuple(layer.output_shape(src if layer.num_inputs is None
                                                        else src[0]))
    return cfg


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def child(args):
    """Run one case in this (fresh) process; print one JSON line."""
    import numpy as np
    if args.keep_freed:
        from cnnframe._alloc import keep_freed_memory
        keep_freed_memory()
    from cnnframe.train import load_config
    cfg = load_config(args.config)
    model_cfg = resized_model_config(cfg["model"], args.side)
    rng = np.random.default_rng(0)
    shape = next(iter(model_cfg["inputs"].values()))
    x = rng.standard_normal((args.batch, *shape), dtype=np.float32)
    if args.framework == "cnnframe":
        import cnnframe
        from cnnframe.graph import Model
        from cnnframe.optim import build_optimizer
        from cnnframe.train import Trainer
        from cnnframe.train.runs import build_loss
        cnnframe.set_num_threads(args.threads)
        model = Model.from_config(model_cfg)
        n_classes = model.shapes[model.outputs[0]][0]
        trainer = Trainer(model, build_loss(cfg), build_optimizer(cfg["optimizer"], model),
                          progress=False, log=lambda *a: None)
        y = rng.integers(0, n_classes, args.batch)

        def step():
            trainer.train_step(x, y)
    else:
        import torch
        sys.path.insert(0, HERE)
        from bench_train import build_torch
        from cnnframe.graph import Model
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        full = Model.from_config(model_cfg).to_config()  # every config key filled in
        net, opt, loss, _ = build_torch(full, cfg["optimizer"], cfg["loss"])
        net.train()
        n_classes = full["nodes"][-1]["config"]["out_features"]
        tx = torch.from_numpy(x)
        ty = torch.from_numpy(rng.integers(0, n_classes, args.batch))

        def step():
            opt.zero_grad(set_to_none=True)
            loss(net(tx), ty).backward()
            opt.step()
    before = peak_mb()
    step()  # warm-up: buffers, scratch, thread pools
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - t0) / args.steps
    print(json.dumps({"peak_mb": peak_mb(), "built_mb": before,
                      "images_per_s": args.batch / seconds}))


def run_case(args, framework, batch, side):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework,
           "--batch", str(batch), "--side", str(side), "--config", args.config,
           "--threads", str(args.threads), "--steps", str(args.steps)]
    if args.keep_freed:
        cmd.append("--keep-freed")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"bench_memory: {framework} {batch}x{side}^2 failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_cases(text):
    cases = []
    for part in text.split(","):
        try:
            b, s = part.lower().split("x")
            cases.append((int(b), int(s)))
        except ValueError:
            raise SystemExit(f"bench_memory: --cases must look like 2x32,128x32; got {part!r}")
    return cases


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up step")
    ap.add_argument("--cases", default=DEFAULT_CASES, help="batch x image side, comma-separated")
    ap.add_argument("--max-mb", type=float, default=3000.0)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--keep-freed", action="store_true",
                    help="glibc keeps freed memory for reuse (as the cnnframe command does)")
    ap.add_argument("--child", choices=("cnnframe", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--side", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.framework = args.child
        return child(args)

    # This process imports neither cnnframe nor PyTorch: a child's ru_maxrss starts from the
    # resident size of the process it was forked from.
    frameworks = ["cnnframe"]
    if not args.no_torch:
        if importlib.util.find_spec("torch") is None:
            print("PyTorch is not installed: cnnframe numbers only")
        else:
            frameworks.append("torch")
            tv = f"PyTorch {importlib.metadata.version('torch')}"
    results = {}
    for batch, side in parse_cases(args.cases):
        estimate = 300 + 1.1 * batch * (side / 32) ** 2
        if estimate > args.max_mb:
            print(f"skipping {batch}x{side}^2: ~{estimate:.0f} MB estimated > --max-mb "
                  f"{args.max_mb:.0f}")
            continue
        for fw in frameworks:
            results[(fw, batch, side)] = run_case(args, fw, batch, side)

    name = os.path.splitext(os.path.basename(args.config))[0]
    print(f"\n{name}: peak RSS of a training step (forward, loss, backward, SGD step), "
          f"float32, {args.threads} threads, fresh process per cell"
          f"{', freed memory kept (glibc)' if args.keep_freed else ''}")
    cols = ["batch x image", "cnnframe MB", "img/s"]
    if "torch" in frameworks:
        cols += [f"{tv} MB", "img/s", "memory ratio", "speed ratio"]
    widths = [16, 13, 8, 24, 8, 14, 13]
    print("".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
    cases = sorted({(b, s) for _, b, s in results}, key=lambda c: (c[1], c[0]))
    for b, s in cases:
        c = results[("cnnframe", b, s)]
        row = [f"{b} x {s}^2", f"{c['peak_mb']:.0f}", f"{c['images_per_s']:.0f}"]
        t = results.get(("torch", b, s))
        if t:
            row += [f"{t['peak_mb']:.0f}", f"{t['images_per_s']:.0f}",
                    f"{c['peak_mb'] / t['peak_mb']:.2f}x",
                    f"{c['images_per_s'] / t['images_per_s']:.2f}x"]
        print("".join(f"{v:>{w}}" for v, w in zip(row, widths)))
    print("\nper extra image (slope between consecutive batch sizes of one image size):")
    print("".join(f"{c:>16}" for c in ["batches", "image", "cnnframe MB/img"]
                  + (["PyTorch MB/img", "ratio"] if "torch" in frameworks else [])))
    for s in sorted({s for _, s in cases}):
        batches = sorted(b for b, s2 in cases if s2 == s)
        for b1, b2 in zip(batches, batches[1:]):
            slope = {fw: (results[(fw, b2, s)]["peak_mb"] - results[(fw, b1, s)]["peak_mb"])
                     / (b2 - b1) for fw in frameworks}
            row = [f"{b1}->{b2}", f"{s}^2", f"{slope['cnnframe']:.3f}"]
            if "torch" in slope:
                row += [f"{slope['torch']:.3f}", f"{slope['cnnframe'] / slope['torch']:.2f}x"]
            print("".join(f"{v:>16}" for v in row))
    if len({s for _, s in cases}) > 1:
        print("(one batch size per image size gives no slope; compare its MB / batch instead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
