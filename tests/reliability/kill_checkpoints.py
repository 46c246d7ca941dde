"""Kill a real training process with SIGKILL at random moments, many times, and check
that the newest checkpoint is always complete and resume always finds it.

    .venv/bin/python tests/reliability/kill_checkpoints.py --kills 200

The child (``--child OUT``) trains a small model with ``Trainer.fit(resume=True)``,
writing a ~2 MiB checkpoint after *every* step (``checkpoint_every=1``), so most of
its time is spent inside checkpoint writes.  After each kill the parent checks:

- every file named like a checkpoint loads completely (``load_state``);
- ``latest_checkpoint`` returns one, and its step never goes backwards;
- leftover temporary files (a write cut short) are counted: they show the kill hit
  a write, and they are never mistaken for checkpoints;
- they do not accumulate: each restarted child removes the stale ones when its
  CheckpointManager opens the folder, so at most one (the last kill's) is ever there.

At the end one child runs to completion from the last checkpoint.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(out, epochs):
    import numpy as np

    import cnnframe
    from cnnframe.data import DataLoader
    from cnnframe.data.base import ArrayDataset
    from cnnframe.graph import Model
    from cnnframe.optim import SGD
    from cnnframe.train import Trainer

    cnnframe.set_num_threads(1)
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.integers(0, 256, (64, 1, 16, 16), dtype=np.uint8),
                        rng.integers(0, 10, 64), [str(i) for i in range(10)])
    loader = DataLoader(data, batch_size=8, shuffle=True, seed=0)
    model = Model.from_config({"input_shape": [1, 16, 16], "seed": 0, "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3,
         "padding": 1},
        {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "in_features": 1024, "out_features": 256},
        {"type": "relu"}, {"type": "linear", "in_features": 256, "out_features": 10}]})
    trainer = Trainer(model, "cross_entropy", SGD(model, lr=0.01, momentum=0.9),
                      out_dir=out, checkpoint_every=1, keep_checkpoints=3, progress=False,
                      log=lambda *a: None)
    print("ready", flush=True)
    trainer.fit(loader, epochs=epochs, resume=True)
    print("done", trainer.step, flush=True)


def check_folder(folder):
    """(newest step, number of complete checkpoints, temp files) or raise AssertionError."""
    from cnnframe.train import latest_checkpoint, list_checkpoints, load_state
    paths = list_checkpoints(folder)
    for p in paths:
        load_state(p)  # raises CheckpointError if any named checkpoint is damaged
    temps = [n for n in os.listdir(folder) if n.endswith(".tmp")] if os.path.isdir(folder) else []
    found = latest_checkpoint(folder)
    if paths and found is None:
        raise AssertionError(f"{folder}: checkpoints exist but none loads")
    step = None if found is None else int(found[1]["trainer"]["step"])
    return step, len(paths), temps


def run(out, kills, seed=0, min_delay=0.05, max_delay=1.0, epochs=1000, log=print):
    """Kill the child `kills` times; return a dict of figures. Raises AssertionError."""
    import random
    rnd = random.Random(seed)
    out = Path(out)
    folder = out / "checkpoints"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out),
           "--epochs", str(epochs)]
    last_step, mid_write, survived, most_temps = -1, 0, 0, 0
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for i in range(kills):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        line = proc.stdout.readline()  # imports done, about to resume and train
        if line.strip() != "ready":
            proc.kill()
            raise AssertionError(f"child failed to start: {line}{proc.stderr.read()}")
        time.sleep(rnd.uniform(min_delay, max_delay))
        if proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.stderr.read()}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        step, count, temps = check_folder(folder)
        if step is not None:
            if step < last_step:
                raise AssertionError(f"kill {i}: newest step went back from {last_step} to {step}")
            last_step = step
        if len(temps) > 1:
            raise AssertionError(f"kill {i}: temporary files accumulate: {temps}")
        most_temps = max(most_temps, len(temps))
        mid_write += bool(temps)
        survived += 1
        log(f"kill {i + 1}: newest checkpoint step {step} ({count} files)"
            + (f", killed mid-write ({len(temps)} temp file)" if temps else ""))
    # a final run from the last checkpoint finishes the training
    final_epochs = max(1, last_step // 8 + 2)
    done = subprocess.run(cmd[:-1] + [str(final_epochs)], capture_output=True, text=True,
                          env=env, timeout=600)
    if done.returncode != 0 or "done" not in done.stdout:
        raise AssertionError(f"resume after the kills failed: {done.stderr[-2000:]}")
    return {"kills": survived, "killed_mid_write": mid_write, "last_step": last_step,
            "final": done.stdout.split()[-1], "most_temp_files": most_temps}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", metavar="OUT")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for the run (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.epochs)
        return 0
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run(args.out or tmp, args.kills, seed=args.seed)
        print(f"{res['kills']} SIGKILLs survived, {res['killed_mid_write']} of them in the "
              f"middle of a checkpoint write; newest step only ever advanced (last {res['last_step']}); "
              f"final resume finished at step {res['final']}; at most "
              f"{res['most_temp_files']} temporary file at a time (stale ones removed at start) "
              f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
