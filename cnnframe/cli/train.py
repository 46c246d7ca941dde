"""`cnnframe train CONFIG.toml`: train a model from a training config into runs/NAME/."""
import argparse
import functools
import os
import sys
import time
from pathlib import Path

from cnnframe.cli._args import positive_int

HELP = "train a model from a training config (TOML/JSON)"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", help=HELP, description=HELP + ". Writes OUT/config.toml, metrics.csv, "
        "checkpoints/, model.cnnf, preprocess.json and curves.png.")
    p.add_argument("config", help="training config file (e.g. examples/configs/"
                   "shapes_quickstart.toml)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="dataset root (default: the config's data.root, else $CNNFRAME_DATA); "
                   "recorded in OUT/config.toml")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 into the dataset root when it is not there")
    p.add_argument("--epochs", type=positive_int, metavar="N",
                   help="override the config's epochs")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="override the config's batch_size")
    p.add_argument("--max-steps", type=positive_int, metavar="N",
                   help="stop after N optimizer steps of the run in total (a quick try; the "
                   "run stays the one the config describes: --resume continues it)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from its newest complete checkpoint")
    p.add_argument("--threads", type=positive_int, metavar="N", default=argparse.SUPPRESS,
                   help="threads for kernels and BLAS (default: the config's threads, else "
                   "all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of an MPI job: mpiexec -n N cnnframe "
                   "train CONFIG --distributed (batch_size is the global batch; rank 0 "
                   "writes OUT; needs pip install 'cnnframe[mpi]'; see docs/DISTRIBUTED.md)")
    p.set_defaults(func=run)
    return p


def run(args):
    if getattr(args, "distributed", False):
        from cnnframe.distributed.cli import run_distributed
        return run_distributed(_run, args)
    return _run(args, None)


def _run(args, dist):
    """The train command; `dist` is a cnnframe.distributed.cli.DistributedRun or None."""
    import numpy as np

    import cnnframe
    from cnnframe.optim import build_optimizer, build_schedule
    from cnnframe.train import NonFiniteLossError, Trainer, load_config, save_config
    from cnnframe.train.config import RESUME_FREE, resume_differences, validate_config
    from cnnframe.train.controls import build_controls
    from cnnframe.train.evaluation import check_num_classes
    from cnnframe.train.runs import (CONFIG_FILE, MODEL_FILE, build_loaders, build_loss,
                                     build_model, eval_transform_config, load_datasets,
                                     record_data_root, remove_stale_run_temp_files,
                                     write_preprocess)

    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    if args.batch_size is not None:
        cfg["batch_size"] = args.batch_size
    cfg = validate_config(cfg)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    say = print if dist is None else dist.print  # rank 0 alone prints and writes OUT

    def on_root(compute, what):  # rank 0 reads the run folder and tells the other ranks
        return compute() if dist is None else dist.from_root(compute, what)

    saved = on_root(lambda: (load_config(out / CONFIG_FILE)
                             if args.resume and (out / CONFIG_FILE).is_file() else None),
                    "the run's config")
    data_dir = args.data_dir
    if saved is not None and not data_dir and not cfg["data"]["root"]:
        data_dir = saved["data"]["root"]  # resume reads the data the run read
    cfg = record_data_root(cfg, data_dir)
    threads = (getattr(args, "threads", None) or cfg["threads"]
               or (dist.default_threads() if dist is not None else None))
    if threads:
        cnnframe.set_num_threads(threads)
    ckpt_dir = out / "checkpoints"
    has_ckpt = on_root(lambda: ckpt_dir.is_dir() and any(ckpt_dir.iterdir()),
                       "whether the run has checkpoints")
    if has_ckpt and not args.resume:
        raise ValueError(f"{out} already holds a run (checkpoints/); continue it with --resume "
                         "or choose another --out")
    if saved is not None:
        differ = resume_differences(saved, cfg)
        if differ:
            raise ValueError(f"{args.config} differs from the config of the run in {out} "
                             f"({out / CONFIG_FILE}) in {', '.join(differ)}; only "
                             f"{', '.join(RESUME_FREE)} may change, so resuming would not "
                             "continue the same run")

    np.random.seed(cfg["seed"])
    t0 = time.perf_counter()
    train_set, eval_set = load_datasets(cfg, download=args.download)
    train_loader, eval_loader = build_loaders(cfg, train_set, eval_set)
    if dist is not None:
        train_loader = dist.shard(train_loader)  # this rank's share of every global batch
    t_init = time.perf_counter()
    model = build_model(cfg, train_set)  # with the config's data-dependent init, if any
    t_init = time.perf_counter() - t_init
    # Before anything is written: a model that cannot fit the data is a config error.
    check_num_classes(model, train_loader, f"{cfg['data']['dataset']}")
    loss = build_loss(cfg)
    optimizer = build_optimizer(cfg["optimizer"], model)
    controls = build_controls(cfg, model)  # freeze, [ema], [early_stopping], keep_best
    total_steps = cfg["epochs"] * len(train_loader)
    schedule = (build_schedule(cfg["schedule"], optimizer, total_steps)
                if cfg["schedule"] is not None else None)
    say(f"data: {cfg['data']['dataset']} - {len(train_set)} training images"
          + (f", {len(eval_set)} for evaluation" if eval_set is not None else "")
          + f" ({time.perf_counter() - t0:.1f} s to load); {len(train_loader)} batches of "
          f"{cfg['batch_size']} per epoch; threads: {cnnframe.get_num_threads()}"
          + (f" per rank; {dist.size} rank{'s' * (dist.size != 1)} x "
                f"{cfg['batch_size'] // dist.size} images"
             if dist is not None else ""))
    say(f"model: {sum(p.size for p in model.params.values()):,} parameters"
        + (f"; init from data in {t_init:.2f} s ({len(cfg['init'])} initialiser"
           f"{'s' if len(cfg['init']) > 1 else ''})" if cfg.get("init") else ""))

    if dist is None or dist.is_root:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_run_temp_files(out)  # left by an earlier run killed mid-write
        save_config(cfg, out / CONFIG_FILE)
        write_preprocess(out, train_set.classes, train_set.images.shape[1:],
                         eval_transform_config(cfg), cfg["data"].get("resize"))
    make_trainer = Trainer if dist is None else functools.partial(
        dist.trainer, sync_batch_norm=cfg.get("sync_batch_norm", False))
    trainer = make_trainer(model, loss, optimizer, schedule, metrics=cfg["metrics"], out_dir=out,
                      keep_checkpoints=cfg["checkpoint"]["keep"],
                      checkpoint_every=cfg["checkpoint"]["every_steps"] or None,
                      progress=not args.no_progress, extra_state={"config": cfg}, **controls)
    resume_cmd = (f"{'mpiexec -n ' + str(dist.size) + ' ' if dist else ''}cnnframe train "
                  f"{args.config} --out {out} --resume{' --distributed' if dist else ''}")
    t_train = time.perf_counter()
    try:
        history = trainer.fit(train_loader, eval_loader, epochs=cfg["epochs"],
                              resume=args.resume, max_steps=args.max_steps)
    except KeyboardInterrupt:
        say(f"stopped; resume with: {resume_cmd}", file=sys.stderr)
        return 130
    except NonFiniteLossError as exc:
        say(f"cnnframe train: {exc}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t_train
    train_time = sum(r["time_s"] for r in history.rows) + (
        trainer.epoch_train_time if trainer.step_in_epoch else 0.0)
    if trainer.epoch < cfg["epochs"]:
        line = (f"stopped by --max-steps {args.max_steps}: {trainer.step} of "
                f"{total_steps} steps done, {train_time:.1f} s of training; continue with: "
                f"{resume_cmd}")
    else:
        line = (f"done: {len(history)} epoch{'s' * (len(history) != 1)}, {train_time:.1f} s of training "
                f"({wall:.1f} s in this session)")
        last = history.rows[-1]
        if "val_accuracy" in last:
            line += (f"; final {'test' if cfg['data']['validation'] == 'test' else 'validation'}"
                     f" accuracy {100 * last['val_accuracy']:.2f}%")
    say(line)
    say(f"wrote {out}{os.sep}: {CONFIG_FILE}, metrics.csv, checkpoints/, {MODEL_FILE}, "
          "preprocess.json" + (", curves.png" if (out / "curves.png").exists() else ""))
    return 0
