"""`cnnframe train CONFIG --distributed`: the parts of the train command that differ per rank.

Rank 0 alone reads the run folder (resume), prints and writes; it sends what it read to the
other ranks, which may run on machines without the folder.  Any error on any rank aborts
the whole job (`report_and_abort`); a Ctrl-C or a non-finite loss, which all ranks agree on,
ends every rank normally.
"""
import sys

from cnnframe.distributed.comm import get_communicator
from cnnframe.distributed.failure import abort_on_error, report_and_abort
from cnnframe.distributed.sampling import ShardedLoader
from cnnframe.distributed.trainer import DistributedTrainer, default_threads

__all__ = ["DistributedRun", "run_distributed"]


class DistributedRun:
    """The communicator of a `cnnframe train --distributed` process, and rank-0 helpers."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size

    @property
    def is_root(self):
        return self.rank == 0

    def print(self, *args, **kwargs):
        """print on rank 0 only."""
        if self.is_root:
            print(*args, **kwargs)

    def from_root(self, compute, what):
        """`compute()` on rank 0, its value (or its exception) on every rank."""
        value = None
        if self.is_root:
            try:
                value = ("ok", compute())
            except Exception as exc:  # raised on every rank, so that none waits for rank 0
                value = ("error", exc)
        kind, value = self.comm.bcast(value, what)
        if kind == "error":
            raise value
        return value

    def default_threads(self):
        return default_threads(self.comm)

    def shard(self, loader):
        """The training DataLoader as this rank's `ShardedLoader` (same data, seed, transform).

        Raises
        ------
        ValueError
            The global batch does not split evenly over the ranks.
        """
        return ShardedLoader(loader.dataset, loader.batch_size, self.rank, self.size,
                             shuffle=loader.shuffle, seed=loader.seed,
                             transform=loader.transform, prefetch=loader.prefetch)

    def trainer(self, *args, sync_batch_norm=False, **kwargs):
        return DistributedTrainer(*args, comm=self.comm, sync_batch_norm=sync_batch_norm,
                                  threads=False, **kwargs)


def run_distributed(run, args):
    """Call ``run(args, DistributedRun)`` on this rank; any exception aborts every rank."""
    comm = get_communicator(True)  # MPIUnavailableError (an ImportError) without MPI
    abort_on_error(comm)
    try:
        return run(args, DistributedRun(comm))
    except BaseException as exc:
        if comm.size > 1:
            sys.stderr.write(f"cnnframe train: error on rank {comm.rank}: {exc}\n")
            report_and_abort(comm, exc)
        raise
    finally:
        comm.close()
