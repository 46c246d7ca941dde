"""What a process killed in the middle of writing a file leaves behind, for cleanup tests."""
import signal
import subprocess
import sys

from cnnframe import _files


def killed_write(path):
    """Start ``atomic_write(path)`` in a new process and SIGKILL it half way.

    The process leaves its temporary file (``.<name>.<host>.<pid>.<random>.tmp``) next to
    `path`, with a writer that no longer exists, and no `path`.
    """
    # cnnframe._files needs only the standard library: load it alone (a tenth of a second,
    # where importing cnnframe takes seconds).
    code = ("import importlib.util, os, signal\n"
            f"spec = importlib.util.spec_from_file_location('files', {_files.__file__!r})\n"
            "files = importlib.util.module_from_spec(spec); spec.loader.exec_module(files)\n"
            "def write(f):\n"
            "    f.write(b'x' * 1000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            f"files.atomic_write({str(path)!r}, write)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
