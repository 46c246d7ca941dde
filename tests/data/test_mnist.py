import gzip

import numpy as np
import pytest

from cnnframe.data import MNIST, DatasetError, FashionMNIST
from cnnframe.data.mnist import FASHION_DEFAULT_ROOT, read_idx


def make_split(rng, n, size=(28, 28)):
    return rng.integers(0, 256, (n, *size), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
def test_reads_both_splits(tmp_path, writers, rng, gz, cls):
    train, test = make_split(rng, 7), make_split(rng, 3)
    writers.write_idx_split(tmp_path, True, *train, gz=gz)
    writers.write_idx_split(tmp_path, False, *test, gz=gz)
    for is_train, (images, labels) in ((True, train), (False, test)):
        ds = cls(tmp_path, train=is_train)
        assert ds.images.shape == (len(labels), 1, 28, 28) and ds.images.dtype == np.uint8
        np.testing.assert_array_equal(ds.images[:, 0], images)
        np.testing.assert_array_equal(ds.labels, labels)
        assert len(ds.classes) == 10
    assert FashionMNIST(tmp_path).classes[9] == "Ankle boot"
    assert MNIST(tmp_path).classes == [str(d) for d in range(10)]


def test_bad_magic_number_names_file(tmp_path, writers, rng):
    images, labels = write = make_split(rng, 4)
    paths = writers.write_idx_split(tmp_path, True, *write)
    data = bytearray(paths[0].read_bytes())
    data[2] = 0x0D  # float instead of unsigned byte
    paths[0].write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=rf"{paths[0]}: bad IDX magic number 0x00000d03"):
        MNIST(tmp_path)
    # a labels file where an images file belongs (1 dimension instead of 3)
    paths[0].write_bytes(writers.idx_bytes(labels))
    with pytest.raises(DatasetError, match="expected 0x00000803"):
        MNIST(tmp_path)


@pytest.mark.parametrize("cut", [2, 10, -1])
def test_truncated_file_names_file(tmp_path, writers, rng, cut):
    paths = writers.write_idx_split(tmp_path, True, *make_split(rng, 4))
    paths[0].write_bytes(paths[0].read_bytes()[:cut])
    with pytest.raises(DatasetError, match=str(paths[0])):
        MNIST(tmp_path)


def test_extra_bytes_are_an_error(tmp_path, writers, rng):
    paths = writers.write_idx_split(tmp_path, True, *make_split(rng, 4))
    paths[1].write_bytes(paths[1].read_bytes() + b"\0")
    with pytest.raises(DatasetError, match=r"train-labels.*13 bytes but the header's shape \(4,\)"):
        MNIST(tmp_path)


def test_truncated_gzip_names_file(tmp_path, writers, rng):
    paths = writers.write_idx_split(tmp_path, True, *make_split(rng, 4), gz=True)
    paths[0].write_bytes(paths[0].read_bytes()[:-20])
    with pytest.raises(DatasetError, match=rf"{paths[0]}: cannot decompress"):
        MNIST(tmp_path)


def test_count_mismatch_and_label_range(tmp_path, writers, rng):
    images, labels = make_split(rng, 5)
    paths = writers.write_idx_split(tmp_path, True, images, labels[:4])
    with pytest.raises(DatasetError, match=r"4 labels for 5 images"):
        MNIST(tmp_path)
    labels[3] = 10
    paths = writers.write_idx_split(tmp_path, True, images, labels)
    with pytest.raises(DatasetError, match=rf"{paths[1]}: label 10 at record 3"):
        MNIST(tmp_path)


def test_missing_files_and_root(tmp_path, writers, rng):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MNIST(tmp_path / "nowhere")
    writers.write_idx_split(tmp_path, True, *make_split(rng, 2))
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        MNIST(tmp_path, train=False)
    with pytest.raises(FileNotFoundError, match="no root given"):
        MNIST()


def test_read_idx_other_dimensions(tmp_path, writers):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(writers.idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz", 3), arr)


@pytest.mark.skipif(not FASHION_DEFAULT_ROOT.is_dir(),
                    reason=f"Debian package dataset-fashion-mnist not installed "
                           f"({FASHION_DEFAULT_ROOT} missing)")
def test_debian_fashion_mnist_default_root():
    train, test = FashionMNIST(), FashionMNIST(train=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(train.labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
