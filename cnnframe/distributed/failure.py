"""Failure handling: one rank's failure ends the whole job with a clear error, never a hang.

Three ways a data-parallel job can fail, and what ends it:

- A rank raises (a bug, a bad file, out of memory): `abort_on_error` (an excepthook, and
  the CLI's own handler) prints the traceback with the rank and calls ``MPI_Abort``, which
  the launcher turns into the end of every rank.  Without it the other ranks would wait in
  their next Allreduce forever, and the failed rank itself would hang in ``MPI_Finalize``.
- A rank dies (killed, segfault): the launcher (mpiexec, srun) sees the process end and
  kills the others (MPICH's hydra does so at once; use ``srun --kill-on-bad-exit=1``).
- A rank stops answering (stopped, deadlocked, its machine gone): every wait for the other
  ranks is guarded by a `Watchdog`; after ``timeout`` seconds it aborts the job, naming
  the operation it was waiting for.
"""
import contextlib
import os
import sys
import threading
import time
import traceback

__all__ = ["Watchdog", "abort_on_error", "DistributedError"]


class DistributedError(RuntimeError):
    """Ranks disagree (config, data, model) or a collective operation failed."""


class Watchdog:
    """A background thread that aborts the job when a guarded wait takes too long.

    Parameters
    ----------
    rank : int
        Named in the message.
    abort : callable, optional
        Ends the job (MPI_Abort); default: ``os._exit(3)`` of this process, which the
        launcher turns into the end of the job.
    """

    def __init__(self, rank, abort=None):
        self.rank = rank
        self._abort = abort
        self._what = None
        self._deadline = None
        self._timeout = None
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()

    @contextlib.contextmanager
    def guard(self, what, timeout):
        """Abort the job if the body runs longer than `timeout` seconds."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cnnframe-dist-watchdog",
                                            daemon=True)
            self._thread.start()
        with self._lock:
            self._what, self._timeout = what, timeout
            self._deadline = time.monotonic() + timeout
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def _run(self):
        while not self._stop.wait(0.5):
            with self._lock:
                late = self._deadline is not None and time.monotonic() > self._deadline
                what, timeout = self._what, self._timeout
            if late:
                sys.stderr.write(
                    f"\ncnnframe distributed: rank {self.rank} waited {timeout:.0f} s for the "
                    f"other ranks in {what}; one of them has stopped or hangs. Aborting the "
                    "job (set CNNFRAME_DIST_TIMEOUT for a longer wait).\n")
                sys.stderr.flush()
                if self._abort is not None:
                    self._abort()
                os._exit(3)

    def stop(self):
        self._stop.set()


def abort_on_error(comm):
    """Make an uncaught exception on this rank print its traceback and abort the whole job.

    Returns the previous ``sys.excepthook`` (restore it to undo).
    """
    previous = sys.excepthook

    def hook(kind, value, tb):
        if comm.size > 1 and not issubclass(kind, (SystemExit,)):
            report_and_abort(comm, value, tb)
        previous(kind, value, tb)

    sys.excepthook = hook
    return previous


def report_and_abort(comm, exc, tb=None, code=1):
    """Print `exc` with this rank's number and end every rank of the job."""
    lines = traceback.format_exception(type(exc), exc, tb if tb is not None
                                       else exc.__traceback__)
    sys.stderr.write(f"\ncnnframe distributed: rank {comm.rank} of {comm.size} failed; "
                     "aborting all ranks.\n" + "".join(lines))
    sys.stderr.flush()
    comm.abort(code)
