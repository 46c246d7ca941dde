"""Bad command-line flags: one `error:` line naming the flag, exit status 2, no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

from cnnframe.cli import main

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = str(REPO / "examples" / "configs" / "shapes_quickstart.toml")

# (argv, the flag the message must name, the bad value)
BAD_FLAGS = [
    (["--threads", "-2", "layers"], "--threads", "-2"),
    (["--threads", "0", "layers"], "--threads", "0"),
    (["train", QUICKSTART, "--threads", "0"], "--threads", "0"),
    (["train", QUICKSTART, "--epochs", "-1"], "--epochs", "-1"),
    (["train", QUICKSTART, "--epochs", "two"], "--epochs", "two"),
    (["train", QUICKSTART, "--batch-size", "0"], "--batch-size", "0"),
    (["train", QUICKSTART, "--max-steps", "0"], "--max-steps", "0"),
    (["evaluate", "runs/x", "--batch-size", "0"], "--batch-size", "0"),
    (["evaluate", "runs/x", "--threads", "-1"], "--threads", "-1"),
    (["evaluate", "runs/x", "--split", "val"], "--split", "val"),
    (["predict", "runs/x", "a.png", "--top", "0"], "--top", "0"),
    (["predict", "runs/x", "a.png", "--max-pixels", "-1"], "--max-pixels", "-1"),
    (["gradcheck", "relu", "--input-shape", "2x3x8x8"], "--input-shape", "2x3x8x8"),
    (["gradcheck", "relu", "--input-shape", "2,a"], "--input-shape", "2,a"),
    (["gradcheck", "relu", "--input-shape", "8"], "--input-shape", "8"),
    (["gradcheck", "relu", "--input-shape", "2,0,4"], "--input-shape", "2,0,4"),
    (["gradcheck", "relu", "--input-shape", "2,3", "--seeds", "0"], "--seeds", "0"),
    (["gradcheck", "relu", "--input-shape", "2,3", "--eps=-1e-6"], "--eps", "-1e-6"),
    (["gradcheck", "relu", "--input-shape", "2,3", "--atol", "nan"], "--atol", "nan"),
    (["gradcheck", "relu", "--input-shape", "2,3", "--max-elements", "0"], "--max-elements",
     "0"),
]


@pytest.mark.parametrize("argv, flag, value", BAD_FLAGS,
                         ids=[" ".join(a[0]) for a in BAD_FLAGS])
def test_a_bad_flag_is_one_error_line_with_exit_status_2(argv, flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert ": error: argument " + flag in err and repr(value) in err


def test_epochs_message_says_the_value_came_from_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", QUICKSTART, "--epochs", "-1"])
    err = capsys.readouterr().err
    assert "argument --epochs" in err and "in the config" not in err


@pytest.mark.parametrize("argv", [["--threads", "-2", "layers"],
                                  ["train", QUICKSTART, "--threads", "0"]])
def test_the_installed_command_prints_no_traceback(argv):
    proc = subprocess.run([sys.executable, "-m", "cnnframe", *argv], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "error: argument --threads: expected an integer >= 1" in proc.stderr


def test_good_values_still_parse():
    from cnnframe.cli import build_parser
    args = build_parser().parse_args(["--threads", "1", "gradcheck", "relu", "--input-shape",
                                      "2, 3,8,8", "--input-shape", "2,3", "--eps", "1e-5",
                                      "--atol", "0", "--seed", "0"])
    assert args.threads == 1 and args.input_shape == [(2, 3, 8, 8), (2, 3)]
    assert args.eps == 1e-5 and args.atol == 0.0 and args.seed == 0


def test_unknown_transform_key_suggests_the_close_one(tmp_path, capsys):
    text = Path(QUICKSTART).read_text().replace(
        'normalize = {', 'augmentation = [{type = "random_crop", pading = 4}]\nnormalize = {')
    cfg = tmp_path / "typo.toml"
    cfg.write_text(text)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "['pading'] for transform 'random_crop' ('pading': did you mean 'padding'?)" in err
    assert not (tmp_path / "run").exists()
