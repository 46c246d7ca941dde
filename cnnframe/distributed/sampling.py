"""Sharded, world-size-independent sampling and augmentation.

`ShardedLoader` yields this rank's share of every *global* batch.  Epoch e visits the same
permutation as `cnnframe.data.DataLoader` (``default_rng([seed, 0, e])``), cut into global
batches of ``batch_size``; rank r of N takes the r-th of N equal contiguous slices of each.
Every image is augmented with its own Generator, ``default_rng([seed, 2, e, i])`` for dataset
index i, so an image gets the same crop and flip whichever rank reads it and whatever the
world size: the same seed gives the same global batches of the same augmented images on 1, 2
or 64 ranks.

The transforms stay vectorised over the shard: they receive a `PerImageRNG`, whose draws of
n values take value k from image k's Generator.
"""
import numpy as np

from cnnframe.data.loader import DataLoader
from cnnframe.data.transforms import Transform

__all__ = ["ShardedLoader", "PerImageRNG", "shard_range", "check_global_batch"]


def check_global_batch(batch_size, world_size):
    """The per-rank batch size; ValueError when `batch_size` does not split evenly."""
    if batch_size % world_size:
        lower = batch_size - batch_size % world_size
        raise ValueError(
            f"batch_size {batch_size} is the global batch and must split evenly over "
            f"{world_size} ranks (it is not a multiple of {world_size}); use e.g. "
            f"{lower or world_size} or {lower + world_size}")
    return batch_size // world_size


def shard_range(n, rank, world_size):
    """[start, stop) of rank's contiguous share of n items (sizes differ by at most 1)."""
    return n * rank // world_size, n * (rank + 1) // world_size


class PerImageRNG:
    """Looks like a numpy Generator to a batch transform; draws come from one Generator per
    image.

    A draw whose size is n (the number of images), or a tuple starting with n, returns row k
    from ``generators[k]``.  Each transform thus draws the same numbers for an image whether
    the image is augmented alone, in a shard or in the whole global batch.

    Parameters
    ----------
    generators : list of numpy.random.Generator, one per image
    """

    # method -> the position of its `size` argument
    _METHODS = {"integers": 2, "random": 0, "uniform": 2, "normal": 2, "standard_normal": 0}

    def __init__(self, generators):
        self.generators = list(generators)

    def _draw(self, method, size, args, kwargs):
        n = len(self.generators)
        shape = (size,) if np.ndim(size) == 0 and size is not None else tuple(size or ())
        if not shape or shape[0] != n:
            raise TypeError(
                f"a transform drew {method}(size={size!r}) for a batch of {n} images; "
                "per-image augmentation (distributed training) needs draws with one value "
                "(or one row) per image, size=n or (n, ...)")
        rows = [getattr(g, method)(*args, size=(1,) + shape[1:], **kwargs) for g in
                self.generators]
        return np.concatenate(rows) if n else np.empty(shape)

    def __getattr__(self, name):
        if name in PerImageRNG._METHODS:
            where = PerImageRNG._METHODS[name]

            def draw(*args, size=None, **kwargs):
                if len(args) > where:  # size given by position
                    size, args = args[where], args[:where] + args[where + 1:]
                return self._draw(name, size, args, kwargs)
            return draw
        raise AttributeError(
            f"PerImageRNG: a transform called Generator.{name}, which per-image augmentation "
            f"does not provide (supported: {', '.join(PerImageRNG._METHODS)}, with size=n)")


class ShardedLoader(DataLoader):
    """This rank's share of each global batch, as float32 (B / N, C, H, W) and int64 labels.

    Parameters
    ----------
    dataset : as `cnnframe.data.DataLoader`
    batch_size : int
        The global batch: B images per step over all ranks; must be a multiple of
        `world_size`.
    rank, world_size : int
    shuffle, seed, transform, prefetch : as `cnnframe.data.DataLoader`

    Notes
    -----
    The last global batch of an epoch is dropped when it is incomplete (it could not be
    split evenly), at every world size.  ``len(loader)`` is the number of global batches
    per epoch.  The state (`state_dict`) is the global position, so a run can be resumed at
    another world size from the same global step.
    """

    def __init__(self, dataset, batch_size, rank=0, world_size=1, shuffle=True, seed=0,
                 transform=None, prefetch=True):
        for name, v, low in (("rank", rank, 0), ("world_size", world_size, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"ShardedLoader: {name} must be an int >= {low}, got {v!r}")
        if rank >= world_size:
            raise ValueError(f"ShardedLoader: rank {rank} is not below world_size {world_size}")
        super().__init__(dataset, batch_size, shuffle=shuffle, seed=seed, drop_last=True,
                         transform=transform, prefetch=prefetch)
        self.local_batch_size = check_global_batch(self.batch_size, int(world_size))
        self.rank, self.world_size = int(rank), int(world_size)
        if len(self) < 1:
            raise ValueError(f"ShardedLoader: {self.num_samples} images make no complete global "
                             f"batch of {self.batch_size}")

    def image_rng(self, epoch, index):
        """The augmentation Generator of dataset image `index` in `epoch`."""
        return np.random.default_rng([self.seed, 2, int(epoch), int(index)])

    def batch_indices(self, epoch, index, order=None):
        """Dataset indices of this rank's share of global batch `index` of `epoch`."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        order = self.order(epoch) if order is None else order
        start = index * self.batch_size + self.rank * self.local_batch_size
        return order[start:start + self.local_batch_size]

    def get_batch(self, epoch, index, order=None):
        """This rank's share of global batch `index` of `epoch`: (x float32, y)."""
        idx = self.batch_indices(epoch, index, order)
        x, y = self.images[idx], self.labels[idx]
        if self.transform is not None:
            rng = PerImageRNG([self.image_rng(epoch, i) for i in idx])
            if isinstance(self.transform, Transform):
                x = self.transform(x, rng, inplace=True)
            else:
                x = self.transform(x, rng)
        if x.dtype != np.float32:
            x = self._to_float(x)
        return np.ascontiguousarray(x), y

    def state_dict(self):
        state = super().state_dict()
        state["world_size"] = self.world_size
        return state

    def load_state_dict(self, state):
        """Resume at the global position of `state` (the world size may differ)."""
        super().load_state_dict({**state, "world_size": self.world_size})

    def __repr__(self):
        return (f"ShardedLoader(n={self.num_samples}, batch_size={self.batch_size} global, "
                f"{self.local_batch_size} on rank {self.rank} of {self.world_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, transform={self.transform!r})")
