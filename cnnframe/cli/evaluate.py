"""`cnnframe evaluate MODEL`: accuracy, per-class accuracy and confusion matrix on a split.

The work is `cnnframe.train.evaluation.evaluate_run`; this module parses and prints.
"""
import argparse
from pathlib import Path

from cnnframe.cli._args import positive_int

HELP = "evaluate a trained model: accuracy, per-class accuracy, confusion matrix (+ PNG)"


TTA_MODES = ("none", "flip", "multicrop")


def bare_tta_as_flip(argv):
    """argv with "flip" after each bare ``--tta`` followed by an existing path, so that
    ``cnnframe evaluate --tta RUN`` reads RUN as the model, not as a mode (a mistyped mode
    still gets argparse's "invalid choice")."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--tta" and i + 1 < len(argv) and Path(argv[i + 1]).exists():
            out.append("flip")
    return out


def add_parser(subparsers):
    p = subparsers.add_parser("evaluate", help=HELP, description=HELP + ".")
    p.add_argument("model", help="a run folder (runs/NAME) or a model file")
    p.add_argument("--data", metavar="DATASET",
                   help="dataset name (shapes, cifar10, fashion_mnist, mnist, image_folder); "
                   "default: the run's config")
    p.add_argument("--data-dir", metavar="DIR",
                   help="dataset root (default: the config's data.root, which `cnnframe "
                   "train` records, else $CNNFRAME_DATA)")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 into the dataset root when it is not there")
    p.add_argument("--config", metavar="FILE",
                   help="training config giving dataset options and normalisation (default: "
                   "config.toml next to the model)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N")
    p.add_argument("--tta", nargs="?", const="flip", default="none", choices=TTA_MODES,
                   help="test-time augmentation (for classes that do not change under "
                   "left-right flips): --tta or --tta flip averages each image's logits with "
                   "its mirror image's; --tta multicrop also with both shifted by one pixel "
                   "up-left and down-right (airbench's 6 views, 6x the cost)")
    p.add_argument("--out", metavar="DIR",
                   help="where to write confusion_matrix.png (default: the model's folder)")
    p.add_argument("--threads", type=positive_int, metavar="N", default=argparse.SUPPRESS,
                   help="threads for kernels and BLAS")
    p.set_defaults(func=run)
    return p


def format_table(classes, cm):
    """Per-class accuracy lines and the confusion matrix as text."""
    from cnnframe.train.metrics import per_class_accuracy
    acc = per_class_accuracy(cm)
    width = max(len(c) for c in classes)
    lines = ["per-class accuracy:"]
    for name, a, n in zip(classes, acc, cm.sum(axis=1)):
        lines.append(f"  {name:<{width}}  {100 * a:6.2f}%  ({int(n)} images)")
    cell = max(5, len(str(int(cm.max()))) + 1)
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append(" " * (width + 2) + "".join(f"{i:>{cell}}" for i in range(len(classes))))
    for i, (name, row) in enumerate(zip(classes, cm)):
        lines.append(f"  {name:<{width}}" + "".join(f"{int(v):>{cell}}" for v in row)
                     + f"   [{i}]")
    return "\n".join(lines)


def run(args):
    from cnnframe.train.evaluation import evaluate_run
    from cnnframe.train.plots import plot_confusion

    res, classes, model_path, cfg = evaluate_run(
        args.model, args.data_dir, args.split, args.tta, args.batch_size, args.config, args.data,
        download=args.download)
    cm = res["confusion_matrix"]
    n_images = int(cm.sum())
    tta = "" if args.tta == "none" else f", {args.tta} TTA"
    print(f"{model_path} on {cfg['data']['dataset']} {args.split} ({n_images} images{tta}): "
          f"accuracy {100 * res['accuracy']:.2f}%, "
          f"loss {res['loss']:.4f}")
    print(format_table(classes, cm))
    out = Path(args.out) if args.out else Path(model_path).parent
    png = plot_confusion(cm, classes, out / f"confusion_matrix_{args.split}.png",
                         title=f"{Path(model_path).name}: {cfg['data']['dataset']} {args.split}, "
                               f"accuracy {100 * res['accuracy']:.2f}%")
    if png:
        print(f"wrote {png}")
    return 0
