"""Data-parallel scaling on this machine, and the cost model of docs/DISTRIBUTED.md.

    python benchmarks/bench_distributed.py [--configs cifar10_small cifar10_resnet]
        [--batch 128] [--steps 8] [--rounds 3] [--plot docs/distributed_scaling.png]

Launches itself under mpiexec (the one next to this Python, else on PATH) and prints:

1. training images/s of each config on synthetic CIFAR-sized data, global batch --batch:
   1 rank x 2 threads against 2 ranks x 1 thread, and 1 rank x 1 thread on half the batch
   (the model's compute time) (median over rounds of --steps steps of
   `DistributedTrainer.train_step`, after a warm-up step; data loading not included);
2. Allreduce (float32 sum, one bucket) latency and bandwidth on loopback between 2 ranks,
   for 64 KiB .. 16 MiB (median of 20);
3. the cost model's prediction for N = 2..64 machines like this one on 10 and 25 GbE
   (see docs/DISTRIBUTED.md), and with --plot a PNG of it.

Run it on a quiet machine: both ranks share its cores with anything else running.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZES = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]


# ----------------------------------------------------------------------------- worker side

def worker_train(config, batch, steps, rounds, threads):
    from cnnframe.distributed import DistributedTrainer, MPICommunicator
    from cnnframe.optim import build_optimizer
    from cnnframe.train import load_config
    from cnnframe.train.runs import build_loss, build_model
    comm = MPICommunicator()
    cfg = load_config(os.path.join(ROOT, "examples", "configs", config + ".toml"))
    model = build_model(cfg)
    trainer = DistributedTrainer(model, build_loss(cfg), build_optimizer(cfg["optimizer"], model),
                                 comm=comm, progress=False, threads=threads)
    local = batch // comm.size
    rng = np.random.default_rng(comm.rank)
    x = rng.standard_normal((local, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, local)
    trainer._start(None, None)
    trainer.train_step(x, y)  # warm-up: buffers, thread pools
    per_round = []
    for _ in range(rounds):
        comm.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(x, y)
        per_round.append((time.perf_counter() - t0) / steps)
    grad_bytes = sum(g.nbytes for g in model.grads.values())
    if comm.rank == 0:
        step = statistics.median(per_round)
        print(json.dumps({"step_s": step, "images_per_s": batch / step, "grad_bytes": grad_bytes,
                          "buckets": len(trainer.reducer.buckets)}))


def worker_allreduce(repeats=20):
    from cnnframe.distributed import MPICommunicator
    comm = MPICommunicator()
    out = {}
    for size in SIZES:
        buf = np.ones(size // 4, np.float32)
        comm.allreduce_sum(buf)
        times = []
        for _ in range(repeats):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce_sum(buf)
            times.append(time.perf_counter() - t0)
        out[size] = statistics.median(times)
    tiny = np.ones(1, np.float32)
    lat = []
    for _ in range(200):
        t0 = time.perf_counter()
        comm.allreduce_sum(tiny)
        lat.append(time.perf_counter() - t0)
    if comm.rank == 0:
        print(json.dumps({"sizes": out, "latency_s": statistics.median(lat)}))


# ----------------------------------------------------------------------------- launcher side

def launch(ranks, *args):
    from cnnframe.distributed.comm import mpiexec_path
    mpiexec = mpiexec_path()
    if mpiexec is None:
        sys.exit("bench_distributed: no mpiexec; pip install 'cnnframe[mpi]'")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker",
                           *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=1800)
    if proc.returncode:
        sys.exit(f"bench_distributed: worker failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ring_allreduce_s(n, grad_bytes, bandwidth_bytes_s, latency_s):
    """Ring allreduce: 2 (N - 1) / N x bytes / bandwidth + 2 (N - 1) x latency."""
    return 2 * (n - 1) / n * grad_bytes / bandwidth_bytes_s + 2 * (n - 1) * latency_s


def predict(compute_s, backward_share, grad_bytes, batch_per_rank, buckets, n, gbit,
            latency_s=30e-6):
    """Images/s and efficiency of N machines (weak scaling: batch_per_rank per machine).

    Step time = compute + exposed communication, where the part of the allreduce that fits
    in the backward of the layers after each bucket (about `backward_share` x compute minus
    the last bucket's share) is hidden.
    """
    comm = ring_allreduce_s(n, grad_bytes, gbit * 1e9 / 8, latency_s * buckets)
    hidden = backward_share * compute_s * (1 - 1 / max(buckets, 1))
    step = compute_s + max(0.0, comm - hidden)
    ips = n * batch_per_rank / step
    return ips, compute_s / step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["cifar10_small"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--plot", metavar="PNG")
    p.add_argument("--worker", nargs="+")
    args = p.parse_args()
    if args.worker:
        if args.worker[0] == "train":
            c, b, s, r, t = args.worker[1:]
            worker_train(c, int(b), int(s), int(r), int(t))
        else:
            worker_allreduce()
        return
    print("Busy or shared machines give noisy numbers; compare ratios from one run.\n")
    results = {}
    for config in args.configs:
        one = launch(1, "train", config, args.batch, args.steps, args.rounds, 2)
        two = launch(2, "train", config, args.batch, args.steps, args.rounds, 1)
        solo = launch(1, "train", config, args.batch // 2, args.steps, args.rounds, 1)
        results[config] = (one, two, solo)
        print(f"{config}: global batch {args.batch}, gradients {one['grad_bytes'] / 2**20:.2f} "
              f"MiB in {two['buckets']} buckets")
        print(f"  1 rank  x 2 threads: {one['images_per_s']:7.1f} images/s "
              f"({one['step_s'] * 1e3:.0f} ms/step)")
        print(f"  2 ranks x 1 thread : {two['images_per_s']:7.1f} images/s "
              f"({two['step_s'] * 1e3:.0f} ms/step)  "
              f"ratio {two['images_per_s'] / one['images_per_s']:.2f}")
    ar = launch(2, "allreduce")
    print(f"\nAllreduce on loopback, 2 ranks (float32 sum): latency {ar['latency_s'] * 1e6:.1f} us")
    print(f"  {'bytes':>9}  {'time':>9}  {'algbw GB/s':>10}  {'busbw GB/s':>10}")
    for size, t in ar["sizes"].items():
        size = int(size)
        # bus bandwidth: the ring's 2 (N - 1) / N x bytes per link, as nccl-tests report it
        print(f"  {size:>9}  {t * 1e3:7.2f} ms  {size / t / 1e9:10.2f}  {size / t / 1e9:10.2f}")
    # Cost model, from the first config: compute = 1 rank x 1 thread on the per-rank batch
    # (measured alone); communication from the loopback measurement.
    config = args.configs[0]
    one, two, solo = results[config]
    per_rank = args.batch // 2
    compute = solo["step_s"]  # 1 rank x 1 thread on the per-rank batch
    sizes = {int(k): v for k, v in ar["sizes"].items()}
    near = min((s for s in sizes if s >= one["grad_bytes"]), default=max(sizes))
    loopback = max(sizes[near] * one["grad_bytes"] / near, ar["latency_s"])
    hidden = 0.6 * compute * (1 - 1 / two["buckets"])
    model_2 = compute + max(0.0, loopback - hidden)
    print(f"\ncost model for {config} (per-rank batch {per_rank}, compute {compute * 1e3:.0f} ms"
          f"/step at 1 thread, {one['grad_bytes'] / 2**20:.2f} MiB of gradients):")
    print(f"  2-rank check on this machine: measured {two['step_s'] * 1e3:.0f} ms/step, model "
          f"{model_2 * 1e3:.0f} ms/step")
    print(f"  {'N':>3}  {'10GbE img/s':>11}  {'eff':>5}  {'25GbE img/s':>11}  {'eff':>5}")
    rows = []
    for n in (2, 4, 8, 16, 32, 64):
        a = predict(compute, 0.6, one["grad_bytes"], per_rank, two["buckets"], n, 10)
        b = predict(compute, 0.6, one["grad_bytes"], per_rank, two["buckets"], n, 25)
        rows.append((n, a, b))
        print(f"  {n:>3}  {a[0]:11.0f}  {a[1]:5.2f}  {b[0]:11.0f}  {b[1]:5.2f}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        ns = [r[0] for r in rows]
        ax.plot(ns, [r[1][0] for r in rows], "o-", label="10 GbE")
        ax.plot(ns, [r[2][0] for r in rows], "s-", label="25 GbE")
        ax.plot(ns, [n * per_rank / compute for n in ns], "k--", lw=0.8, label="linear")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("machines (2 cores each)")
        ax.set_ylabel("training images/s")
        ax.set_title(f"{config}: predicted data-parallel scaling", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
