"""Which of airbench's methods pay off on a CPU: cifar10_fast with one method taken out at a time.

    python benchmarks/accuracy/ablate_fast.py [--epochs 4] [--seeds 1] [--only NAME,...]
                                              [--threads 2] [--data-dir DIR] [--out DIR]

Each variant is examples/configs/cifar10_fast.toml (default: for 4 epochs, to keep a variant to
about 8 minutes on 2 cores) with one change, trained and scored exactly as
``run_accuracy.py cifar10_fast`` does (training time, plain and 6-view TTA accuracy):

    all                  the recipe as it is (the baseline)
    no_whitening         the first conv trained from a random init instead of whitening
                         2x2 patches of the data (and not frozen)
    no_dirac             the 3x3 convs from a plain random init instead of partial identity
    no_label_smoothing   label_smoothing 0 instead of 0.2
    no_ema               no weight average: evaluation uses the trained weights
    random_flip          a random horizontal flip instead of the alternating one
    relu                 ReLU instead of GELU
    no_bias_lr           the batch-norm biases at the common lr and weight decay instead of
                         64x the lr

The table gives each variant's accuracies, the change from "all" (TTA accuracy, the
one the targets are judged on) and its training minutes.  The variant configs and runs go
into --out (default runs/ablation/<variant>/).  One seed is noisy (seed-to-seed spread of
these runs: about +-0.2 points): take --seeds 3 before reading much into a small change.
"""
import argparse
import copy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run_accuracy  # noqa: E402  (benchmarks/accuracy is not a package)


def _convs(cfg):
    return [layer for layer in cfg["model"]["layers"] if layer["type"] == "conv2d"
            and layer["name"] != "whiten"]


def _no_whitening(cfg):
    cfg["init"] = [i for i in cfg.get("init", []) if i.get("type") != "whitening"]
    cfg["freeze"] = [p for p in cfg["freeze"] if p != "whiten"]


def _no_dirac(cfg):
    for layer in _convs(cfg):
        layer["init"] = "lecun_uniform"


def _no_label_smoothing(cfg):
    cfg["loss"]["label_smoothing"] = 0.0


def _no_ema(cfg):
    cfg.pop("ema", None)


def _random_flip(cfg):
    cfg["data"]["augmentation"] = [
        {"type": "random_flip"} if a["type"] == "alternating_flip" else a
        for a in cfg["data"]["augmentation"]]


def _relu(cfg):
    for layer in cfg["model"]["layers"]:
        if layer["type"] == "gelu":
            layer["type"] = "relu"


def _no_bias_lr(cfg):
    cfg["optimizer"].pop("groups", None)


# variant -> the change it makes to the recipe (None: the recipe as it is)
VARIANTS = {"all": None, "no_whitening": _no_whitening, "no_dirac": _no_dirac,
            "no_label_smoothing": _no_label_smoothing, "no_ema": _no_ema,
            "random_flip": _random_flip, "relu": _relu, "no_bias_lr": _no_bias_lr}


def variant_config(name, base, folder):
    """Write the config of variant `name` of training config `base` into `folder`; its path."""
    from cnnframe.train import load_config, save_config
    cfg = copy.deepcopy(load_config(base))
    change = VARIANTS[name]
    if change is not None:
        change(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cifar10_fast_{name}.toml"
    save_config(cfg, path)
    return path


def ablation_table(results):
    """Markdown rows: variant, plain and TTA accuracy (means over the seeds), change, minutes."""
    lines = ["| variant | seeds | epochs | training | test accuracy | with TTA | TTA change |",
             "|---|---|---|---|---|---|---|"]
    means = {}
    for name, rows in results.items():
        done = [r for r in rows if not r.get("skipped") and not r.get("failed")]
        if done:
            means[name] = {k: sum(r[k] for r in done) / len(done)
                           for k in ("acc", "tta_acc", "train_s")}
    base = means.get("all")
    for name, rows in results.items():
        if name not in means:
            lines.append(f"| {name} | - | - | - | not run | - | - |")
            continue
        m = means[name]
        change = ("-" if base is None or name == "all"
                  else f"{100 * (m['tta_acc'] - base['tta_acc']):+.2f}")
        lines.append(f"| {name} | {len(rows)} | {rows[0]['epochs']} | "
                     f"{m['train_s'] / 60:.1f} min | {100 * m['acc']:.2f}% | "
                     f"{100 * m['tta_acc']:.2f}% | {change} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--only", default=None, metavar="NAME,...",
                    help=f"variants to run, of {', '.join(VARIANTS)} (default: all of them)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default=str(run_accuracy.REPO / "runs" / "ablation"))
    ap.add_argument("--config", default=str(run_accuracy.CONFIGS / "cifar10_fast.toml"),
                    help=argparse.SUPPRESS)  # the tests' tiny version
    args = ap.parse_args(argv)
    names = list(VARIANTS) if args.only is None else args.only.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"--only: unknown variant(s) {', '.join(unknown)}; the variants are "
                 f"{', '.join(VARIANTS)}")
    for value, flag in ((args.epochs, "--epochs"), (args.seeds, "--seeds"),
                        (args.threads, "--threads")):
        if value < 1:
            ap.error(f"{flag} must be >= 1, got {value}")
    results = {}
    for name in names:
        config = variant_config(name, args.config, Path(args.out) / "configs")
        spec = {**run_accuracy.RUNS["cifar10_fast"], "config": config}
        run_args = argparse.Namespace(seeds=args.seeds, epochs=args.epochs,
                                      out=str(Path(args.out) / name), threads=args.threads,
                                      data_dir=args.data_dir)
        results[name] = run_accuracy.run_seeds("cifar10_fast", spec, run_args)
        print("\n" + ablation_table(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
