"""Checks run on every rank under ``mpiexec -n 2 python tests/distributed/mpi_checks.py
CHECK OUT_DIR``; driven by test_mpi.py, which compares the results with single-process runs.

Each check writes rank 0's results to OUT_DIR/CHECK.npz and exits 0; a failed check raises,
which aborts the job (non-zero exit).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cnnframe.distributed import DistributedError, MPICommunicator, abort_on_error  # noqa
import tiny_runs  # noqa: E402


EQUIVALENCE_LR = 0.01


def save(comm, out, name, arrays):
    if comm.rank == 0:
        np.savez(os.path.join(out, name + ".npz"), **arrays)


def same_on_all_ranks(comm, trainer):
    state = tiny_runs.weights(trainer.model)
    flat = np.concatenate([v.ravel() for v in state.values()]).astype(np.float64)
    everyone = comm.allgather(flat.tobytes())
    assert all(b == everyone[0] for b in everyone), "weights differ between ranks"
    return state


def check_equivalence(comm, out):
    """No BN, crop + flip: 300 steps of global batch 32 (16 per rank), lr 0.01.

    At lr 0.05 this tiny net enters a chaotic phase after ~220 steps in which the
    rounding-level difference of averaging two half-batch gradients (5e-7 until then) grows
    a thousandfold in 40 steps, for any kernel path; at lr 0.01 the runs stay within 2e-7.
    """
    trainer, history = tiny_runs.train(comm, steps=300, lr=EQUIVALENCE_LR)
    state = same_on_all_ranks(comm, trainer)
    state["val_accuracy"] = np.array(history.rows[-1]["val_accuracy"])
    state["loss"] = np.array(history.rows[-1]["loss"])
    save(comm, out, "equivalence", state)
    # A repeated run at the same world size is bit-identical.
    again, _ = tiny_runs.train(comm, steps=300, lr=EQUIVALENCE_LR)
    for k, v in tiny_runs.weights(again.model).items():
        assert np.array_equal(v, state[k]), f"repeated 2-rank run differs in {k}"


def check_sync_bn(comm, out):
    trainer, _ = tiny_runs.train(comm, steps=200, batch_norm=True, sync_batch_norm=True, lr=0.02)
    save(comm, out, "sync_bn", same_on_all_ranks(comm, trainer))
    trainer, _ = tiny_runs.train(comm, steps=50, batch_norm=True, sync_batch_norm=False)
    save(comm, out, "local_bn", same_on_all_ranks(comm, trainer))


def check_resume(comm, out):
    """Stop after 70 steps, resume to 150: bit-identical to 150 steps in one go."""
    run = os.path.join(out, "resume_run")
    tiny_runs.train(comm, steps=150, out_dir=run, max_steps=70, batch_norm=True)
    files = sorted(os.listdir(run))
    trainer, _ = tiny_runs.train(comm, steps=150, out_dir=run, resume=True, batch_norm=True)
    whole, _ = tiny_runs.train(comm, steps=150, batch_norm=True)
    a, b = tiny_runs.weights(trainer.model), tiny_runs.weights(whole.model)
    for k in a:
        assert np.array_equal(a[k], b[k]), f"resumed run differs from the uninterrupted one in {k}"
    if comm.rank == 0:
        with open(os.path.join(out, "resume_files.txt"), "w") as f:
            f.write("\n".join(files))
    # For resuming at another world size (test_mpi resumes this run in one process): a run
    # stopped after 70 steps, and the uninterrupted 150-step run at this world size.
    tiny_runs.train(comm, steps=150, out_dir=os.path.join(out, "resume_other"), max_steps=70,
                    lr=EQUIVALENCE_LR)
    whole, _ = tiny_runs.train(comm, steps=150, lr=EQUIVALENCE_LR)
    save(comm, out, "whole_150", same_on_all_ranks(comm, whole))


def check_mismatch(comm, out):
    """Rank 1 has other data: every rank must raise DistributedError at start."""
    from cnnframe.data.shapes import Shapes
    orig = tiny_runs.datasets
    if comm.rank == 1:
        tiny_runs.datasets = lambda: (Shapes(n=512, size=16, seed=2), orig()[1])
    try:
        tiny_runs.train(comm, steps=5)
    except DistributedError as exc:
        assert "rank 1 differs from rank 0 in its data" in str(exc), str(exc)
        if comm.rank == 0:
            with open(os.path.join(out, "mismatch.txt"), "w") as f:
                f.write(str(exc))
    else:
        raise AssertionError("a data mismatch between ranks went unnoticed")


def check_raise(comm, out):
    """Rank 1 raises in the middle of training: the job must end, not hang."""
    import cnnframe.distributed.trainer as dt
    step = dt.DistributedTrainer.train_step

    def failing(self, x, y, tracker=None):
        if comm.rank == 1 and self.step == 5:
            raise RuntimeError("injected failure on rank 1")
        return step(self, x, y, tracker)
    dt.DistributedTrainer.train_step = failing
    tiny_runs.train(comm, steps=100000, epochs=10 ** 4)


def check_kill(comm, out):
    """Rank 1 is killed (SIGKILL) in the middle of training."""
    import signal
    import cnnframe.distributed.trainer as dt
    step = dt.DistributedTrainer.train_step

    def dying(self, x, y, tracker=None):
        if comm.rank == 1 and self.step == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, x, y, tracker)
    dt.DistributedTrainer.train_step = dying
    tiny_runs.train(comm, steps=100000, epochs=10 ** 4)


def check_hang(comm, out):
    """Rank 1 stops answering (sleeps): rank 0's watchdog must abort the job."""
    import cnnframe.distributed.trainer as dt
    step = dt.DistributedTrainer.train_step

    def hanging(self, x, y, tracker=None):
        if comm.rank == 1 and self.step == 5:
            time.sleep(3600)
        return step(self, x, y, tracker)
    dt.DistributedTrainer.train_step = hanging
    tiny_runs.train(comm, steps=100000, epochs=10 ** 4)


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items()
          if name.startswith("check_")}

if __name__ == "__main__":
    names, out = sys.argv[1].split(","), sys.argv[2]
    comm = MPICommunicator()
    abort_on_error(comm)
    for name in names:
        t0 = time.perf_counter()
        CHECKS[name](comm, out)
        if comm.rank == 0:
            print(f"check {name}: ok ({time.perf_counter() - t0:.1f} s)", flush=True)
    comm.close()
