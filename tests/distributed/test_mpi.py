"""Data-parallel training under ``mpiexec -n 2``: equivalence with one process, exact resume,
rank-0-only writes, mismatch detection and failures that end the job.

Each test launches ``mpiexec -n 2 python mpi_checks.py ...`` (or the CLI) in a subprocess with
a timeout and compares what rank 0 saved with a single-process run computed here.  Without
mpi4py or mpiexec these tests fail when $CI or $CNNFRAME_REQUIRE_MPI is set (CI installs
mpi4py and MPICH: a missing MPI must not pass silently there), and are skipped, with the
reason shown, elsewhere.
"""
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import tiny_runs  # noqa: E402

from cnnframe.distributed import LocalCommunicator  # noqa: E402
from cnnframe.distributed.comm import mpiexec_path  # noqa: E402

LAUNCH_TIMEOUT = 300


def _require_mpi():
    missing = []
    if importlib.util.find_spec("mpi4py") is None:
        missing.append("mpi4py")
    if mpiexec_path() is None:
        missing.append("mpiexec")
    if missing:
        msg = (f"the MPI tests need {' and '.join(missing)}: pip install 'cnnframe[mpi]' "
               "(mpi4py + mpich)")
        if os.environ.get("CI") or os.environ.get("CNNFRAME_REQUIRE_MPI"):
            pytest.fail(msg)
        pytest.skip(msg)


def launch(args, timeout=LAUNCH_TIMEOUT, env=None, ranks=2):
    """Run ``mpiexec -n ranks python ARGS``; returns (CompletedProcess, seconds)."""
    _require_mpi()
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    cmd = [mpiexec_path(), "-n", str(ranks), sys.executable, *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=str(ROOT))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout} s (a hang); output:\n"
                    f"{exc.stdout}\n{exc.stderr}")
    return proc, time.perf_counter() - t0


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """One 2-rank job running the equivalence, sync BN, resume and mismatch checks."""
    out = tmp_path_factory.mktemp("mpi")
    proc, _ = launch([str(HERE / "mpi_checks.py"), "equivalence,sync_bn,resume,mismatch",
                      str(out)], env={"CNNFRAME_DIST_TIMEOUT": "60"})
    assert proc.returncode == 0, f"2-rank checks failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def assert_close(got, ref, rtol, atol):
    for k, v in ref.items():
        np.testing.assert_allclose(got[k], v, rtol=rtol, atol=atol, err_msg=k)


def test_two_ranks_match_one_process_with_crop_and_flip(checks):
    # 300 steps, global batch 32; the 2-rank job also checked that a repeat is bit-identical
    got = np.load(checks / "equivalence.npz")
    trainer, history = tiny_runs.train(LocalCommunicator(), steps=300, lr=0.01)  # as mpi_checks
    assert_close(got, tiny_runs.weights(trainer.model), rtol=1e-4, atol=2e-5)
    assert float(got["val_accuracy"]) == pytest.approx(history.rows[-1]["val_accuracy"],
                                                       abs=0.006)


def test_sync_batch_norm_two_ranks_match_one_process(checks):
    got = np.load(checks / "sync_bn.npz")
    trainer, _ = tiny_runs.train(LocalCommunicator(), steps=200, batch_norm=True,
                                 sync_batch_norm=True, lr=0.02)
    assert_close(got, tiny_runs.weights(trainer.model), rtol=1e-3, atol=5e-5)


def test_per_rank_batch_norm_differs_from_global_statistics(checks):
    # the default (per-rank statistics, as DDP) is not the one-process run: the check above
    # therefore tests sync_batch_norm, not an accident
    got = np.load(checks / "local_bn.npz")
    trainer, _ = tiny_runs.train(LocalCommunicator(), steps=50, batch_norm=True)
    ref = tiny_runs.weights(trainer.model)
    assert max(np.abs(got[k] - ref[k]).max() for k in ref) > 1e-3


def test_resume_at_same_world_size_is_exact_and_rank0_writes(checks):
    # mpi_checks asserted bit-identical weights; here: the folder rank 0 wrote
    run = checks / "resume_run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "metrics.csv", "model.cnnf"]
    assert (checks / "resume_files.txt").read_text().split() == ["checkpoints", "metrics.csv",
                                                                  "model.cnnf"]


def test_resume_at_another_world_size_continues_from_the_same_global_step(checks):
    # a 2-rank run stopped after 70 of 150 steps, resumed here by one process
    notes = []
    trainer, _ = tiny_runs.train(LocalCommunicator(), steps=150, lr=0.01, resume=True,
                                 out_dir=checks / "resume_other", log=notes.append)
    note = next(n for n in notes if n.startswith("note:"))
    assert "written by 2 rank(s), this job has 1" in note and "global step 70" in note
    assert trainer.step == 150
    # no batch norm or dropout: the same global batches give the 2-rank run's weights
    assert_close(np.load(checks / "whole_150.npz"), tiny_runs.weights(trainer.model),
                 rtol=1e-4, atol=2e-5)


def test_data_mismatch_between_ranks_is_an_error_at_start(checks):
    assert "rank 1 differs from rank 0 in its data" in (checks / "mismatch.txt").read_text()


@pytest.mark.parametrize("failure, message", [
    ("raise", "rank 1 of 2 failed"),
    ("kill", "signal 9"),
    ("hang", "waited 5 s for the other ranks"),
])
def test_a_failing_rank_ends_the_job_within_30_s(tmp_path, failure, message):
    proc, seconds = launch([str(HERE / "mpi_checks.py"), failure, str(tmp_path)],
                           timeout=60, env={"CNNFRAME_DIST_TIMEOUT": "5"})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert message in output, output
    assert seconds < 30, f"the job took {seconds:.1f} s to end after rank 1's {failure}"


TINY_CONFIG = """
seed = 0
epochs = 2
batch_size = {batch}
sync_batch_norm = true
[model]
input_shape = [3, 16, 16]
layers = [
  {{type = "conv2d", in_channels = 3, out_channels = 4, kernel_size = 3, padding = 1}},
  {{type = "batch_norm2d", num_features = 4}},
  {{type = "relu"}},
  {{type = "global_avg_pool2d"}},
  {{type = "linear", in_features = 4, out_features = 8}},
]
[data]
dataset = "shapes"
augmentation = [{{type = "random_crop", padding = 2}}, {{type = "random_horizontal_flip"}}]
options = {{size = 16, train = {{n = 256}}, test = {{n = 64}}}}
[optimizer]
type = "sgd"
lr = 0.05
"""


def test_cli_distributed_trains_and_only_rank0_writes(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_CONFIG.format(batch=32))
    out = tmp_path / "run"
    proc, _ = launch(["-m", "cnnframe", "train", str(cfg), "--out", str(out), "--distributed",
                      "--no-progress"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("done: 2 epochs") == 1  # printed by rank 0 only
    assert "2 ranks x 16 images" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["checkpoints", "config.toml", "curves.png", "metrics.csv", "model.cnnf",
         "preprocess.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.toml"]


def test_cli_distributed_uneven_global_batch_is_a_clear_error(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_CONFIG.format(batch=33))
    proc, _ = launch(["-m", "cnnframe", "train", str(cfg), "--out", str(tmp_path / "run"),
                      "--distributed", "--no-progress"], timeout=60)
    assert proc.returncode != 0
    assert "batch_size 33 is the global batch and must split evenly over 2 ranks" in \
        proc.stderr
    assert not (tmp_path / "run").exists()
