"""Data pipeline throughput: loader + augmentation, dataset load times, image decoding.

    python benchmarks/bench_data.py [--epochs 2] [--all-cores] [--image-folder DIR]
                                    [--decode-images N] [--decode-only]

Loader rows time full epochs over 50,000 CIFAR-sized uint8 images, batch 128, on one core
(pinned with sched_setaffinity unless --all-cores). Target: >= 20,000 images/s with crop + flip +
normalise. The augmentation table times each augmentation of cnnframe.data.augment on its own
(followed by to_float + normalize) at batches of 128 and 512, without prefetch, on one core (same
target). Dataset rows time loading CIFAR-10 written in both official formats to a temporary
directory, Shapes, Fashion-MNIST (if installed) and, with --image-folder (default: the shared
CIFAR-10 JPEG copy when present), ImageFolder's first (decoding) and second (cached) loads.
Decode rows (`bench_decode`) time ImageFolder decoding a folder of generated photo-like 500x375
JPEGs (about 30 KB each) to each image_size: per core (one decoding process, pinned; images per
second of wall time and per CPU-second, the figure that does not depend on other load on the
machine) and with one worker process per core. Target: >= 400 images/s per core.
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


def write_photo_jpegs(root, n, size=(500, 375), classes=4, seed=0):
    """`n` photo-like JPEGs (smooth gradients, a few discs, mild noise; quality 85) of
    `size` (W, H) in `classes` class folders under `root`."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        a = rng.uniform(-0.4, 0.4, (3, 2)).astype(np.float32)
        img = a[:, 0, None, None] * xx + a[:, 1, None, None] * yy + rng.uniform(0, 255, (3, 1, 1))
        for _ in range(4):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 120)
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img = np.where(disc, rng.uniform(0, 255, (3, 1, 1)), img)
        img += rng.normal(0, 3, img.shape).astype(np.float32)
        pixels = np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=85)


def bench_decode(n=800, sizes=((64, 64), (128, 128), (224, 224)), all_cores=True):
    """Print ImageFolder's decoding rate for `n` generated 500x375 JPEGs per image_size."""
    from cnnframe.data.image_folder import default_workers
    cores = default_workers()
    print(f"\nImageFolder decoding {n} generated 500x375 JPEGs "
          f"(resize=shorter_side_then_center_crop, cache on)")
    print(f"{'image_size':<12} {'per core: images/s':>19} {'images/CPU-s':>13} "
          f"{f'{cores} processes: images/s':>24}")
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jpegs"
        write_photo_jpegs(folder, n)
        for size in sizes:
            if affinity:
                os.sched_setaffinity(0, {sorted(affinity)[0]})
            cpu0, wall0 = time.process_time(), time.perf_counter()
            ImageFolder(folder, cache_dir=Path(tmp) / "cache1", image_size=size, workers=1,
                        progress=False)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if affinity:
                os.sched_setaffinity(0, affinity)
            row = f"{f'{size[0]}x{size[1]}':<12} {n / wall:>19,.0f} {n / cpu:>13,.0f}"
            if all_cores and cores > 1:
                sec, _ = timed(lambda: ImageFolder(folder, cache_dir=Path(tmp) / "cacheN",
                                                   image_size=size, workers=cores,
                                                   progress=False))
                row += f" {n / sec:>24,.0f}"
            print(row)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--all-cores", action="store_true")
    parser.add_argument("--image-folder", default=str(SHARED_JPEG),
                        help="a folder with train/ and test/ class folders ('' to skip)")
    parser.add_argument("--decode-images", type=int, default=800, metavar="N",
                        help="generated JPEGs for the decode rows (0 to skip)")
    parser.add_argument("--decode-only", action="store_true",
                        help="only the decode rows")
    args = parser.parse_args()
    if args.decode_only:
        bench_decode(args.decode_images)
        return
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
    if args.decode_images:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        bench_decode(args.decode_images)


if __name__ == "__main__":
    main()
