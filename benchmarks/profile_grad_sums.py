"""Time share of the gradient sums at fan-out nodes in a training step.

    python benchmarks/profile_grad_sums.py [--config CONFIG] [--batch 128] [--threads 2]
                                           [--rounds 5] [--steps 5]

CONFIG defaults to examples/configs/cifar10_resnet.toml, whose residual blocks make three
nodes feed two others each (16, 16 and 8 MiB gradients at batch 128).  Model.backward sums
such gradients in `Model._sum_grads`; this script times every call of it inside real
`Trainer.train_step` calls, in two modes interleaved round by round:

- "in place": the sum goes into the first gradient's planned memory (the current code);
- "own buffer": the sum goes into a separate buffer of the model's, as before the memory
  plan (np.add(first, second, out=buffer)).

It prints, per mode, the median step time, the median time of the sums per step and
their share of the step.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

from cnnframe._alloc import keep_freed_memory

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "examples", "configs", "cifar10_resnet.toml")


def own_buffer_sum(model, runner, name, grads, gi):
    """The gradient sum as Model.backward did it before the memory plan."""
    first = grads[name]
    out = (np.empty(gi.shape, first.dtype) if name in model.inputs
           else model._acc_buffer(runner.acc, name, first))
    np.add(first, gi, out=out)
    return out


def main(argv=None):
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args(argv)

    import cnnframe
    from cnnframe.graph import Model
    from cnnframe.optim import build_optimizer
    from cnnframe.train import Trainer, load_config
    from cnnframe.train.runs import build_loss, build_model
    cnnframe.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model = build_model(cfg)
    trainer = Trainer(model, build_loss(cfg), build_optimizer(cfg["optimizer"], model),
                      progress=False, log=lambda *a: None)
    shape = next(iter(model.inputs.values()))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, *shape), dtype=np.float32)
    y = rng.integers(0, model.shapes[model.outputs[0]][0], args.batch)
    fan_out = [n for n, c in model._consumers.items() if len(c) > 1 and n in model.nodes]
    sizes = [args.batch * int(np.prod(model.shapes[n])) * 4 / 2 ** 20 for n in fan_out]

    in_place = Model._sum_grads
    modes = {"in place": in_place,
             "own buffer": lambda self, *a: own_buffer_sum(self, *a)}
    sum_time = []

    def timed(impl):
        def wrapper(self, *a):
            t0 = time.perf_counter()
            out = impl(self, *a)
            sum_time.append(time.perf_counter() - t0)
            return out
        return wrapper

    res = {m: {"step": [], "sums": []} for m in modes}
    try:
        for mode, impl in modes.items():  # warm-up: buffers, arenas, thread pools
            Model._sum_grads = timed(impl)
            for _ in range(2):
                trainer.train_step(x, y)
        for _ in range(args.rounds):
            for mode, impl in modes.items():
                Model._sum_grads = timed(impl)
                time.sleep(0.05)
                trainer.train_step(x, y)  # one untimed step after switching
                for _ in range(args.steps):
                    sum_time.clear()
                    t0 = time.perf_counter()
                    trainer.train_step(x, y)
                    res[mode]["step"].append(time.perf_counter() - t0)
                    res[mode]["sums"].append(sum(sum_time))
    finally:
        Model._sum_grads = in_place

    name = os.path.splitext(os.path.basename(args.config))[0]
    print(f"{name}: batch {args.batch}, {args.threads} threads; fan-out nodes: "
          + ", ".join(f"{n} ({s:.0f} MiB)" for n, s in zip(fan_out, sizes)))
    print(f"{'gradient sums':<14}{'step ms':>10}{'sums ms':>10}{'share':>8}")
    for mode, r in res.items():
        step, sums = statistics.median(r["step"]), statistics.median(r["sums"])
        print(f"{mode:<14}{1e3 * step:>10.1f}{1e3 * sums:>10.2f}{100 * sums / step:>7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
