"""Writers of tiny dataset files in the real formats, for the data and CLI tests.

tests/data/conftest.py hands them to tests as the `writers` fixture.
"""
import gzip
import io
import pickle
import tarfile

import numpy as np

from cnnframe.data import cifar

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar_folder(root, per_class=(("train", 2), ("test", 1)), seed=0):
    """A class-per-folder CIFAR-10 copy of random 32x32 PNGs (root/train/airplane/0.png ...),
    `n` per class for each (split, n) of `per_class`; returns root.  Needs Pillow."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, n in per_class:
        for c in cifar.CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.png")
    return root


def make_cifar_arrays(seed, per_batch=4):
    """{batch name: (images uint8 (n, 3, 32, 32), labels int64 (n,))}, distinct per seed."""
    rng = np.random.default_rng(seed)
    return {name: (rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8),
                   rng.integers(0, 10, per_batch)) for name in BATCHES}


def binary_bytes(images, labels):
    """CIFAR binary records: label byte, then the R, G and B 32x32 planes."""
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None],
                              images.reshape(len(images), -1)], axis=1)
    return records.tobytes()


def python_bytes(images, labels, protocol=2):
    """A pickled python batch as in cifar-10-batches-py (bytes keys)."""
    batch = {b"batch_label": b"batch", b"labels": [int(v) for v in labels],
             b"data": images.reshape(len(images), -1),
             b"filenames": [b"img_%d.png" % i for i in range(len(images))]}
    return pickle.dumps(batch, protocol=protocol)


def cifar_files(fmt, arrays):
    """{file name inside the batches directory: bytes} for format `fmt`."""
    if fmt == "binary":
        files = {f"{n}.bin": binary_bytes(*arrays[n]) for n in BATCHES}
        files["batches.meta.txt"] = ("\n".join(cifar.CLASSES) + "\n").encode()
    else:
        files = {n: python_bytes(*arrays[n]) for n in BATCHES}
        files["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in cifar.CLASSES]})
    return files


def write_cifar_dir(root, fmt, arrays):
    folder = root / cifar.DIRS[fmt]
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in cifar_files(fmt, arrays).items():
        (folder / name).write_bytes(data)
    return folder


def cifar_archive_bytes(fmt, arrays):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in cifar_files(fmt, arrays).items():
            info = tarfile.TarInfo(f"{cifar.DIRS[fmt]}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_cifar_archive(root, fmt, arrays):
    path = root / cifar.ARCHIVES[fmt]
    path.write_bytes(cifar_archive_bytes(fmt, arrays))
    return path


def expected_split(arrays, train):
    names = BATCHES[:5] if train else BATCHES[5:]
    return (np.concatenate([arrays[n][0] for n in names]),
            np.concatenate([arrays[n][1] for n in names]))


def idx_bytes(array):
    """An unsigned-byte IDX file holding `array`."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def write_idx_split(root, train, images, labels, gz=False):
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte") if train else \
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = []
    for stem, arr in zip(stems, (images, labels)):
        data = idx_bytes(arr)
        path = root / (stem + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        paths.append(path)
    return paths


class Writers:
    """Namespace handed to tests, so they need not import from conftest."""
    make_cifar_arrays = staticmethod(make_cifar_arrays)
    binary_bytes = staticmethod(binary_bytes)
    python_bytes = staticmethod(python_bytes)
    write_cifar_dir = staticmethod(write_cifar_dir)
    write_cifar_archive = staticmethod(write_cifar_archive)
    cifar_archive_bytes = staticmethod(cifar_archive_bytes)
    expected_split = staticmethod(expected_split)
    idx_bytes = staticmethod(idx_bytes)
    write_idx_split = staticmethod(write_idx_split)
    BATCHES = BATCHES



def write_data_root(root, cifar_arrays):
    """Fill `root` with CIFAR-10 (binary archive + python dir), an image folder and MNIST.

    The image folder is root/pets with classes cats and dogs (3 and 4 train images, 1 and 2
    test images, 4x4 pixels); MNIST is root/digits (5 train images, gzipped, and 2 test).
    Needs Pillow.
    """
    from PIL import Image
    write_cifar_archive(root, "binary", cifar_arrays)
    write_cifar_dir(root, "python", cifar_arrays)
    for split, n in (("train", 3), ("test", 1)):
        for name in ("cats", "dogs"):
            folder = root / "pets" / split / name
            folder.mkdir(parents=True)
            for i in range(n + (name == "dogs")):
                Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / f"{i}.png")
    rng = np.random.default_rng(0)
    (root / "digits").mkdir()
    write_idx_split(root / "digits", True, rng.integers(0, 256, (5, 28, 28)),
                    np.array([0, 1, 1, 9, 9]), gz=True)
    write_idx_split(root / "digits", False, rng.integers(0, 256, (2, 28, 28)), np.array([3, 3]))
    return root


def write_mixed_image_folder(root, per_class=10, classes=("cats", "dogs"), seed=0):
    """root/<class>/ images as users bring them: sizes from 23x17 to 120x90, JPEG and PNG,
    RGB and grayscale; class 0 also holds one CMYK JPEG, one 16-bit grayscale PNG, one
    palette PNG with a transparent colour, one RGBA PNG and one JPEG with an EXIF
    orientation (rotated 90 degrees). Class k's images are brighter than class k-1's.
    Returns the list of paths. Needs Pillow.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    sizes = [(120, 90), (90, 120), (64, 48), (23, 17), (50, 50), (75, 100), (33, 60)]
    paths = []
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = sizes[(i + k) % len(sizes)]
            level = 60 + 120 * k / max(len(classes) - 1, 1)
            pixels = np.clip(rng.normal(level, 30, (h, w, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            if i % 3 == 2:
                image = image.convert("L")
            path = folder / f"{i:03d}{'.jpg' if i % 2 else '.png'}"
            image.save(path)
            paths.append(path)
        if k == 0:
            special = {
                "cmyk.jpg": lambda p: Image.fromarray(pixels).convert("CMYK").save(p),
                "wide16.png": lambda p: Image.fromarray(
                    (pixels[..., 0].astype(np.uint16) * 257)).save(p),
                "palette.png": lambda p: Image.fromarray(pixels).convert(
                    "P", palette=Image.ADAPTIVE, colors=16).save(p, transparency=0),
                "rgba.png": lambda p: Image.fromarray(np.dstack(
                    [pixels, np.full(pixels.shape[:2], 128, np.uint8)])).save(p),
                "rotated.jpg": lambda p: _save_rotated(Image.fromarray(pixels), p),
            }
            for file_name, save in special.items():
                save(folder / file_name)
                paths.append(folder / file_name)
    return paths


def _save_rotated(image, path, orientation=6):
    exif = image.getexif()
    exif[0x0112] = orientation  # "rotate 90 degrees clockwise to display"
    image.save(path, exif=exif)
