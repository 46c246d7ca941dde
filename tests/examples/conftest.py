"""Helpers for the example tests: run a script in examples/ and read the numbers it prints.

Each example prints results as a line `<label> =` (or `<label> = <values>`) followed by
the values and a blank line; `printed(out, label)` returns those numbers as a flat array.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


_CACHE = {}


def _run(name, *args, env=None, timeout=180):
    """Run examples/<name> once per (args, env) in this session; return its stdout."""
    key = (name, tuple(map(str, args)), tuple(sorted((env or {}).items())))
    if key not in _CACHE:
        _CACHE[key] = _run_uncached(name, *args, env=env, timeout=timeout)
    return _CACHE[key]


def _run_uncached(name, *args, env=None, timeout=180):
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "2")
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env)
    assert proc.returncode == 0, (f"examples/{name} exited with {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout


def _printed(out, label):
    """Numbers printed after the line starting `label =`, up to the next blank line."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(label + " =") or line.startswith(label + ":"):
            text = [line[len(label) + 2:]]
            for nxt in lines[i + 1:]:
                if not nxt.strip():
                    break
                text.append(nxt)
            return np.array([float(v) for v in _NUMBER.findall("\n".join(text))])
    raise AssertionError(f"label {label!r} not found in the output:\n{out}")


@pytest.fixture
def run_example():
    """run_example(name, *args, env=None) -> stdout of examples/<name> (asserts exit code 0)."""
    return _run


@pytest.fixture
def printed():
    """printed(out, label) -> flat float array of the numbers printed under `label =`."""
    return _printed
