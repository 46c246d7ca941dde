"""Data-parallel training on several processes and machines, over MPI (mpi4py).

Launch one process (rank) per worker with the MPI launcher::

    mpiexec -n 4 cnnframe train CONFIG --out runs/NAME --distributed

or, from Python, give each rank a `ShardedLoader` and a `DistributedTrainer`.  Semantics
(docs/DISTRIBUTED.md): the config's batch_size is the global batch, split evenly over the
ranks; shuffling and augmentation depend on the seed, the epoch and the image only, so any
world size sees the same global batches; gradients are averaged in float32 buckets with
non-blocking Allreduce started during backward; rank 0 writes the run folder; one rank's
failure ends the job.

mpi4py is imported only when a communicator is created, so this package imports without it.
"""
from cnnframe.distributed.buckets import DEFAULT_BUCKET_BYTES, GradientReducer
from cnnframe.distributed.comm import (Communicator, LocalCommunicator, MPICommunicator,
                                       MPIUnavailableError, get_communicator, import_mpi)
from cnnframe.distributed.failure import DistributedError, Watchdog, abort_on_error
from cnnframe.distributed.sampling import (PerImageRNG, ShardedLoader, check_global_batch,
                                           shard_range)
from cnnframe.distributed.sync_batch_norm import (SyncBatchNorm1d, SyncBatchNorm2d,
                                                  convert_sync_batch_norm)
from cnnframe.distributed.trainer import DistributedTrainer, default_threads, fingerprint

__all__ = ["Communicator", "LocalCommunicator", "MPICommunicator", "MPIUnavailableError",
           "get_communicator", "import_mpi", "GradientReducer", "DEFAULT_BUCKET_BYTES",
           "DistributedError", "Watchdog", "abort_on_error", "ShardedLoader", "PerImageRNG",
           "check_global_batch", "shard_range", "SyncBatchNorm1d", "SyncBatchNorm2d",
           "convert_sync_batch_norm", "DistributedTrainer", "default_threads", "fingerprint"]
