"""Accuracy-in-time runs: train the example configs and print a results table.

    python benchmarks/accuracy/run_accuracy.py fashion_mnist   # SimpleConvNet, >= 91% in 5 min
    python benchmarks/accuracy/run_accuracy.py cifar10         # cifar10_small, >= 85% in 20 min
    python benchmarks/accuracy/run_accuracy.py cifar10_resnet  # the residual net; no target
    python benchmarks/accuracy/run_accuracy.py all [--threads 2] [--data-dir DIR]  # the targets

Each run is `cnnframe train <config> --out runs/accuracy/<name>` (progress bars on stderr);
the table reads the run's metrics.csv: training time (summed per-epoch training time, without
the per-epoch test evaluation), wall time, and the final test accuracy against the target.
For CIFAR-10 it also evaluates the final model with flip test-time augmentation (each test
image's logits averaged with its mirror image's), shown beside it; the target is judged on
the plain accuracy.
Runs go one after another, never in parallel.  A dataset that is not present is skipped
with a message saying where it was looked for.

Data: from --data-dir, else $CNNFRAME_DATA (as `make` and the README use it): the dataset's
folder or a folder holding it (fashion-mnist/, cifar10-jpeg/).  Fashion-MNIST also comes from
Debian's /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist); CIFAR-10
(the official archives or a class-per-folder copy) also from ../shared/datasets/cifar10-jpeg
next to the repository, when that folder exists.
"""
import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "examples" / "configs"

RUNS = {
    "fashion_mnist": {"config": CONFIGS / "fashion_mnist_simple.toml", "target": 0.91,
                      "minutes": 5,
                      "roots": [Path("/usr/share/datasets/fashion-mnist")],
                      "marker": lambda p: any(p.glob("train-images-idx3-ubyte*"))},
    "cifar10": {"config": CONFIGS / "cifar10_small.toml", "target": 0.85, "minutes": 20,
                "tta": True,
                "roots": [REPO.parent / "shared" / "datasets" / "cifar10-jpeg"],
                "marker": lambda p: (p / "train").is_dir() or any(p.glob("cifar-10-*"))},
}
# The residual network aims higher than cifar10_small, in more time; it has no target, so
# `all` (the targets) leaves it out.
RUNS["cifar10_resnet"] = {**RUNS["cifar10"], "config": CONFIGS / "cifar10_resnet.toml",
                          "target": None, "minutes": None}
TARGETS = ["fashion_mnist", "cifar10"]


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
    return {"name": name, **spec, "epochs": len(hist), "train_s": train_s, "wall_s": wall,
            "acc": acc, "best": max(hist["val_accuracy"]), "within": within, "tta": tta,
            "images_per_s": sum(hist["images_per_s"]) / len(hist)}


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
    args = ap.parse_args(argv)
    names = TARGETS if args.which == "all" else [args.which]
    results = [run_one(n, RUNS[n], args) for n in names]
    text = table(results, args.threads)
    print("\n" + text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with open(Path(args.out) / f"results_{args.which}.md", "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return 0 if all(not r.get("failed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
