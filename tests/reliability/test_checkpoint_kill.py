"""SIGKILL a real training subprocess during checkpoint writes; the newest checkpoint is
always complete, resume finds it, and temporary files of killed writes do not pile up
(the long run: kill_checkpoints.py --kills 200)."""
from cnnframe.train import load_state
from reliability.kill_checkpoints import check_folder, run


def test_sigkill_during_checkpoint_writes_never_corrupts_the_latest(tmp_path):
    lines = []
    res = run(tmp_path / "run", kills=4, seed=1, min_delay=0.1, max_delay=0.6,
              log=lines.append)
    assert res["kills"] == 4, lines
    assert res["last_step"] > 0, lines
    step, count, temps = check_folder(tmp_path / "run" / "checkpoints")
    assert step == int(res["final"]) and count >= 1
    # A kill mid-write leaves one temporary file; the next start removes it, so they never
    # pile up and the final run (which started after the last kill) left none.
    assert res["most_temp_files"] <= 1 and not temps
    assert all(load_state(p) for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.npz"))


def test_check_folder_detects_a_corrupt_named_checkpoint(tmp_path):
    import pytest
    from cnnframe.train import CheckpointError, save_state
    folder = tmp_path / "checkpoints"
    save_state(folder / "ckpt-e0001-s000000002.npz", {"trainer": {"step": 2}})
    assert check_folder(folder)[0] == 2
    (folder / "ckpt-e0001-s000000003.npz").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(CheckpointError):
        check_folder(folder)
