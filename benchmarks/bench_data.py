"""Data pipeline throughput: loader + augmentation, dataset load times.

    python benchmarks/bench_data.py [--epochs 2] [--all-cores] [--image-folder DIR]

Loader rows time full epochs over 50,000 CIFAR-sized uint8 images, batch 128, on one core
(pinned with sched_setaffinity unless --all-cores). Target: >= 20,000 images/s with crop + flip +
normalise. Dataset rows time loading CIFAR-10 written in both official formats to a temporary
directory, Shapes, Fashion-MNIST (if installed) and, with --image-folder (default: the shared
CIFAR-10 JPEG copy when present), ImageFolder's first (decoding) and second (cached) loads.
"""
import argparse
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from cnnframe.data import CIFAR10, DataLoader, FashionMNIST, ImageFolder, Shapes
from cnnframe.data.mnist import FASHION_DEFAULT_ROOT

SHARED_JPEG = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg"
AUGMENT = [{"type": "random_crop", "padding": 4}, {"type": "random_horizontal_flip"},
           {"type": "to_float"}, {"type": "normalize"}]


def time_loader(images, labels, transform, prefetch, epochs):
    loader = DataLoader((images, labels), 128, shuffle=True, seed=0, transform=transform,
                        prefetch=prefetch)
    for _ in zip(range(3), loader):  # warm up
        pass
    loader.set_epoch(0)
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for x, _ in loader:
            seen += x.shape[0]
    return seen / (time.perf_counter() - start)


def write_cifar(root, n_per_batch=10000, seed=0):
    rng = np.random.default_rng(seed)
    bin_dir, py_dir = root / "cifar-10-batches-bin", root / "cifar-10-batches-py"
    bin_dir.mkdir(parents=True)
    py_dir.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, n_per_batch, dtype=np.uint8)
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        (bin_dir / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], data], 1).tobytes())
        (py_dir / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels.tolist()}, 4))
    return bin_dir, py_dir


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--all-cores", action="store_true")
    parser.add_argument("--image-folder", default=str(SHARED_JPEG),
                        help="a folder with train/ and test/ class folders ('' to skip)")
    args = parser.parse_args()
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50000, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 50000)
    cores = "all cores" if args.all_cores else "1 core"
    print(f"DataLoader, 50,000 x 3x32x32 uint8, batch 128, {args.epochs} epochs, {cores}")
    print(f"{'transform':<34} {'prefetch':>8} {'images/s':>10}")
    for name, transform in [("to_float only", None), ("crop+flip+to_float+normalize", AUGMENT)]:
        for prefetch in (False, True):
            rate = time_loader(images, labels, transform, prefetch, args.epochs)
            print(f"{name:<34} {str(prefetch):>8} {rate:>10,.0f}")

    print(f"\n{'dataset load':<44} {'seconds':>8} {'images':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        bin_dir, py_dir = write_cifar(Path(tmp))
        for label, path in [("CIFAR10 binary dir (50k train)", bin_dir),
                            ("CIFAR10 python dir (50k train)", py_dir)]:
            sec, ds = timed(lambda: CIFAR10(path, train=True))
            print(f"{label:<44} {sec:>8.2f} {len(ds):>8}")
    sec, ds = timed(lambda: Shapes(10000))
    print(f"{'Shapes(10000)':<44} {sec:>8.2f} {len(ds):>8}")
    if FASHION_DEFAULT_ROOT.is_dir():
        sec, ds = timed(lambda: FashionMNIST(train=True))
        print(f"{'FashionMNIST train (.gz)':<44} {sec:>8.2f} {len(ds):>8}")
    folder = Path(args.image_folder) if args.image_folder else None
    if folder and (folder / "train").is_dir():
        with tempfile.TemporaryDirectory() as cache:
            for split in ("test", "train"):
                for attempt in ("first, decoding", "second, cached"):
                    sec, ds = timed(lambda: ImageFolder(folder / split, cache_dir=cache))
                    print(f"{f'ImageFolder {split} ({attempt})':<44} {sec:>8.2f} {len(ds):>8}")
    elif folder:
        print(f"(ImageFolder rows skipped: {folder} has no train/ folder)")


if __name__ == "__main__":
    main()
