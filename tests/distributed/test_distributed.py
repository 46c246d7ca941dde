"""cnnframe.distributed without MPI: sharding, per-image augmentation, bucketing, sync batch
norm at world size 1, the layer_done hook, and the errors for missing MPI or uneven batches."""
import sys

import numpy as np
import pytest

from cnnframe.data import DataLoader
from cnnframe.data.shapes import Shapes
from cnnframe.data.transforms import build_transforms
from cnnframe.distributed import (GradientReducer, LocalCommunicator, PerImageRNG, ShardedLoader,
                                  convert_sync_batch_norm)
from cnnframe.graph import Model
from cnnframe.layers.normalization import BatchNorm2d

AUGMENT = [{"type": "random_crop", "padding": 2}, {"type": "random_horizontal_flip"}]


@pytest.fixture(scope="module")
def shapes():
    return Shapes(n=96, size=16, seed=0)


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_shards_of_any_world_size_make_the_same_global_batch(shapes, world_size):
    def global_batch(size, epoch, index):
        parts = [ShardedLoader(shapes, 24, r, size, seed=5, transform=build_transforms(AUGMENT),
                               prefetch=False).get_batch(epoch, index) for r in range(size)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    for epoch, index in ((0, 0), (1, 3)):
        x1, y1 = global_batch(1, epoch, index)
        xn, yn = global_batch(world_size, epoch, index)
        assert np.array_equal(y1, yn) and np.array_equal(x1, xn)


def test_sharded_loader_without_augmentation_matches_the_data_loader(shapes):
    plain = DataLoader(shapes, 24, seed=5, drop_last=True, prefetch=False)
    sharded = ShardedLoader(shapes, 24, 0, 1, seed=5, prefetch=False)
    for (xa, ya), (xb, yb) in zip(plain, sharded):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


@pytest.mark.parametrize("batch, ranks", [(33, 2), (10, 4)])
def test_uneven_global_batch_is_an_error(shapes, batch, ranks):
    with pytest.raises(ValueError, match=f"batch_size {batch} is the global batch and must "
                                         f"split evenly over {ranks} ranks"):
        ShardedLoader(shapes, batch, 0, ranks)


def test_loader_state_resumes_at_another_world_size(shapes):
    a = ShardedLoader(shapes, 24, 1, 2, seed=5)
    a.epoch, a.position = 2, 3
    b = ShardedLoader(shapes, 24, 0, 4, seed=5)
    b.load_state_dict(a.state_dict())
    assert (b.epoch, b.position) == (2, 3)


def test_per_image_rng_refuses_draws_not_per_image():
    rng = PerImageRNG([np.random.default_rng(i) for i in range(3)])
    assert rng.integers(0, 5, 3).shape == (3,) and rng.random((3, 2)).shape == (3, 2)
    with pytest.raises(TypeError, match="one value \\(or one row\\) per image"):
        rng.random()
    with pytest.raises(AttributeError, match="Generator.permutation"):
        rng.permutation(3)


def tiny_model(batch_norm=False):
    layers = [{"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3}]
    layers += [{"type": "batch_norm2d", "num_features": 4}] if batch_norm else []
    layers += [{"type": "relu"}, {"type": "global_avg_pool2d"},
               {"type": "linear", "in_features": 4, "out_features": 3}]
    return Model.from_config({"input_shape": [3, 8, 8], "layers": layers, "seed": 0})


def test_layer_done_is_called_after_each_node_in_backward_order(rng):
    model = tiny_model()
    model.forward(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    seen = []
    model.backward(np.ones((2, 3), np.float32), layer_done=seen.append)
    assert seen == list(reversed(model._order))


class _TwoIdenticalRanks(LocalCommunicator):
    """Looks like 2 ranks holding the same gradients: a sum doubles the buffer."""
    size = 2

    def __init__(self):
        super().__init__()
        self.sizes = []

    def iallreduce_sum(self, buf):
        self.sizes.append(buf.nbytes)
        buf *= 2
        return object()  # a request, already complete


@pytest.mark.parametrize("bucket_bytes", [1, 100, 1 << 20])
def test_buckets_average_every_gradient_once(rng, bucket_bytes):
    model = tiny_model()
    model.forward(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    comm = _TwoIdenticalRanks()
    reducer = GradientReducer(model, comm, bucket_bytes)
    reducer.start()
    model.backward(np.ones((2, 3), np.float32), layer_done=reducer.layer_done)
    before = {k: v.copy() for k, v in model.grads.items()}
    reducer.finish()
    for k, v in model.grads.items():
        assert np.array_equal(v, before[k]), k  # (g + g) / 2
    assert sum(comm.sizes) == sum(g.nbytes for g in before.values())
    assert comm.sizes == reducer.bucket_sizes
    # launched in plan order; a bucket is over the cap only to hold one large parameter
    assert all(b.size * 4 <= bucket_bytes or len(b.entries) == 1 for b in reducer.buckets)


@pytest.mark.parametrize("relu", [False, True])
def test_sync_batch_norm_on_one_rank_is_batch_norm(rng, relu):
    plain, synced = BatchNorm2d(4), BatchNorm2d(4)
    for layer in (plain, synced):
        layer.params["weight"][:] = [0.5, 1.5, -1.0, 2.0]
        layer.params["bias"][:] = [0.1, 0.2, -0.3, 0.4]
        layer.fused_relu = relu

    class Holder:
        nodes = {"bn": synced}
    assert convert_sync_batch_norm(Holder, LocalCommunicator()) == ["bn"]
    assert synced.get_config() == plain.get_config()
    x = (rng.standard_normal((6, 4, 5, 5)) * 2 + 1).astype(np.float32)
    g = rng.standard_normal((6, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(synced.forward(x), plain.forward(x), atol=1e-6)
    np.testing.assert_allclose(synced.backward(g), plain.backward(g), atol=1e-6)
    for k in ("weight", "bias"):
        np.testing.assert_allclose(synced.grads[k], plain.grads[k], rtol=1e-5, atol=1e-5)
    for k in ("running_mean", "running_var"):
        np.testing.assert_allclose(synced.buffers[k], plain.buffers[k], rtol=1e-6)


def test_world_size_one_trainer_is_the_plain_trainer():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import tiny_runs
    plain, _ = tiny_runs.train(None, steps=20, plain=True, augment=False)
    dist, _ = tiny_runs.train(LocalCommunicator(), steps=20, augment=False)
    a, b = tiny_runs.weights(plain.model), tiny_runs.weights(dist.model)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_distributed_flag_without_mpi4py_is_a_clear_error(monkeypatch, tmp_path, capsys):
    from cnnframe.cli import main
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    code = main(["train", "examples/configs/shapes_quickstart.toml", "--out",
                 str(tmp_path / "run"), "--distributed"])
    err = capsys.readouterr().err
    assert code == 1
    assert "needs mpi4py and an MPI library, and mpi4py is not installed" in err
    assert "pip install 'cnnframe[mpi]'" in err
    assert not (tmp_path / "run").exists()


def test_sync_batch_norm_config_must_be_a_bool():
    from cnnframe.train.config import validate_config
    base = {"model": {}, "data": {"dataset": "shapes"}, "optimizer": {"type": "sgd"},
            "epochs": 1, "batch_size": 8}
    assert "sync_batch_norm" not in validate_config(base)
    assert validate_config({**base, "sync_batch_norm": True})["sync_batch_norm"] is True
    with pytest.raises(ValueError, match="sync_batch_norm in the config must be true or false"):
        validate_config({**base, "sync_batch_norm": "yes"})
