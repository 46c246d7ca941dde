"""Datasets by name: `cnnframe.data.get_dataset` and `available_datasets`."""
import pytest
from dataset_writers import write_data_root

from cnnframe.data import CIFAR10, MNIST, ImageFolder, Shapes, available_datasets, get_dataset

pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")


@pytest.fixture
def data_root(tmp_path, cifar_arrays):
    """A root holding CIFAR-10 (binary archive + python dir), an image folder and MNIST."""
    return write_data_root(tmp_path, cifar_arrays)


def test_get_dataset_by_name(data_root):
    assert isinstance(get_dataset("cifar10", data_root, train=False), CIFAR10)
    pets = get_dataset("image-folder", data_root / "pets", train=True, cache=False)
    assert isinstance(pets, ImageFolder) and len(pets) == 7 and pets.classes == ["cats", "dogs"]
    assert len(get_dataset("cifar10_jpeg", data_root / "pets", train=False, cache=False)) == 3
    assert isinstance(get_dataset("MNIST", data_root / "digits"), MNIST)
    shapes = get_dataset("shapes", train=False, n=16, seed=2)
    assert isinstance(shapes, Shapes) and len(shapes) == 16 and not shapes.train
    assert set(available_datasets()) == {"cifar10", "image_folder", "mnist", "fashion_mnist",
                                         "shapes"}
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid names: cifar10"):
        get_dataset("imagenet")
    # a root of class folders alone is a training split without a test split
    single = get_dataset("image_folder", data_root / "pets" / "train", train=True, cache=False)
    assert len(single) == 7 and single.classes == ["cats", "dogs"]
    with pytest.raises(FileNotFoundError, match=r"no train/ and test/ folders, so no test split; "
                                                r"hold out .* with validation = 0.1"):
        get_dataset("image_folder", data_root / "pets" / "train", train=False)
    (data_root / "pets" / "test").rename(data_root / "pets" / "val")
    assert len(get_dataset("image_folder", data_root / "pets", train=False, cache=False)) == 3
    (data_root / "pets" / "train").rename(data_root / "pets" / "training")
    with pytest.raises(FileNotFoundError, match="no train folder for the train split"):
        get_dataset("image_folder", data_root / "pets", train=True)
