"""The layers of issue 18 against PyTorch: float64 agreement and forward + backward speed.

For each layer config the script builds the cnnframe layer and the PyTorch module with
the same config keys, copies the parameters across by name (the layouts are
PyTorch's, so this is a plain copy: a shape mismatch fails), and prints

- the largest difference in float64, relative to the largest value compared (max(1,
  |value|)), over the forward output, the input gradient, every parameter gradient
  and, for instance_norm2d with running statistics, the updated running buffers
  (training mode; eval mode too where it differs).  Target: <= 1e-10.
- the forward + backward time of a training step in float32 on a CIFAR-sized batch,
  cnnframe's and PyTorch's (medians over interleaved repeats: in each repeat both
  run back to back, so both see the same machine load), and their ratio
  (cnnframe / PyTorch; target <= 1.0);
- the ratio of the CPU time the two spend on a step (all threads of the process, medians
  as above): on a machine shared with other work, wall time also counts the waits for a
  descheduled thread, CPU time mostly the work done.

PyTorch is not a dependency of cnnframe: install it only to run this script
(``pip install torch``).  dropout2d draws its own random mask: its float64 row
compares cnnframe's output with PyTorch's formula on cnnframe's mask (and eval mode
with PyTorch's), and its speed row times each library's own draws.

    python benchmarks/compare_layers_torch.py [--threads 2] [--repeats 15] [--only gelu,silu]
"""
import argparse
import statistics
import time

import numpy as np
import torch

import cnnframe
from cnnframe._alloc import keep_freed_memory
from cnnframe.registry import get_layer

T = torch.nn
CIFAR = (64, 32, 32, 32)
SMALL = (3, 4, 6, 5)

# (cnnframe name, config, PyTorch constructor, input shape for the float64 check, input
# shape for the timing).  Configs use PyTorch's keys, so one dict builds both.
CASES = [
    ("group_norm", {"num_groups": 8, "num_channels": 32}, T.GroupNorm, (3, 32, 5, 4), CIFAR),
    ("group_norm", {"num_groups": 2, "num_channels": 4, "affine": False}, T.GroupNorm,
     SMALL, None),
    ("layer_norm", {"normalized_shape": [32, 32, 32]}, T.LayerNorm, (3, 32, 32, 32), CIFAR),
    ("layer_norm", {"normalized_shape": 5, "bias": False}, T.LayerNorm, SMALL, None),
    ("instance_norm2d", {"num_features": 32, "affine": True}, T.InstanceNorm2d,
     (3, 32, 5, 4), CIFAR),
    ("instance_norm2d", {"num_features": 4, "affine": True, "track_running_stats": True,
                         "momentum": 0.2}, T.InstanceNorm2d, SMALL, None),
    ("gelu", {}, T.GELU, SMALL, CIFAR),
    ("gelu", {"approximate": "tanh"}, T.GELU, SMALL, CIFAR),
    ("silu", {}, T.SiLU, SMALL, CIFAR),
    ("hardswish", {}, T.Hardswish, SMALL, CIFAR),
    ("elu", {"alpha": 0.8}, T.ELU, SMALL, CIFAR),
    ("prelu", {"num_parameters": 32, "init": 0.2}, T.PReLU, (3, 32, 4, 4), CIFAR),
    ("prelu", {}, T.PReLU, SMALL, None),
    ("conv_transpose2d", {"in_channels": 64, "out_channels": 32, "kernel_size": 2, "stride": 2},
     T.ConvTranspose2d, (2, 64, 4, 5), (64, 64, 16, 16)),
    ("conv_transpose2d", {"in_channels": 32, "out_channels": 32, "kernel_size": 3,
                          "padding": 1}, T.ConvTranspose2d, (2, 32, 5, 4), (64, 32, 16, 16)),
    ("conv_transpose2d", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2,
                          "padding": 1, "output_padding": 1, "groups": 2, "dilation": 2},
     T.ConvTranspose2d, SMALL, None),
    ("upsample", {"scale_factor": 2}, T.Upsample, SMALL, (64, 32, 16, 16)),
    ("upsample", {"size": [9, 7]}, T.Upsample, SMALL, None),
    ("upsample", {"scale_factor": 2, "mode": "bilinear"}, T.Upsample, SMALL, (64, 32, 16, 16)),
    ("upsample", {"scale_factor": [1.7, 2.3], "mode": "bilinear"}, T.Upsample, SMALL, None),
    ("upsample", {"size": [11, 8], "mode": "bilinear", "align_corners": True}, T.Upsample,
     SMALL, None),
    ("adaptive_avg_pool2d", {"output_size": 7}, T.AdaptiveAvgPool2d, (2, 3, 16, 15),
     (64, 64, 16, 16)),
    ("adaptive_avg_pool2d", {"output_size": [4, None]}, T.AdaptiveAvgPool2d, SMALL, None),
    ("adaptive_max_pool2d", {"output_size": 7}, T.AdaptiveMaxPool2d, (2, 3, 16, 15),
     (64, 64, 16, 16)),
    ("dropout2d", {"p": 0.3}, T.Dropout2d, SMALL, CIFAR),
]


def _tuples(cfg):
    """PyTorch wants tuples where cnnframe's JSON configs hold lists."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def build(name, cfg, torch_cls, dtype, seed=0):
    """The cnnframe layer and the PyTorch module with the same (random) parameters."""
    ours = get_layer(name).from_config(cfg).astype(dtype)
    theirs = torch_cls(**_tuples(cfg)).to(torch.float64 if dtype == np.float64 else torch.float32)
    rng = np.random.default_rng(seed)
    for key, value in ours.params.items():
        value[...] = rng.uniform(0.5, 1.5, value.shape) * rng.choice([-1, 1], value.shape)
    for key, value in ours.buffers.items():
        value[...] = value * rng.uniform(0.5, 1.5, value.shape) + rng.uniform(0, 0.2, value.shape)
    theirs_state = dict(theirs.named_parameters()) | dict(theirs.named_buffers())
    for key, value in (ours.params | ours.buffers).items():
        target = theirs_state[key]   # a KeyError here: the names differ from PyTorch's
        if tuple(target.shape) != value.shape:
            raise AssertionError(f"{name}: {key} has shape {value.shape}, PyTorch's "
                                 f"{tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(torch.from_numpy(value))
    return ours, theirs


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b), initial=0.0) / max(1.0, np.max(np.abs(b), initial=0.0)))


def float64_error(name, cfg, torch_cls, shape, seed=0):
    """The largest relative difference from PyTorch in float64 (see the module docstring)."""
    ours, theirs = build(name, cfg, torch_cls, np.float64, seed)
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for training in (True, False):
        x = rng.standard_normal(shape) * 2 + 0.3
        tx = torch.from_numpy(x).requires_grad_()
        theirs.train(training)
        y = ours.forward(x, training=training)
        if name == "dropout2d" and training:
            # PyTorch's formula on cnnframe's mask: x * keep / (1 - p), whole channels
            keep = torch.from_numpy((np.abs(y).sum(axis=(2, 3)) > 0).astype(np.float64))
            ty = tx * keep[:, :, None, None] / (1 - cfg["p"])
        else:
            ty = theirs(tx)
        g = rng.standard_normal(y.shape)
        gx = ours.backward(g)
        params = dict(theirs.named_parameters())
        grads = torch.autograd.grad(ty, [tx] + list(params.values()), torch.from_numpy(g),
                                    allow_unused=True)
        worst = max(worst, _rel(y, ty.detach().numpy()), _rel(gx, grads[0].numpy()))
        for key, tg in zip(params, grads[1:]):
            if tg is not None:
                worst = max(worst, _rel(ours.grads[key], tg.numpy()))
        for key, value in ours.buffers.items():
            worst = max(worst, _rel(value, dict(theirs.named_buffers())[key].numpy()))
    return worst


# Pause before switching library: PyTorch's OpenMP runtime and cnnframe's are separate
# libgomp copies whose idle threads spin for a while after each parallel region (see
# benchmarks/bench_layers.py).
SETTLE_S = 0.01


def speed(name, cfg, torch_cls, shape, repeats, seed=0):
    """Median forward + backward ms of cnnframe and of PyTorch, float32, training mode: wall
    time (ours, theirs) and CPU time of the process (ours, theirs)."""
    ours, theirs = build(name, cfg, torch_cls, np.float32, seed)
    ours.reuse_buffers = True   # as inside a Model
    theirs.train()
    rng = np.random.default_rng(seed + 2)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = ours.forward(x)
    g = rng.standard_normal(y.shape, dtype=np.float32)
    tx = torch.from_numpy(x).requires_grad_()
    tg = torch.from_numpy(g)
    params = list(theirs.parameters())

    def step_ours():
        ours.forward(x)
        ours.backward(g)

    def step_theirs():
        torch.autograd.grad(theirs(tx), [tx] + params, tg)

    times = {"ours": [], "theirs": []}
    cpu = {"ours": [], "theirs": []}
    for step in (step_ours, step_theirs):  # warm up: buffers, caches, thread pools
        step()
    for _ in range(repeats):
        for key, step in (("ours", step_ours), ("theirs", step_theirs)):
            time.sleep(SETTLE_S)
            step()
            c0 = time.process_time()
            t0 = time.perf_counter()
            step()
            times[key].append((time.perf_counter() - t0) * 1e3)
            cpu[key].append((time.process_time() - c0) * 1e3)
    return (statistics.median(times["ours"]), statistics.median(times["theirs"]),
            statistics.median(cpu["ours"]), statistics.median(cpu["theirs"]))


def _cfg_text(cfg):
    return ", ".join(f"{k}={v}" for k, v in cfg.items()) or "-"


def main():
    keep_freed_memory()   # no page faults on fresh outputs, for both libraries
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--only", default="", help="comma-separated layer names")
    args = ap.parse_args()
    only = {s for s in args.only.split(",") if s}
    cnnframe.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    head = (f"| layer | config | float64 max rel. error | timed input (float32) | cnnframe ms "
            f"| PyTorch ms | ratio | CPU time ratio |")
    print(head)
    print("|---|---|---|---|---|---|---|---|")
    failures = []
    for name, cfg, torch_cls, small, timed in CASES:
        if only and name not in only:
            continue
        err = float64_error(name, cfg, torch_cls, small)
        if not err <= 1e-10:
            failures.append(f"{name} ({_cfg_text(cfg)}): {err:.2e}")
        if timed is None:
            cols = "| - | - | - | - | - |"
        else:
            mine, theirs, mine_cpu, theirs_cpu = speed(name, cfg, torch_cls, timed, args.repeats)
            cols = (f"| {'x'.join(map(str, timed))} | {mine:.2f} | {theirs:.2f} "
                    f"| {mine / theirs:.2f}x | {mine_cpu / max(theirs_cpu, 1e-9):.2f}x |")
        print(f"| {name} | {_cfg_text(cfg)} | {err:.1e} {cols}", flush=True)
    print(f"\nratio = cnnframe / PyTorch, forward + backward of a training step (lower is "
          f"better), wall time and CPU time of the process; {args.threads} threads each; "
          f"medians of {args.repeats} interleaved repeats; PyTorch {torch.__version__}")
    if failures:
        print("float64 errors above 1e-10: " + "; ".join(failures))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
