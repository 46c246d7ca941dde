"""DataLoader: seeded, resumable batching with augmentation prepared in a background thread."""
import queue
import threading

import numpy as np

from cnnframe.data.augment import BatchContext, BatchPipeline
from cnnframe.data.transforms import ToFloat, Transform, build_transforms

_END = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


class DataLoader:
    """Iterate over a dataset in float32 (N, C, H, W) batches with int64 labels.

    The order and the augmentation are pure functions of (seed, epoch, batch index): epoch e
    visits the permutation drawn from ``default_rng([seed, 0, e])`` and batch b of it is augmented
    with ``default_rng([seed, 1, e, b])``. Resuming from `state_dict()` therefore reproduces
    exactly the batches an uninterrupted run would have produced.

    Each ``iter(loader)`` runs from the current position to the end of the current epoch; the
    position advances as batches are handed out (after the last batch of epoch e it is epoch
    e + 1, batch 0), so breaking out of a loop and iterating again continues where it stopped.

    Parameters
    ----------
    dataset : object with `.images` (N, C, H, W) and `.labels` (N,), or a tuple (images, labels)
    batch_size : int
    shuffle : bool
        A new permutation every epoch; otherwise dataset order.
    seed : int
    drop_last : bool
        Drop the last batch when it is smaller than batch_size.
    transform : callable (batch, rng) -> batch, or a list of transform configs, optional
        Applied to the uint8 batch (see cnnframe.data.transforms). A result that is still an
        integer array is scaled to float32 in [0, 1]; with no transform, batches are just scaled.
        Transforms needing the epoch and the images' dataset indices (alternating_flip) get
        them; batch mixers (mixup, cutmix; see cnnframe.data.augment) run last, on the float32
        batch, and make the labels (N, K) float32 class probabilities.
    prefetch : bool
        Prepare the next batch in a background thread while the current one is in use.

    Yields
    ------
    x : ndarray, float32 (B, C, H, W), C-contiguous
    y : ndarray, int64 (B,); with a batch mixer, float32 (B, K) class probabilities, K the
        number of the dataset's classes (``len(dataset.classes)``, else the largest label + 1)
    """

    def __init__(self, dataset, batch_size, shuffle=True, seed=0, drop_last=False,
                 transform=None, prefetch=True):
        if isinstance(dataset, tuple) and len(dataset) == 2:
            images, labels = dataset
        elif hasattr(dataset, "images") and hasattr(dataset, "labels"):
            images, labels = dataset.images, dataset.labels
        else:
            raise TypeError("dataset must have .images and .labels (or be a tuple (images, "
                            f"labels)), got {type(dataset).__name__}")
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim < 2 or labels.ndim < 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"dataset images {images.shape} and labels {labels.shape} must have "
                             "the same first dimension")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(transform, (list, dict)):
            transform = build_transforms(transform)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable (batch, rng) -> batch or a list of "
                            f"transform configs, got {type(transform).__name__}")
        self.dataset, self.images = dataset, images
        self.labels = labels.astype(np.int64) if np.issubdtype(labels.dtype, np.integer) else labels
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.transform, self.prefetch = bool(drop_last), transform, bool(prefetch)
        self.epoch, self.position = 0, 0
        self._to_float = ToFloat()
        self._pipeline = (BatchPipeline(transform, self._num_classes())
                          if BatchPipeline.needed(transform) else None)

    def _num_classes(self):
        """The dataset's class count: its `classes`, else the largest integer label + 1."""
        classes = getattr(self.dataset, "classes", None)
        if classes is not None:
            return len(classes)
        if np.issubdtype(self.labels.dtype, np.integer) and self.labels.size:
            return int(self.labels.max()) + 1
        return None

    @property
    def num_samples(self):
        return self.images.shape[0]

    def __len__(self):
        """Batches per epoch."""
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch):
        """The sample order of `epoch` (a permutation when shuffling)."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, 0, int(epoch)]).permutation(self.num_samples)

    def batch_rng(self, epoch, index):
        """The augmentation Generator of batch `index` of `epoch`."""
        return np.random.default_rng([self.seed, 1, int(epoch), int(index)])

    def get_batch(self, epoch, index, order=None):
        """Batch `index` of `epoch`, as iteration would produce it: (x float32, y)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        order = self.order(epoch) if order is None else order
        idx = order[index * self.batch_size:(index + 1) * self.batch_size]
        x, y = self.images[idx], self.labels[idx]
        if self._pipeline is not None:  # x is a fresh gather: the pipeline may overwrite it
            return self._pipeline(x, y, self.batch_rng(epoch, index),
                                  BatchContext(self.seed, int(epoch), idx))
        if isinstance(self.transform, Transform):  # x is a fresh gather: let it be overwritten
            x = self.transform(x, self.batch_rng(epoch, index), inplace=True)
        elif self.transform is not None:
            x = self.transform(x, self.batch_rng(epoch, index))
        if x.dtype != np.float32:
            x = self._to_float(x)
        return np.ascontiguousarray(x), y

    def set_epoch(self, epoch):
        """Jump to the start of `epoch`."""
        self.epoch, self.position = int(epoch), 0

    def state_dict(self):
        """Position and settings as plain ints: {"epoch", "position", "seed", ...}."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "batch_size": self.batch_size, "num_samples": self.num_samples,
                "shuffle": int(self.shuffle), "drop_last": int(self.drop_last)}

    def load_state_dict(self, state):
        """Resume at the position saved by `state_dict()` (values may be numpy scalars).

        Raises
        ------
        ValueError
            A key is missing, or the saved seed / batch_size / num_samples / shuffle / drop_last
            differ from this loader's (the batches would not be the same).
        """
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        if missing:
            raise ValueError(f"loader state lacks key(s) {missing}")
        for key in ("seed", "batch_size", "num_samples", "shuffle", "drop_last"):
            if int(state[key]) != mine[key]:
                raise ValueError(f"loader state has {key}={int(state[key])} but this loader has "
                                 f"{key}={mine[key]}; resuming would give different batches")
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= max(len(self) - 1, 0):
            raise ValueError(f"loader state epoch={epoch}, position={position} is out of range "
                             f"for {len(self)} batches per epoch")
        self.epoch, self.position = epoch, position

    def __iter__(self):
        epoch, start, count = self.epoch, self.position, len(self)
        order = self.order(epoch)
        batches = (self._prefetched(epoch, start, count, order) if self.prefetch
                   else (self.get_batch(epoch, b, order) for b in range(start, count)))
        if start >= count:  # an empty epoch (dataset smaller than one dropped batch)
            self.epoch, self.position = epoch + 1, 0
        try:
            for b, batch in enumerate(batches, start):
                if b + 1 == count:
                    self.epoch, self.position = epoch + 1, 0
                else:
                    self.position = b + 1
                yield batch
        finally:
            batches.close()  # stops the prefetch thread when the loop is left early

    def _prefetched(self, epoch, start, count, order):
        q, stop = queue.Queue(maxsize=2), threading.Event()

        def put(item):
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    pass
            return False

        def work():
            try:
                for b in range(start, count):
                    if not put(self.get_batch(epoch, b, order)):
                        return
                put(_END)
            except BaseException as exc:  # handed to the consumer, raised there
                put(_Failure(exc))

        thread = threading.Thread(target=work, name="cnnframe-data-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            thread.join()

    def __repr__(self):
        return (f"DataLoader(n={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
                f"transform={self.transform!r})")
