"""run_sanitizers.sh and `make sanitize` find the interpreter after the script's cd into its
scratch copy (issue 25: PYTHON=.venv/bin/python, a relative path, failed with "No such file").

The builds themselves take minutes (CI runs them: make sanitize-quick); here a stand-in
"python" records what the script asks of it, so only the script's own logic is tested.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "sanitizers" / "run_sanitizers.sh"

# Records its arguments; fails the pytest run when FAKE_PYTEST_STATUS says so.
FAKE_PYTHON = """#!/bin/sh
echo "$PWD: $*" >> "$FAKE_LOG"
case "$*" in *"-m pytest"*) exit "${FAKE_PYTEST_STATUS:-0}" ;; esac
exit 0
"""


def run_script(tmp_path, python, pytest_status=0, modes="debug"):
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = dict(os.environ, PYTHON=python, SANITIZE_MODES=modes, FAKE_LOG=str(log),
               FAKE_PYTEST_STATUS=str(pytest_status))
    proc = subprocess.run(["bash", str(SCRIPT), "tests/functional/test_out.py"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


@pytest.mark.parametrize("python", ["bin/python", "./bin/python", "ABSOLUTE"])
def test_relative_and_absolute_interpreter_paths_work(tmp_path, python):
    if python == "ABSOLUTE":
        python = str(tmp_path / "bin" / "python")
    proc, calls = run_script(tmp_path, python)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(calls) == 2, calls
    assert "setup.py -q build_ext --inplace -j" in calls[0]
    assert "-m pytest -q -p no:cacheprovider tests/functional/test_out.py" in calls[1]
    assert "== debug: clean" in proc.stdout


def test_a_failing_test_run_fails_the_script(tmp_path):
    proc, calls = run_script(tmp_path, "bin/python", pytest_status=1)
    assert proc.returncode == 1 and "== debug: FAILED" in proc.stdout
    assert len(calls) == 2


@pytest.mark.parametrize("python, message", [("no/such/python", "no interpreter at"),
                                             ("no-such-python-here", "is not on PATH")])
def test_a_missing_interpreter_is_named(tmp_path, python, message):
    proc, calls = run_script(tmp_path, python)
    assert proc.returncode == 2 and message in proc.stderr and python in proc.stderr
    assert calls == []


def test_an_unknown_mode_is_refused(tmp_path):
    proc, calls = run_script(tmp_path, "bin/python", modes="debug msan")
    assert proc.returncode == 2 and "unknown mode 'msan'" in proc.stderr
    assert calls == []


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["sanitize", "sanitize-quick"])
def test_make_passes_an_absolute_interpreter_path(target):
    out = subprocess.run(["make", "-n", "-C", str(REPO), target], capture_output=True,
                         text=True, timeout=60).stdout.replace("\\\n", " ")
    line = next(line for line in out.splitlines() if "run_sanitizers.sh" in line)
    python = re.search(r"PYTHON=(\S+)", line).group(1)
    assert os.path.isabs(python), line
