"""`DistributedTrainer`: `cnnframe.train.Trainer` data-parallel over the ranks of an MPI job.

Every rank holds the whole model and trains on its shard of each global batch; gradients are
averaged in buckets while backward runs (`cnnframe.distributed.buckets`), so every rank takes
the same optimizer step and the weights stay identical.  Rank 0 alone prints and writes the
run folder; the others take part in every collective step at the same points.
"""
import inspect
import math
import zlib

import numpy as np

from cnnframe.data.loader import DataLoader
from cnnframe.distributed.buckets import DEFAULT_BUCKET_BYTES, GradientReducer
from cnnframe.distributed.comm import get_communicator
from cnnframe.distributed.failure import DistributedError
from cnnframe.distributed.sampling import shard_range
from cnnframe.distributed.sync_batch_norm import convert_sync_batch_norm
from cnnframe.train.metrics import MetricTracker, confusion_matrix, top_k_correct
from cnnframe.train.trainer import Trainer, _stochastic_rngs

__all__ = ["DistributedTrainer", "default_threads", "fingerprint"]


def default_threads(comm):
    """Kernel threads per rank: this machine's cores / the ranks on this machine (>= 1)."""
    from cnnframe._threads import _cpu_count
    return max(1, _cpu_count() // max(comm.local_size, 1))


def _crc(arr):
    arr = np.ascontiguousarray(arr)
    return zlib.crc32(arr.view(np.uint8).reshape(-1)) if arr.size else 0


def _plain(value):
    """A JSON-like copy of optimizer hyperparameters (arrays dropped) for comparing ranks."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not isinstance(v, np.ndarray)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def fingerprint(model, loader, extra=None):
    """What must be equal on every rank before training starts.

    Returns
    -------
    dict
        "model" (parameter names and shapes), "data" (number of images, CRC-32 of the
        images and labels), "loader" (global batch size, seed, shuffling), and "extra"
        (e.g. the training config) -- plain values.
    """
    out = {"model": [(k, tuple(v.shape), str(v.dtype)) for k, v in model.params.items()],
           "extra": extra}
    if loader is not None and hasattr(loader, "images"):
        out["data"] = {"images": int(loader.images.shape[0]),
                       "image_shape": tuple(loader.images.shape[1:]),
                       "crc32_images": _crc(loader.images), "crc32_labels": _crc(loader.labels)}
        out["loader"] = {"batch_size": loader.batch_size, "seed": loader.seed,
                         "shuffle": loader.shuffle}
    return out


class _RootWritesCheckpoints:
    """The checkpoint folder seen from ranks > 0: rank 0 writes it, they write nothing."""

    folder = None

    def save(self, state, epoch, step, tag=None):
        return "(written by rank 0)"

    def latest(self):
        return None


def _silent(*args, **kwargs):
    return None


class DistributedTrainer(Trainer):
    """A `Trainer` whose steps are data-parallel over the ranks of `comm`.

    Give every rank the same model, optimizer, schedule and config, a
    `cnnframe.distributed.ShardedLoader` for training and the whole evaluation loader
    (evaluation is sharded here and reduced).  Parameters beyond `Trainer`'s:

    Parameters
    ----------
    comm : cnnframe.distributed.comm.Communicator, optional
        Default: MPI's COMM_WORLD (`get_communicator`); a process started without mpiexec
        is a world of one.
    sync_batch_norm : bool
        Batch norm with the statistics of the global batch (`convert_sync_batch_norm`);
        otherwise each rank normalises with its own batch's statistics (as PyTorch DDP),
        and the running statistics are averaged over the ranks after every step.
    bucket_bytes : int
        Gradient bucket size (float32 bytes).
    threads : int, None or False
        Kernel threads of this rank; None: cores / ranks on this machine
        (`default_threads`); False: leave the current setting.

    Notes
    -----
    Only rank 0 prints, shows progress and writes ``out_dir`` (checkpoints, metrics.csv,
    model.cnnf, curves.png); `out_dir` is ignored on the other ranks.  Checkpoints hold every
    rank's random-layer (dropout) streams, so resuming at the same world size continues
    exactly; at another world size it continues from the same global step (with a note).
    """

    def __init__(self, model, loss, optimizer, schedule=None, metrics=("accuracy",), *,
                 comm=None, sync_batch_norm=False, bucket_bytes=DEFAULT_BUCKET_BYTES,
                 threads=None, out_dir=None, progress=True, log=print, **kwargs):
        self.comm = get_communicator() if comm is None else comm
        root = self.comm.rank == 0
        super().__init__(model, loss, optimizer, schedule, metrics,
                         out_dir=out_dir if root else None, progress=progress and root,
                         log=log if root else _silent, **kwargs)
        if not root and out_dir is not None:
            self.checkpoints = _RootWritesCheckpoints()  # saves at the same points as rank 0
        if threads is None:
            threads = default_threads(self.comm)
        if threads is not False:
            import cnnframe
            cnnframe.set_num_threads(int(threads))
        self.sync_batch_norm = bool(sync_batch_norm)
        synced = convert_sync_batch_norm(model, self.comm) if self.sync_batch_norm else []
        per_rank_stats = [name for name, layer in model.nodes.items()
                          if layer.buffers and name not in synced]
        self.reducer = GradientReducer(model, self.comm, bucket_bytes,
                                       buffer_nodes=per_rank_stats)
        try:
            self._has_layer_done = "layer_done" in inspect.signature(model.backward).parameters
        except (TypeError, ValueError):  # pragma: no cover
            self._has_layer_done = False
        self._pending_interrupt = False
        self._interrupt = None
        self._started = False

    # ------------------------------------------------------------------ start-up

    def _start(self, train_loader, val_loader):
        """Check that the ranks agree, then give every rank rank 0's weights and RNGs."""
        comm = self.comm
        mine = fingerprint(self.model, train_loader, self.extra_state.get("config"))
        mine["optimizer"] = (type(self.optimizer).__name__,
                             _plain(self.optimizer.state_dict()))
        mine["world"] = {"sync_batch_norm": self.sync_batch_norm,
                         "bucket_bytes": self.reducer.bucket_bytes,
                         "metrics": self.metric_names}
        everyone = comm.allgather(mine, "the start-up consistency check")
        problems = []
        for rank, theirs in enumerate(everyone):
            for key in everyone[0]:
                if theirs.get(key) != everyone[0][key]:
                    problems.append(f"rank {rank} differs from rank 0 in its {key}")
        if problems:
            raise DistributedError(
                "the ranks of this job disagree, so they would not train one model: "
                + "; ".join(problems) + ". Give every rank the same config, cnnframe version "
                "and data (same files, same options).")
        state = comm.bcast(self._weights_and_rngs() if comm.rank == 0 else None,
                           "the initial weights")
        if comm.rank != 0:
            self._load_weights_and_rngs(state)
        self._decorrelate_rngs(None)
        self._started = True

    def _weights_and_rngs(self):
        return {"model": self.model.state_dict(),
                "layers": {n: r.bit_generator.state
                           for n, r in _stochastic_rngs(self.model).items()}}

    def _load_weights_and_rngs(self, state):
        self.model.load_state_dict(state["model"])
        for name, rng in _stochastic_rngs(self.model).items():
            rng.bit_generator.state = state["layers"][name]

    def _decorrelate_rngs(self, saved):
        """Give each rank its own dropout stream: rank r's is rank 0's jumped r times, or its
        own saved one (`saved`: list of per-rank states from a checkpoint)."""
        rank = self.comm.rank
        for name, rng in _stochastic_rngs(self.model).items():
            if saved is not None and rank < len(saved):
                rng.bit_generator.state = saved[rank][name]
            elif rank:
                rng.bit_generator.state = rng.bit_generator.jumped(rank).state

    # ------------------------------------------------------------------ training

    def fit(self, train_loader, val_loader=None, epochs=1, resume=False, max_steps=None):
        """As `Trainer.fit`, on every rank of the job (see the class docstring)."""
        size = getattr(train_loader, "world_size", None)
        if size is not None and size != self.comm.size:
            raise ValueError(f"DistributedTrainer.fit: train_loader is sharded for {size} "
                             f"ranks, this job has {self.comm.size}")
        if size is None and self.comm.size > 1:
            raise ValueError("DistributedTrainer.fit: train_loader must be a "
                             "cnnframe.distributed.ShardedLoader (each rank reads its shard of "
                             f"every global batch), got {type(train_loader).__name__}")
        if not self._started:
            self._start(train_loader, val_loader)
        return super().fit(train_loader, val_loader, epochs=epochs, resume=resume,
                           max_steps=max_steps)

    def _train_epoch(self, train_loader, val_loader, epochs, steps_per_epoch, interrupt,
                     max_steps=None):
        self._interrupt = interrupt  # Ctrl-C is agreed on by all ranks, see train_step
        return super()._train_epoch(train_loader, val_loader, epochs, steps_per_epoch,
                                    interrupt, max_steps)

    def train_step(self, x, y, tracker=None):
        """One data-parallel step on this rank's shard (x, y); returns (global loss, logits).

        The loss and metric counts of the global batch are summed over the ranks while
        backward runs; when the global loss is not finite no rank updates anything and
        (None, loss) is returned, as `Trainer.train_step` does.
        """
        comm, model = self.comm, self.model
        logits = model.forward(x, training=True)
        loss = self.loss.forward(logits, y)
        # [loss sum, images, Ctrl-C requests, correct counts per metric]
        names = tracker.names if tracker is not None else []
        stats = np.zeros(3 + len(names))
        n = len(y)
        stats[0], stats[1] = float(loss) * n, n
        interrupt = self._interrupt
        stats[2] = float(self._pending_interrupt or (interrupt is not None
                                                     and interrupt.requested))
        if names and math.isfinite(loss):
            pred = logits.argmax(axis=1)
            for i, k in enumerate(tracker.ks):
                stats[3 + i] = (np.count_nonzero(pred == y) if k == 1
                                else top_k_correct(logits, y, k))
        if interrupt is not None:
            interrupt.requested = False
        request = comm.iallreduce_sum(stats)
        self.reducer.start()
        kw = dict(self._backward_kw())
        if self._has_layer_done:
            kw["layer_done"] = self.reducer.layer_done
        model.backward(self.loss.backward(), **kw)
        self.reducer.finish()
        comm.wait([request], "the loss and metric sums")
        if interrupt is not None:
            late = interrupt.requested  # a Ctrl-C after the sums were sent: the next step's
            interrupt.requested = bool(stats[2])
            self._pending_interrupt = late and not stats[2]
        total = stats[0] / stats[1]
        if not math.isfinite(total):
            return None, total
        if tracker is not None:
            tracker.loss_sum += stats[0]
            tracker.seen += int(stats[1])
            for i in range(len(names)):
                tracker.correct[i] += int(stats[3 + i])
        self._optimizer_step()  # hooks, (clipping and) optimizer step, EMA, schedule
        return total, logits

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self, train_loader=None, val_loader=None):
        """`Trainer.state_dict` plus every rank's dropout streams (a collective call), after
        checking that the weights are still identical on every rank."""
        state = super().state_dict(train_loader, val_loader)
        params = self.model.params
        crc = zlib.crc32(b"".join(_crc(v).to_bytes(4, "little") for v in params.values()))
        layer_rngs = {n: r.bit_generator.state for n, r in _stochastic_rngs(self.model).items()}
        gathered = self.comm.allgather((crc, layer_rngs), "the checkpoint")
        bad = [r for r, (c, _) in enumerate(gathered) if c != gathered[0][0]]
        if bad:
            raise DistributedError(f"the weights of rank(s) {bad} differ from rank 0's at step "
                                   f"{self.step}; the ranks have diverged")
        state["distributed"] = {"world_size": self.comm.size,
                                "sync_batch_norm": self.sync_batch_norm,
                                "layer_rngs": [g[1] for g in gathered]}
        return state

    def resume(self, checkpoint=True, train_loader=None, val_loader=None):
        """Rank 0 reads the checkpoint and sends it to every rank; returns its path (or None).

        At the world size it was written with the run continues exactly; at another one
        from the same global step, with a note.
        """
        comm = self.comm
        found = None
        if comm.rank == 0:
            try:
                found = self._read_checkpoint(checkpoint)
            except Exception as exc:  # every rank raises it, instead of the others waiting
                found = exc
        found = comm.bcast(found, "the checkpoint being resumed")
        if isinstance(found, Exception):
            if comm.rank == 0:
                raise found
            raise DistributedError(f"rank 0 could not read the checkpoint: {found}")
        if found is None:
            return None
        path, state = found
        self.load_state_dict(state, train_loader, val_loader)
        info = state.get("distributed") or {}
        saved_size = int(info.get("world_size", 1))
        if saved_size == comm.size:
            self._decorrelate_rngs(info.get("layer_rngs"))
        else:
            rngs = info.get("layer_rngs")
            self._decorrelate_rngs(rngs[:1] if rngs else None)
            if comm.rank != 0:  # rank 0's saved stream, jumped: a fresh stream per rank
                for rng in _stochastic_rngs(self.model).values():
                    rng.bit_generator.state = rng.bit_generator.jumped(comm.rank).state
            self.log(f"note: {path} was written by {saved_size} rank(s), this job has "
                     f"{comm.size}: continuing from the same global step {self.step} with "
                     "the same global batches, but not bit-identically (per-rank batch-norm "
                     "statistics, dropout streams and the reduction order depend on the "
                     "world size)")
        self.last_checkpoint = path
        self._saved_step = self.step
        return path

    def _read_checkpoint(self, checkpoint):
        from cnnframe.train.checkpoint import load_state
        import os
        if checkpoint is True:
            return None if self.checkpoints is None else self.checkpoints.latest()
        path = os.fspath(checkpoint)
        return path, load_state(path)

    def _on_interrupt(self, train_loader, val_loader):
        if self.comm.rank == 0:
            return super()._on_interrupt(train_loader, val_loader)
        # The others take part in the checkpoint's collective exactly when rank 0 saves one.
        if self._consistent and not (self._saved_step == self.step and self.last_checkpoint):
            self.save_checkpoint(train_loader, val_loader, tag="interrupt")

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, loader, confusion=False, tta=False):
        """Loss and metrics over `loader`, each rank evaluating a contiguous share of it.

        A `cnnframe.data.DataLoader` without shuffling is split between the ranks and
        the sums are added up; any other iterable is evaluated whole on every rank.

        Returns
        -------
        dict
            As `Trainer.evaluate`: "loss", each metric, optionally "confusion_matrix".
        """
        if self.comm.size == 1 or not (isinstance(loader, DataLoader) and not loader.shuffle):
            return super().evaluate(loader, confusion=confusion, tta=tta)
        lo, hi = shard_range(loader.num_samples, self.comm.rank, self.comm.size)
        shard = DataLoader((loader.images[lo:hi], loader.labels[lo:hi]), loader.batch_size,
                           shuffle=False, seed=loader.seed, transform=loader.transform,
                           prefetch=loader.prefetch)
        tracker = MetricTracker(self.metric_names)
        k = None
        cm = None
        for x, y in (shard if hi > lo else ()):
            logits = self.model.forward(x, training=False)
            if tta:
                logits = np.array(logits)
                logits += self.model.forward(np.ascontiguousarray(x[..., ::-1]),
                                             training=False)
                logits *= 0.5
            tracker.update(self.loss.forward(logits, y), logits, y)
            k = logits.shape[1]
            if confusion:
                part = confusion_matrix(logits.argmax(axis=1), y, k)
                cm = part if cm is None else cm + part
        classes = max(self.comm.allgather(k or 0, "evaluation"))
        sums = np.zeros(2 + len(self.metric_names) + (classes * classes if confusion else 0))
        sums[0], sums[1] = tracker.loss_sum, tracker.seen
        sums[2:2 + len(self.metric_names)] = tracker.correct
        if confusion and cm is not None:
            sums[2 + len(self.metric_names):] = cm.reshape(-1)
        self.comm.allreduce_sum(sums, "the evaluation sums")
        seen = sums[1]
        out = {"loss": sums[0] / seen if seen else float("nan")}
        for i, name in enumerate(self.metric_names):
            out[name] = sums[2 + i] / seen if seen else float("nan")
        if confusion:
            out["confusion_matrix"] = np.rint(sums[2 + len(self.metric_names):]).astype(
                np.int64).reshape(classes, classes)
        return out
