"""`cnnframe evaluate MODEL`: accuracy, per-class accuracy and confusion matrix on a split."""
import argparse
import copy
from pathlib import Path


HELP = "evaluate a trained model: accuracy, per-class accuracy, confusion matrix (+ PNG)"


def add_parser(subparsers):
    p = subparsers.add_parser("evaluate", help=HELP, description=HELP + ".")
    p.add_argument("model", help="a run folder (runs/NAME) or a model file")
    p.add_argument("--data", metavar="DATASET",
                   help="dataset name (shapes, cifar10, fashion_mnist, mnist, image_folder); "
                   "default: the run's config")
    p.add_argument("--data-dir", metavar="DIR",
                   help="dataset root (default: the config's data.root, else $CNNFRAME_DATA)")
    p.add_argument("--config", metavar="FILE",
                   help="training config giving dataset options and normalisation (default: "
                   "config.toml next to the model)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--batch-size", type=int, default=256, metavar="N")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average each image's logits with its mirror "
                   "image's (for classes that do not change under left-right flips)")
    p.add_argument("--out", metavar="DIR",
                   help="where to write confusion_matrix.png (default: the model's folder)")
    p.add_argument("--threads", type=int, metavar="N", default=argparse.SUPPRESS,
                   help="threads for kernels and BLAS")
    p.set_defaults(func=run)
    return p


def _config(model, config, data, run_dir):
    from cnnframe.train import load_config, validate_config
    from cnnframe.train.runs import CONFIG_FILE
    path = Path(config) if config else (Path(run_dir) / CONFIG_FILE if run_dir else None)
    if path is not None and path.is_file():
        cfg = load_config(path)
    elif config:
        raise FileNotFoundError(f"config {config} does not exist")
    else:
        if not data:
            raise ValueError(f"no config.toml next to {model}: name the dataset with --data "
                             "(and --config for its options and normalisation)")
        cfg = validate_config({"model": {}, "data": {"dataset": data},
                               "optimizer": {"type": "sgd"}, "epochs": 1, "batch_size": 1})
    cfg = copy.deepcopy(cfg)
    if data:
        if data != cfg["data"]["dataset"]:
            cfg["data"]["options"] = {}
        cfg["data"]["dataset"] = data
    cfg["data"]["validation"] = "test"
    return cfg


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


def evaluate_model(model, data_dir=None, split="test", tta=False, batch_size=256, config=None,
                   data=None):
    """Evaluate a trained model (a run folder or model file) on a dataset split.

    Returns
    -------
    (res, classes, model_path, cfg)
        ``res`` from `Trainer.evaluate` with the confusion matrix, the dataset's class
        names, the model file evaluated and the training config used for the data.
    """
    from cnnframe.data import DataLoader, build_transforms
    from cnnframe.graph import Model
    from cnnframe.train import Trainer
    from cnnframe.train.runs import (build_loss, eval_transform_config, find_model,
                                     load_datasets, read_preprocess)

    model_path, run_dir = find_model(model)
    cfg = _config(model, config, data, run_dir)
    net = Model.load(model_path)
    train_set, test_set = load_datasets(cfg, data_dir)
    dataset = train_set if split == "train" else test_set
    pre = read_preprocess(run_dir)
    transforms = (pre["transforms"] if pre and not config and not data
                  else eval_transform_config(cfg))
    loader = DataLoader(dataset, batch_size, shuffle=False,
                        transform=build_transforms(transforms))
    trainer = Trainer(net, build_loss(cfg), optimizer=None, progress=False)
    res = trainer.evaluate(loader, confusion=True, tta=tta)
    classes = list(dataset.classes)
    if res["confusion_matrix"].shape[0] != len(classes):
        raise ValueError(f"the model has {res['confusion_matrix'].shape[0]} outputs but "
                         f"{cfg['data']['dataset']} has {len(classes)} classes")
    return res, classes, model_path, cfg


def run(args):
    from cnnframe.train.plots import plot_confusion

    res, classes, model_path, cfg = evaluate_model(
        args.model, args.data_dir, args.split, args.tta, args.batch_size, args.config, args.data)
    cm = res["confusion_matrix"]
    n_images = int(cm.sum())
    print(f"{model_path} on {cfg['data']['dataset']} {args.split} ({n_images} images"
          f"{', flip TTA' if args.tta else ''}): accuracy {100 * res['accuracy']:.2f}%, "
          f"loss {res['loss']:.4f}")
    print(format_table(classes, cm))
    out = Path(args.out) if args.out else Path(model_path).parent
    png = plot_confusion(cm, classes, out / f"confusion_matrix_{args.split}.png",
                         title=f"{Path(model_path).name}: {cfg['data']['dataset']} {args.split}, "
                               f"accuracy {100 * res['accuracy']:.2f}%")
    if png:
        print(f"wrote {png}")
    return 0
