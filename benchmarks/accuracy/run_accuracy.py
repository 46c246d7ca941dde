"""Accuracy-in-time runs: train the example configs and print a results table.

    python benchmarks/accuracy/run_accuracy.py fashion_mnist   # SimpleConvNet, >= 91% in 5 min
    python benchmarks/accuracy/run_accuracy.py cifar10         # cifar10_small, >= 85% in 20 min
    python benchmarks/accuracy/run_accuracy.py cifar10_resnet  # the residual net; no target
    python benchmarks/accuracy/run_accuracy.py cifar10_fast        # >= 93.5% in 30 min, 3 seeds
    python benchmarks/accuracy/run_accuracy.py cifar10_fast_short  # >= 90% in 10 min, 3 seeds
    python benchmarks/accuracy/run_accuracy.py all [--threads 2] [--data-dir DIR]  # the targets

Each run is `cnnframe train <config> --out runs/accuracy/<name>` (progress bars on stderr);
the table reads the run's metrics.csv: training time (summed per-epoch training time, without
the per-epoch test evaluation), wall time, and the final test accuracy against the target.
For CIFAR-10 it also evaluates the final model with flip test-time augmentation (each test
image's logits averaged with its mirror image's), shown beside it; the target is judged on
the plain accuracy.
The cifar10_fast configs (airbench's recipe) run once per seed (0, 1, 2; --seeds N for
another count) and are judged on their 6-view ("multicrop") TTA accuracy averaged over the
seeds, with the time it takes counted: their time is the training time plus the whitening
init (before the first epoch) plus the TTA evaluation of the test set.  Their table has a
row per seed and a mean row, each with the plain and the TTA accuracy.
Each finished run also writes results.json into its folder (runs/accuracy/<name>/ or
.../<name>/seed<N>/), atomically, for plot_accuracy.py:
    name, dataset, config   the run's name here, "cifar10" or "fashion-mnist", the config's stem
    seed, epochs
    accuracy                final plain test accuracy (a fraction)
    tta, tta_accuracy       the TTA mode ("flip", "multicrop") and its accuracy, or null
    judged_on               "plain" or "tta": the accuracy the target is judged on
    train_minutes           summed per-epoch training time
    counted_minutes         the time the target is judged on: train_minutes, plus the
                            whitening init and the TTA evaluation for the cifar10_fast configs
    wall_minutes, images_per_s, isa (the instruction set the kernels ran on), threads
    target, target_minutes  the target (null without one)
Runs go one after another, never in parallel.  A dataset that is not present is skipped
with a message saying where it was looked for.

Data: from --data-dir, else $CNNFRAME_DATA (as `make` and the README use it): the dataset's
folder or a folder holding it (fashion-mnist/, cifar10-jpeg/).  Fashion-MNIST also comes from
Debian's /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist); CIFAR-10
(the official archives or a class-per-folder copy) also from ../shared/datasets/cifar10-jpeg
next to the repository, when that folder exists.
"""
import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "examples" / "configs"

RUNS = {
    "fashion_mnist": {"config": CONFIGS / "fashion_mnist_simple.toml", "target": 0.91,
                      "minutes": 5, "dataset": "fashion-mnist",
                      "roots": [Path("/usr/share/datasets/fashion-mnist")],
                      "marker": lambda p: any(p.glob("train-images-idx3-ubyte*"))},
    "cifar10": {"config": CONFIGS / "cifar10_small.toml", "target": 0.85, "minutes": 20,
                "tta": True, "dataset": "cifar10",
                "roots": [REPO.parent / "shared" / "datasets" / "cifar10-jpeg"],
                "marker": lambda p: (p / "train").is_dir() or any(p.glob("cifar-10-*"))},
}
# The residual network aims higher than cifar10_small, in more time; it has no target, so
# `all` (the targets) leaves it out.
RUNS["cifar10_resnet"] = {**RUNS["cifar10"], "config": CONFIGS / "cifar10_resnet.toml",
                          "target": None, "minutes": None}
# airbench's recipe: several seeds, judged on the mean multicrop-TTA accuracy with the TTA
# time counted.
RUNS["cifar10_fast"] = {**RUNS["cifar10"], "config": CONFIGS / "cifar10_fast.toml",
                        "target": 0.935, "minutes": 30, "tta": "multicrop", "seeds": 3}
RUNS["cifar10_fast_short"] = {**RUNS["cifar10_fast"],
                              "config": CONFIGS / "cifar10_fast_short.toml",
                              "target": 0.90, "minutes": 10}
TARGETS = ["fashion_mnist", "cifar10", "cifar10_fast", "cifar10_fast_short"]


def find_root(spec, data_dir, environ=None):
    """(the dataset's folder or None, the folders looked in): --data-dir, else $CNNFRAME_DATA,
    then the spec's fallback roots that exist."""
    environ = os.environ if environ is None else environ
    cands = [Path(data_dir)] if data_dir else []
    if not data_dir and environ.get("CNNFRAME_DATA"):
        cands.append(Path(environ["CNNFRAME_DATA"]))
    cands += [r for r in spec["roots"] if r.is_dir()]
    for c in cands:
        for p in (c, c / "fashion-mnist", c / "cifar10-jpeg"):
            if p.is_dir() and spec["marker"](p):
                return p, cands
    return None, cands


def not_found_message(name, data_dir, looked, environ=None):
    """The line saying that dataset `name` was not found, where it was looked for and how to
    give it."""
    environ = os.environ if environ is None else environ
    where = f"looked in {', '.join(map(str, looked))}" if looked else "nowhere to look"
    hint = ("" if data_dir or environ.get("CNNFRAME_DATA") else
            "; $CNNFRAME_DATA is not set: point it (or --data-dir) at the folder holding the "
            "dataset")
    return f"{name}: dataset not found ({where}){hint}; skipped"


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy (to read `cnnframe train`'s lines)."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text):
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def init_seconds(train_output):
    """The seconds of the data-dependent init that `cnnframe train` printed (0 without)."""
    m = re.search(r"init from data in ([0-9.]+) s", train_output)
    return float(m.group(1)) if m else 0.0


def write_results(run_dir, row, threads):
    """Write the results of one finished run (a row of `table` or `seed_table`) as
    `run_dir`/results.json (the keys in this module's docstring), atomically; its path."""
    from cnnframe._config import active_isa
    from cnnframe._files import atomic_write
    from cnnframe.train import load_config
    seeded = "tta_acc" in row  # a seed of a cifar10_fast config: judged on its TTA accuracy
    tta_mode = row["tta"] if seeded else ("flip" if row.get("tta") is not None else None)
    results = {
        "name": row["name"], "dataset": row["dataset"], "config": Path(row["config"]).stem,
        "seed": row["seed"] if seeded else load_config(Path(run_dir) / "config.toml")["seed"],
        "epochs": row["epochs"], "accuracy": row["acc"],
        "tta": tta_mode, "tta_accuracy": row["tta_acc"] if seeded else row.get("tta"),
        "judged_on": "tta" if seeded else "plain",
        "train_minutes": row["train_s"] / 60,
        "counted_minutes": (row["total_s"] if seeded else row["train_s"]) / 60,
        "wall_minutes": row["wall_s"] / 60, "images_per_s": row["images_per_s"],
        "isa": active_isa(), "threads": threads,
        "target": row["target"], "target_minutes": row["minutes"],
    }
    path = Path(run_dir) / "results.json"
    atomic_write(path, lambda f: f.write(json.dumps(results, indent=2) + "\n"), mode="w")
    return path


def seed_config(config, seed, folder):
    """A copy of training config `config` with `seed`, written into `folder`; its path."""
    from cnnframe.train import load_config, save_config
    cfg = load_config(config)
    cfg["seed"] = int(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(config).stem}_seed{seed}.toml"
    save_config(cfg, path)
    return path


def timed_tta(run_dir, root, mode, batch_size=500):
    """(test accuracy with TTA `mode`, seconds of the evaluation alone) of a finished run: the
    test set is loaded before the clock starts, as the run had it in memory."""
    from cnnframe.data import DataLoader, build_transforms
    from cnnframe.graph import Model
    from cnnframe.train import load_config
    from cnnframe.train.evaluation import evaluate
    from cnnframe.train.runs import build_loss, load_datasets, read_preprocess
    cfg = load_config(Path(run_dir) / "config.toml")
    _, test_set = load_datasets(cfg, root)
    model = Model.load(Path(run_dir) / "model.cnnf")
    loader = DataLoader(test_set, batch_size, shuffle=False,
                        transform=build_transforms(read_preprocess(run_dir)["transforms"]))
    t0 = time.perf_counter()
    res = evaluate(model, loader, build_loss(cfg), tta=mode)
    return res["accuracy"], time.perf_counter() - t0


def run_seeds(name, spec, args):
    """Each seed's run of a seeded spec (cifar10_fast*): training, then the timed TTA."""
    from cnnframe.cli import main as cli
    from cnnframe.train import History
    root, looked = find_root(spec, args.data_dir)
    if root is None:
        print(not_found_message(name, args.data_dir, looked))
        return [{"name": name, "skipped": True, **spec}]
    rows = []
    for seed in range(args.seeds or spec["seeds"]):
        out = Path(args.out) / name / f"seed{seed}"
        config = seed_config(spec["config"], seed, Path(args.out) / name)
        cmd = ["--threads", str(args.threads), "train", str(config), "--data-dir", str(root),
               "--out", str(out)]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        if (out / "checkpoints").is_dir():
            cmd.append("--resume")
        print(f"\n=== {name} seed {seed}: cnnframe {' '.join(cmd)}")
        tee = _Tee(sys.stdout)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(tee):
            code = cli(cmd)
        wall = time.perf_counter() - t0
        row = {"name": name, **spec, "seed": seed}
        if code != 0:
            print(f"{name} seed {seed}: cnnframe train exited with {code}")
            rows.append({**row, "failed": code})
            continue
        hist = History.from_csv(out / "metrics.csv")
        tta, tta_s = timed_tta(out, root, spec["tta"])
        train_s = sum(hist["time_s"])
        # A resumed run's init time is that of its last session: an estimate, not a sum.
        init_s = init_seconds(tee.copy.getvalue())
        rows.append({**row, "epochs": len(hist), "train_s": train_s, "init_s": init_s,
                     "tta_s": tta_s, "total_s": train_s + init_s + tta_s, "wall_s": wall,
                     "acc": hist["val_accuracy"][-1], "tta_acc": tta,
                     "images_per_s": sum(hist["images_per_s"]) / len(hist)})
        write_results(out, rows[-1], args.threads)
    return rows


def seed_table(rows, threads):
    """Per-seed rows and the mean of a seeded spec (plain and TTA accuracy, times)."""
    import cnnframe
    isa = cnnframe.available_isas()[0]
    lines = [f"| dataset | config | seed | epochs | training ({threads} threads, {isa}) | init "
             "| TTA | total | test accuracy | with TTA | target | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    done = [r for r in rows if not r.get("skipped") and not r.get("failed")]
    for r in rows:
        cfg = Path(r["config"]).stem
        target = f">= {100 * r['target']:.1f}% in {r['minutes']} min"
        if r.get("skipped") or r.get("failed"):
            why = "not run (dataset missing)" if r.get("skipped") else f"failed ({r['failed']})"
            lines.append(f"| {r['name']} | {cfg} | {r.get('seed', '-')} | - | - | - | - | - | "
                         f"{why} | - | {target} | - |")
            continue
        lines.append(f"| {r['name']} | {cfg} | {r['seed']} | {r['epochs']} | "
                     f"{r['train_s'] / 60:.1f} min ({r['images_per_s']:.0f} img/s) | "
                     f"{r['init_s']:.1f} s | {r['tta_s']:.0f} s | {r['total_s'] / 60:.1f} min | "
                     f"{100 * r['acc']:.2f}% | {100 * r['tta_acc']:.2f}% ({r['tta']}) | "
                     f"{target} | - |")
    if done:
        r = done[0]
        mean = {k: sum(d[k] for d in done) / len(done)
                for k in ("train_s", "total_s", "acc", "tta_acc", "images_per_s", "init_s",
                          "tta_s")}
        met = ("yes" if mean["tta_acc"] >= r["target"] and mean["total_s"] <= 60 * r["minutes"]
               else "no")
        lines.append(f"| {r['name']} | {Path(r['config']).stem} | mean of {len(done)} | "
                     f"{r['epochs']} | {mean['train_s'] / 60:.1f} min "
                     f"({mean['images_per_s']:.0f} img/s) | {mean['init_s']:.1f} s | "
                     f"{mean['tta_s']:.0f} s | {mean['total_s'] / 60:.1f} min | "
                     f"{100 * mean['acc']:.2f}% | {100 * mean['tta_acc']:.2f}% | "
                     f">= {100 * r['target']:.1f}% in {r['minutes']} min | {met} |")
    return "\n".join(lines)


def run_one(name, spec, args):
    from cnnframe.cli import main as cli
    from cnnframe.train import History
    root, looked = find_root(spec, args.data_dir)
    if root is None:
        print(not_found_message(name, args.data_dir, looked))
        return {"name": name, "skipped": True, **spec}
    out = Path(args.out) / name
    cmd = ["--threads", str(args.threads), "train", str(spec["config"]), "--data-dir", str(root),
           "--out", str(out)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if (out / "checkpoints").is_dir():
        cmd.append("--resume")
    print(f"\n=== {name}: cnnframe {' '.join(cmd)}")
    t0 = time.perf_counter()
    code = cli(cmd)
    wall = time.perf_counter() - t0
    if code != 0:
        print(f"{name}: cnnframe train exited with {code}")
        return {"name": name, "failed": code, **spec}
    hist = History.from_csv(out / "metrics.csv")
    tta = None
    if spec.get("tta"):  # the final model once more, each test image averaged with its mirror
        from cnnframe.train.evaluation import evaluate_run
        tta = evaluate_run(str(out), str(root), tta=True).result["accuracy"]
    train_s = sum(hist["time_s"])
    acc = hist["val_accuracy"][-1]
    # The accuracy reached within the time budget (the last epoch finished inside it).
    t, within = 0.0, None
    for row in hist:
        t += row["time_s"]
        if spec["minutes"] is None or t <= 60 * spec["minutes"]:
            within = row["val_accuracy"]
    row = {"name": name, **spec, "epochs": len(hist), "train_s": train_s, "wall_s": wall,
           "acc": acc, "best": max(hist["val_accuracy"]), "within": within, "tta": tta,
           "images_per_s": sum(hist["images_per_s"]) / len(hist)}
    write_results(out, row, args.threads)
    return row


def table(results, threads):
    lines = [f"| dataset | config | epochs | training time ({threads} threads) | test accuracy "
             "| with flip TTA | target | met |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        cfg = Path(r["config"]).stem
        target = ("-" if r["target"] is None
                  else f">= {100 * r['target']:.0f}% in {r['minutes']} min")
        if r.get("skipped") or r.get("failed"):
            why = "not run (dataset missing)" if r.get("skipped") else f"failed ({r['failed']})"
            lines.append(f"| {r['name']} | {cfg} | - | - | {why} | - | {target} | - |")
            continue
        if r["target"] is None:
            met = "-"
        else:
            met = "yes" if r["within"] is not None and r["within"] >= r["target"] else "no"
        tta = "-" if r["tta"] is None else f"{100 * r['tta']:.2f}%"
        lines.append(f"| {r['name']} | {cfg} | {r['epochs']} | {r['train_s'] / 60:.1f} min "
                     f"({r['images_per_s']:.0f} img/s) | {100 * r['acc']:.2f}% | "
                     f"{tta} | {target} | {met} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("which", choices=[*RUNS, "all"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir")
    ap.add_argument("--epochs", type=int, help="override the configs' epochs")
    ap.add_argument("--out", default=str(REPO / "runs" / "accuracy"))
    ap.add_argument("--seeds", type=int,
                    help="seeds per run of the seeded configs (cifar10_fast*; default 3)")
    args = ap.parse_args(argv)
    names = TARGETS if args.which == "all" else [args.which]
    results, seeded = [], []
    for n in names:
        if RUNS[n].get("seeds"):
            seeded.append(run_seeds(n, RUNS[n], args))
        else:
            results.append(run_one(n, RUNS[n], args))
    tables = [table(results, args.threads)] if results else []
    tables += [seed_table(rows, args.threads) for rows in seeded]
    text = "\n\n".join(tables)
    print("\n" + text)
    results += [r for rows in seeded for r in rows]
    from cnnframe._files import atomic_write
    atomic_write(Path(args.out) / f"results_{args.which}.md", lambda f: f.write(text + "\n"),
                 mode="w")
    return 0 if all(not r.get("failed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
