"""`cnnframe ... | head`: a reader that closes the output early ends the command quietly."""
import os
import subprocess
import sys

import pytest

from cnnframe.cli import BROKEN_PIPE_STATUS

COMMANDS = [["layers"], ["gradcheck", "relu", "--input-shape", "2,3"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=[a[0] for a in COMMANDS])
def test_a_closed_output_pipe_ends_the_command_quietly(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails
    try:
        proc = subprocess.run([sys.executable, "-m", "cnnframe", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.stderr == ""  # no traceback, no "error:" line, no "Exception ignored"
    assert proc.returncode == BROKEN_PIPE_STATUS == 128 + 13  # 13: SIGPIPE

