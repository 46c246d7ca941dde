"""Data pipeline throughput: loader + augmentation, dataset load times.

    python benchmarks/bench_data.py [--epochs 2] [--all-cores] [--image-folder DIR]

Loader rows time full epochs over 50,000 CIFAR-sized uint8 images, batch 128, on one core
(pinned with sched_setaffinity unless --all-cores). Target: >= 20,000 images/s with crop + flip +
normalise. The augmentation table times each augmentation of cnnframe.data.augment on its own
(followed by to_float + normalize) at batches of 128 and 512, without prefetch, on one core (same
target). Dataset rows time loading CIFAR-10 written in both official formats to a temporary
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


# The augmentations of issue 18, each timed followed by to_float + normalize.
AUGMENTATIONS = [
    ("(to_float + normalize only)", []),
    ("random_crop + flip (baseline)", [{"type": "random_crop", "padding": 4},
                                       {"type": "random_horizontal_flip"}]),
    ("random_erasing", [{"type": "random_erasing"}]),
    ("random_erasing value=random", [{"type": "random_erasing", "value": "random"}]),
    ("cutout size=8", [{"type": "cutout", "size": 8}]),
    ("color_jitter b=c=s=0.4", [{"type": "color_jitter", "brightness": 0.4, "contrast": 0.4,
                                 "saturation": 0.4}]),
    ("color_jitter brightness=0.4", [{"type": "color_jitter", "brightness": 0.4}]),
    ("random_translate 2", [{"type": "random_translate", "max_shift": 2}]),
    ("random_translate 2 reflect", [{"type": "random_translate", "max_shift": 2,
                                     "padding_mode": "reflect"}]),
    ("alternating_flip", [{"type": "alternating_flip"}]),
    ("mixup", [{"type": "mixup", "alpha": 0.2}]),
    ("cutmix", [{"type": "cutmix"}]),
    ("translate+altflip+cutout+mixup/cutmix", [
        {"type": "random_translate", "max_shift": 2, "padding_mode": "reflect"},
        {"type": "alternating_flip"}, {"type": "cutout", "size": 8},
        {"type": "mixup", "alpha": 0.2}, {"type": "cutmix"}]),
]


def augmentation_table(images, labels, epochs=1, batch_sizes=(128, 512)):
    """Print the loader's images per CPU-second for each augmentation (prefetch off, so all
    the work is on this thread; CPU time, not wall time, so that other processes sharing
    the core do not count)."""
    n = len(images)
    print(f"\nAugmentations (cnnframe.data.augment), each + to_float + normalize, "
          f"{n:,} x 3x32x32 uint8, no prefetch;\nimages per CPU-second of the loading thread "
          "(target >= 20,000 per core)")
    print(f"{'augmentation':<40}" + "".join(f" {f'batch {b}':>11}" for b in batch_sizes))
    for name, augs in AUGMENTATIONS:
        transform = augs + [{"type": "to_float"}, {"type": "normalize"}]
        rates = []
        for b in batch_sizes:
            loader = DataLoader((images, labels), b, shuffle=True, seed=0, transform=transform,
                                prefetch=False)
            for _ in zip(range(2), loader):  # warm up
                pass
            loader.set_epoch(0)
            start, seen = time.thread_time(), 0
            for _ in range(epochs):
                for x, _ in loader:
                    seen += x.shape[0]
            rates.append(seen / (time.thread_time() - start))
        print(f"{name:<40}" + "".join(f" {r:>11,.0f}" for r in rates))


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
    augmentation_table(images[:20000], labels[:20000])

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
