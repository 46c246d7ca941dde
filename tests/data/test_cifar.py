import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cnnframe.data import CIFAR10, DatasetError, cifar

FORMATS = ["binary", "python"]


def assert_split(ds, arrays, train, writers):
    images, labels = writers.expected_split(arrays, train)
    assert ds.images.dtype == np.uint8 and ds.images.shape == images.shape
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.classes == cifar.CLASSES and len(ds) == len(labels)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layout", ["directory", "archive"])
@pytest.mark.parametrize("train", [True, False])
def test_reads_official_formats(tmp_path, writers, cifar_arrays, fmt, layout, train):
    write = writers.write_cifar_dir if layout == "directory" else writers.write_cifar_archive
    path = write(tmp_path, fmt, cifar_arrays)
    ds = CIFAR10(tmp_path, train=train)
    assert ds.format == fmt and ds.path == path
    assert_split(ds, cifar_arrays, train, writers)
    # the root may also be the batches directory or the archive itself
    assert_split(CIFAR10(path, train=train), cifar_arrays, train, writers)


def test_pixel_layout_is_rgb_planes_row_major(tmp_path, writers):
    arrays = writers.make_cifar_arrays(1, per_batch=1)
    flat = np.zeros(3072, np.uint8)
    flat[0 * 1024 + 2 * 32 + 5] = 11   # R at row 2, column 5
    flat[1 * 1024 + 31 * 32 + 0] = 22  # G at row 31, column 0
    flat[2 * 1024 + 0 * 32 + 31] = 33  # B at row 0, column 31
    arrays["test_batch"] = (flat.reshape(1, 3, 32, 32), np.array([4]))
    folder = tmp_path / cifar.DIRS["binary"]
    writers.write_cifar_dir(tmp_path, "binary", arrays)
    (folder / "test_batch.bin").write_bytes(bytes([4]) + flat.tobytes())
    image = CIFAR10(tmp_path, train=False).images[0]
    assert image[0, 2, 5] == 11 and image[1, 31, 0] == 22 and image[2, 0, 31] == 33
    assert image.sum() == 66


def test_prefers_binary_when_both_present(tmp_path, writers):
    py, binary = writers.make_cifar_arrays(1), writers.make_cifar_arrays(2)
    writers.write_cifar_dir(tmp_path, "python", py)
    writers.write_cifar_archive(tmp_path, "binary", binary)
    ds = CIFAR10(tmp_path, train=True)
    assert ds.format == "binary"
    assert_split(ds, binary, True, writers)


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CIFAR10(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="download=True"):
        CIFAR10(tmp_path)


def batch_path(tmp_path, fmt):
    return tmp_path / cifar.DIRS[fmt] / ("data_batch_3.bin" if fmt == "binary" else "data_batch_3")


@pytest.mark.parametrize("cut", [1, 3073 + 100, -1])
def test_truncated_binary_batch_names_file(tmp_path, writers, cifar_arrays, cut):
    writers.write_cifar_dir(tmp_path, "binary", cifar_arrays)
    path = batch_path(tmp_path, "binary")
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin.*3073-byte records"):
        CIFAR10(tmp_path, train=True)


def test_empty_binary_batch_is_an_error(tmp_path, writers, cifar_arrays):
    writers.write_cifar_dir(tmp_path, "binary", cifar_arrays)
    batch_path(tmp_path, "binary").write_bytes(b"")
    with pytest.raises(DatasetError, match="data_batch_3"):
        CIFAR10(tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_label_out_of_range_names_file_and_record(tmp_path, writers, cifar_arrays, fmt):
    images, labels = cifar_arrays["data_batch_3"]
    labels = labels.copy()
    labels[2] = 10
    cifar_arrays["data_batch_3"] = (images, labels)
    writers.write_cifar_dir(tmp_path, fmt, cifar_arrays)
    with pytest.raises(DatasetError, match=r"data_batch_3.*label 10 at record 2"):
        CIFAR10(tmp_path, train=True)
    assert len(CIFAR10(tmp_path, train=False)) == 4  # the test split is fine


def test_truncated_python_batch_names_file(tmp_path, writers, cifar_arrays):
    writers.write_cifar_dir(tmp_path, "python", cifar_arrays)
    path = batch_path(tmp_path, "python")
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DatasetError, match=r"data_batch_3: cannot unpickle"):
        CIFAR10(tmp_path)


@pytest.mark.parametrize("batch, message", [
    ({b"labels": [1]}, "lacks 'data'"),
    ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, "uint8"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "1 labels for 2 images"),
    ([1, 2, 3], "expected a pickled dict"),
])
def test_malformed_python_batch(tmp_path, writers, cifar_arrays, batch, message):
    writers.write_cifar_dir(tmp_path, "python", cifar_arrays)
    batch_path(tmp_path, "python").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=message):
        CIFAR10(tmp_path)


class Malicious:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_python_batch_does_not_run_code(tmp_path, writers, cifar_arrays):
    writers.write_cifar_dir(tmp_path, "python", cifar_arrays)
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [Malicious(marker)]}
    batch_path(tmp_path, "python").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_3.*refusing to load global"):
        CIFAR10(tmp_path)
    assert not marker.exists()



def test_python_batch_with_too_many_values_names_file(tmp_path, writers, cifar_arrays):
    writers.write_cifar_dir(tmp_path, "python", cifar_arrays)
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0] * 1_000_001}
    batch_path(tmp_path, "python").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_3: cannot unpickle.*more than 1000000"):
        CIFAR10(tmp_path)


def test_python_batch_of_shared_nested_lists_fails_fast(tmp_path, writers, cifar_arrays):
    # a 744-byte pickle describing 60**6 paths: refused (not a dict) without walking them all
    writers.write_cifar_dir(tmp_path, "python", cifar_arrays)
    nested = []
    for _ in range(6):
        nested = [nested] * 60
    batch_path(tmp_path, "python").write_bytes(pickle.dumps(nested, protocol=2))
    with pytest.raises(DatasetError, match="data_batch_3: expected a pickled dict, got list"):
        CIFAR10(tmp_path)

@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_archive_names_archive(tmp_path, writers, cifar_arrays, fmt):
    path = writers.write_cifar_archive(tmp_path, fmt, cifar_arrays)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DatasetError, match=rf"{cifar.ARCHIVES[fmt]}.*truncated or corrupt"):
        CIFAR10(tmp_path)


def test_archive_missing_a_batch(tmp_path, writers, cifar_arrays):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = writers.binary_bytes(*cifar_arrays["test_batch"])
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / cifar.ARCHIVES["binary"]).write_bytes(buf.getvalue())
    assert len(CIFAR10(tmp_path, train=False)) == 4
    with pytest.raises(DatasetError, match="lacks cifar-10-batches-bin/data_batch_1.bin"):
        CIFAR10(tmp_path, train=True)


def test_directory_missing_a_batch(tmp_path, writers, cifar_arrays):
    folder = writers.write_cifar_dir(tmp_path, "binary", cifar_arrays)
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(DatasetError, match="missing batch file.*data_batch_5.bin"):
        CIFAR10(tmp_path)


def test_not_a_gzip_archive(tmp_path):
    (tmp_path / cifar.ARCHIVES["python"]).write_bytes(gzip.compress(b"not a tar file"))
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        CIFAR10(tmp_path)


def test_indexing_and_subsets(tmp_path, writers, cifar_arrays):
    writers.write_cifar_dir(tmp_path, "binary", cifar_arrays)
    ds = CIFAR10(tmp_path)
    image, label = ds[3]
    np.testing.assert_array_equal(image, ds.images[3])
    assert label == ds.labels[3]
    sub = ds[5:9]
    assert len(sub) == 4 and sub.classes == ds.classes
    a, b = ds.split(0.25, seed=1)
    assert len(a) == 5 and len(b) == 15
    assert sorted(np.concatenate([a.labels, b.labels])) == sorted(ds.labels)
    assert sum(ds.class_counts().values()) == len(ds)


def write_class_per_folder(folder, seed, per_class=2, size=32):
    """folder/{train,test}/<class>/<i>.png random lossless images.

    Returns {train: (images uint8 (N, 3, size, size), labels int64 (N,))} in class order."""
    Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")
    rng = np.random.default_rng(seed)
    out = {}
    for train in (True, False):
        images, labels = [], []
        for label, name in enumerate(cifar.CLASSES):
            (folder / ("train" if train else "test") / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(
                    folder / ("train" if train else "test") / name / f"{i:04d}.png")
                images.append(pixels.transpose(2, 0, 1))
                labels.append(label)
        out[train] = (np.stack(images), np.array(labels))
    return out


@pytest.mark.parametrize("where", [".", "cifar10-jpeg", "cifar10"])
@pytest.mark.parametrize("train", [True, False])
def test_class_per_folder_copy(tmp_path, monkeypatch, where, train):
    monkeypatch.setenv("CNNFRAME_CACHE", str(tmp_path / "cache"))
    expected = write_class_per_folder(tmp_path / "data" / where, seed=0)
    ds = CIFAR10(tmp_path / "data", train=train, progress=False)
    folder = (tmp_path / "data" / where).resolve()
    assert ds.format == "image_folder" and Path(ds.path).resolve() == \
        folder / ("train" if train else "test")
    assert ds.classes == cifar.CLASSES and ds.images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(ds.images, expected[train][0])
    np.testing.assert_array_equal(ds.labels, expected[train][1])
    assert cifar.find_cifar10_image_folder(tmp_path / "data").resolve() == folder
    # decoded once: the second load comes from the ImageFolder cache
    assert len(list((tmp_path / "cache" / "image_folder").iterdir())) == 1
    np.testing.assert_array_equal(CIFAR10(tmp_path / "data", train=train).images, ds.images)


def test_official_release_is_preferred_to_class_per_folder_copy(tmp_path, writers, cifar_arrays):
    write_class_per_folder(tmp_path / "cifar10-jpeg", seed=1, per_class=1)
    writers.write_cifar_dir(tmp_path, "binary", cifar_arrays)
    ds = CIFAR10(tmp_path, train=False, cache=False)
    assert ds.format == "binary"
    assert_split(ds, cifar_arrays, False, writers)


def test_class_per_folder_copy_of_wrong_size_or_missing_class(tmp_path):
    write_class_per_folder(tmp_path / "big", seed=0, per_class=1, size=40)
    with pytest.raises(DatasetError, match=r"airplane/0000\.png: image is 40x40 pixels; "
                                           r"CIFAR-10 images are 32x32"):
        CIFAR10(tmp_path / "big", cache=False)
    write_class_per_folder(tmp_path / "partial", seed=0, per_class=1)
    for image in (tmp_path / "partial" / "test" / "truck").iterdir():
        image.unlink()
    (tmp_path / "partial" / "test" / "truck").rmdir()
    with pytest.raises(FileNotFoundError, match="class folder 'truck' does not exist"):
        CIFAR10(tmp_path / "partial", train=False, cache=False)


def test_not_found_message_names_the_class_per_folder_layout(tmp_path):
    (tmp_path / "train").mkdir()  # a train folder without CIFAR-10's class folders
    with pytest.raises(FileNotFoundError, match=r"class-per-folder copy \(train/<class>/\*\.jpg"):
        CIFAR10(tmp_path)
