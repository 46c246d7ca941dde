"""Tiny data-parallel training runs shared by the MPI checks and their single-process
references: Shapes at 16x16 with crop and flip, a small CNN, SGD with momentum."""
import numpy as np

from cnnframe.data import DataLoader
from cnnframe.data.shapes import Shapes
from cnnframe.data.transforms import build_transforms
from cnnframe.distributed import DistributedTrainer, ShardedLoader
from cnnframe.graph import Model
from cnnframe.optim import build_optimizer

AUGMENT = [{"type": "random_crop", "padding": 2}, {"type": "random_horizontal_flip"},
           {"type": "to_float"}, {"type": "normalize", "mean": [0.5] * 3, "std": [0.25] * 3}]
EVAL = [{"type": "to_float"}, {"type": "normalize", "mean": [0.5] * 3, "std": [0.25] * 3}]


def model_config(batch_norm=False, seed=3):
    # Average, not max, pooling: the Shapes images have flat regions, so max pooling meets
    # exact ties whose winner flips with rounding-level differences (another summation order,
    # another kernel path); runs then part ways (0.15 apart after 150 steps, AVX2 vs generic
    # kernels), which would make any two-run comparison a coin toss.  With average pooling the
    # two kernel paths stay within 1e-6 over 300 steps.
    bn = lambda c: [{"type": "batch_norm2d", "num_features": c}] if batch_norm else []  # noqa
    layers = ([{"type": "conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3,
                "padding": 1}] + bn(8) + [{"type": "relu"}, {"type": "avg_pool2d",
                                                             "kernel_size": 2}]
              + [{"type": "conv2d", "in_channels": 8, "out_channels": 16, "kernel_size": 3,
                  "padding": 1}] + bn(16)
              + [{"type": "relu"}, {"type": "global_avg_pool2d"},
                 {"type": "linear", "in_features": 16, "out_features": 8}])
    return {"input_shape": [3, 16, 16], "layers": layers, "seed": seed}


def datasets(n_train=512, n_test=200):
    return Shapes(n=n_train, size=16, seed=1), Shapes(n=n_test, size=16, seed=1, train=False)


def train(comm, *, steps=300, batch_size=32, batch_norm=False, sync_batch_norm=False,
          augment=True, out_dir=None, resume=False, max_steps=None, plain=False,
          bucket_bytes=2048, epochs=None, lr=0.05, log=None):
    """Train the tiny model; returns (trainer, history).

    `plain` trains the single-process `cnnframe.train.Trainer` with a `DataLoader` instead
    (the non-distributed reference).  `bucket_bytes` is small so the model's gradients
    travel in several buckets.
    """
    from cnnframe.train import Trainer
    train_set, test_set = datasets()
    transform = build_transforms((AUGMENT if augment else EVAL))
    per_epoch = len(train_set) // batch_size
    epochs = epochs or -(-steps // per_epoch)
    model = Model.from_config(model_config(batch_norm))
    opt = build_optimizer({"type": "sgd", "lr": lr, "momentum": 0.9}, model)
    test_loader = DataLoader(test_set, 64, shuffle=False, transform=build_transforms(EVAL))
    if plain:
        loader = DataLoader(train_set, batch_size, seed=7, drop_last=True, transform=transform)
        trainer = Trainer(model, "cross_entropy", opt, progress=False, log=lambda *a: None,
                          out_dir=out_dir, curves=False)
    else:
        loader = ShardedLoader(train_set, batch_size, comm.rank, comm.size, seed=7,
                               transform=transform)
        trainer = DistributedTrainer(model, "cross_entropy", opt, comm=comm, progress=False,
                                     log=log or (lambda *a: None), sync_batch_norm=sync_batch_norm,
                                     bucket_bytes=bucket_bytes, threads=1, out_dir=out_dir,
                                     curves=False)
    history = trainer.fit(loader, test_loader, epochs=epochs, resume=resume,
                          max_steps=max_steps if max_steps is not None else steps)
    return trainer, history


def weights(model):
    return {k: np.array(v) for k, v in model.state_dict().items()}
