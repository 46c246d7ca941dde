import threading

import numpy as np
import pytest

from cnnframe.data import ArrayDataset, DataLoader, Shapes

AUGMENT = [{"type": "random_crop", "padding": 4}, {"type": "random_horizontal_flip"},
           {"type": "to_float"}, {"type": "normalize"}]


@pytest.fixture(scope="module")
def dataset():
    return Shapes(100, size=16, seed=0)


def collect(loader, count=None):
    out = []
    for i, (x, y) in enumerate(loader):
        out.append((x.copy(), y.copy()))
        if count is not None and i + 1 == count:
            break
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("prefetch", [True, False])
def test_batches_cover_the_epoch_once(dataset, prefetch):
    loader = DataLoader(dataset, 32, seed=1, prefetch=prefetch)
    batches = collect(loader)
    assert len(loader) == len(batches) == 4
    assert [len(y) for _, y in batches] == [32, 32, 32, 4]
    for x, y in batches:
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape[1:] == (3, 16, 16)
        assert y.dtype == np.int64 and 0 <= x.min() and x.max() <= 1
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    # the same images as the dataset, in a permuted order, with matching labels
    keys = {img.tobytes(): lab for img, lab in zip(dataset.images, dataset.labels)}
    restored = np.rint(x * 255).astype(np.uint8)
    assert sorted(img.tobytes() for img in restored) == sorted(keys)
    assert all(keys[img.tobytes()] == lab for img, lab in zip(restored, y))
    assert not np.array_equal(y, dataset.labels)


def test_no_shuffle_keeps_order_and_drop_last(dataset):
    loader = DataLoader(dataset, 30, shuffle=False, drop_last=True)
    batches = collect(loader)
    assert len(loader) == len(batches) == 3
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), dataset.labels[:90])
    np.testing.assert_allclose(batches[0][0], dataset.images[:30] / 255, rtol=1e-6)


def test_order_deterministic_per_seed_and_new_each_epoch(dataset):
    a = DataLoader(dataset, 25, seed=3, transform=AUGMENT)
    b = DataLoader(dataset, 25, seed=3, transform=AUGMENT)
    epoch0, epoch1 = collect(a), collect(a)
    assert_same(epoch0, collect(b))
    assert_same(epoch1, collect(b))
    assert not np.array_equal(epoch0[0][1], epoch1[0][1])
    other = collect(DataLoader(dataset, 25, seed=4, transform=AUGMENT))
    assert not np.array_equal(other[0][0], epoch0[0][0])


def test_prefetch_gives_identical_batches(dataset):
    assert_same(collect(DataLoader(dataset, 16, seed=2, transform=AUGMENT, prefetch=True)),
                collect(DataLoader(dataset, 16, seed=2, transform=AUGMENT, prefetch=False)))


@pytest.mark.parametrize("stop_after", [1, 4, 7, 12])
def test_resume_from_state_reproduces_uninterrupted_run(dataset, stop_after):
    """3 epochs of 7 batches, interrupted after `stop_after` batches and resumed from state."""
    reference = DataLoader(dataset, 15, seed=9, transform=AUGMENT)
    full = [b for _ in range(3) for b in collect(reference)]
    first = DataLoader(dataset, 15, seed=9, transform=AUGMENT)
    done = []
    while len(done) < stop_after:
        done += collect(first, stop_after - len(done))
    state = first.state_dict()
    # the state survives a round trip through an .npz-like dict of numpy scalars
    state = {k: np.asarray(v) for k, v in state.items()}
    resumed = DataLoader(dataset, 15, seed=9, transform=AUGMENT)
    resumed.load_state_dict(state)
    while len(done) < len(full):
        done += collect(resumed)
    assert_same(done, full)


def test_position_advances_as_batches_are_handed_out(dataset):
    loader = DataLoader(dataset, 40, seed=0)  # 3 batches per epoch
    it = iter(loader)
    next(it)
    assert (loader.epoch, loader.position) == (0, 1)
    next(it), next(it)
    assert (loader.epoch, loader.position) == (1, 0)
    it.close()
    # breaking out and iterating again continues where it stopped
    loader.set_epoch(5)
    collect(loader, 1)
    rest = collect(loader)
    assert len(rest) == 2 and (loader.epoch, loader.position) == (6, 0)
    assert_same(rest, [loader.get_batch(5, 1), loader.get_batch(5, 2)])


def test_load_state_dict_rejects_mismatches(dataset):
    state = DataLoader(dataset, 10, seed=1).state_dict()
    for kwargs, key in [({"seed": 2}, "seed"), ({"batch_size": 11}, "batch_size"),
                        ({"shuffle": False}, "shuffle")]:
        args = {"seed": 1, "batch_size": 10, **kwargs}
        with pytest.raises(ValueError, match=key):
            DataLoader(dataset, **args).load_state_dict(state)
    with pytest.raises(ValueError, match="num_samples"):
        DataLoader(dataset[:50], 10, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="out of range"):
        DataLoader(dataset, 10, seed=1).load_state_dict({**state, "position": 10})
    with pytest.raises(ValueError, match="lacks key"):
        DataLoader(dataset, 10, seed=1).load_state_dict({"epoch": 0})


def test_transform_errors_reach_the_consumer_and_stop_the_thread(dataset):
    def broken(batch, rng):
        raise RuntimeError("transform failed")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="transform failed"):
        collect(DataLoader(dataset, 10, transform=broken))
    assert threading.active_count() == before


def test_abandoned_iteration_stops_the_thread(dataset):
    before = threading.active_count()
    loader = DataLoader(dataset, 5)
    it = iter(loader)
    next(it)
    it.close()
    assert threading.active_count() == before


def test_plain_callable_transform_and_tuple_dataset(rng):
    images = rng.integers(0, 256, (10, 1, 4, 4), dtype=np.uint8)
    labels = np.arange(10)
    loader = DataLoader((images, labels), 4, shuffle=False,
                        transform=lambda b, r: b.astype(np.float32) + r.integers(0, 1))
    x, y = next(iter(loader))
    np.testing.assert_array_equal(x, images[:4])  # float output is left unscaled
    assert x.dtype == np.float32


def test_bad_arguments(dataset):
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(dataset, 0)
    with pytest.raises(TypeError, match=".images and .labels"):
        DataLoader([1, 2, 3], 2)
    with pytest.raises(ValueError, match="same first dimension"):
        DataLoader((np.zeros((3, 1, 2, 2), np.uint8), np.zeros(2)), 2)
    with pytest.raises(ValueError, match="unknown transform type"):
        DataLoader(dataset, 2, transform=[{"type": "nope"}])


def test_tiny_dataset_with_drop_last_gives_empty_epochs():
    ds = ArrayDataset(np.zeros((3, 1, 2, 2), np.uint8), [0, 1, 0], ["a", "b"])
    loader = DataLoader(ds, 4, drop_last=True)
    assert len(loader) == 0 and collect(loader) == [] and loader.epoch == 1
