"""The thorough hypothesis profile raises the example count of every hypothesis test.

Each check collects the suite's hypothesis tests in a fresh interpreter under one
profile (profiles are applied when the test modules are imported) and reads the
example count each test will run: its settings' ``max_examples``, and ``N_SEEDS``
for the seed loop of tests/gradcheck/test_builtin_layers.py.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hypothesis_budget import DEFAULT_MAX_EXAMPLES

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Collects the tests given on the command line and prints {test: example count} as JSON.
COLLECT = """
import json, sys
import pytest

class ExampleCounts:
    counts = {}

    def pytest_collection_modifyitems(self, items):
        for item in items:
            test = getattr(item, "obj", None)
            name = item.nodeid.split("[")[0]
            if hasattr(test, "hypothesis"):  # a @given test
                self.counts[name] = test._hypothesis_internal_use_settings.max_examples
            seeds = getattr(getattr(item, "module", None), "N_SEEDS", None)
            if seeds is not None:
                self.counts[item.nodeid.split("::")[0] + "::N_SEEDS"] = seeds

plugin = ExampleCounts()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider"] + sys.argv[1:],
                   plugins=[plugin])
print("COUNTS " + json.dumps(plugin.counts))
sys.exit(int(code))
"""


def hypothesis_test_files():
    """Every test file with a hypothesis test or an example count of its own."""
    markers = ("@given", "max_examples", "scaled(", "N_SEEDS")
    return sorted(str(p.relative_to(ROOT)) for p in TESTS.rglob("test_*.py")
                  if p.name != Path(__file__).name
                  and any(marker in p.read_text() for marker in markers))


def start_collection(files, profile_flag=None, profile_env=None):
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    if profile_env:
        env["HYPOTHESIS_PROFILE"] = profile_env
    args = [sys.executable, "-c", COLLECT] + files
    if profile_flag:
        args.append(f"--hypothesis-profile={profile_flag}")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def counts_of(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, f"collection failed:\n{out[-3000:]}\n{err[-3000:]}"
    line = [s for s in out.splitlines() if s.startswith("COUNTS ")][-1]
    return json.loads(line[len("COUNTS "):])


ENV_FILES = ["tests/gradcheck/test_builtin_layers.py", "tests/fuzz/test_fuzz_functional.py"]


@pytest.fixture(scope="module")
def counts():
    """{profile: {test: count}}: the default profile, thorough chosen by the pytest option
    (every hypothesis test file) and by the environment variable (two files)."""
    files = hypothesis_test_files()
    runs = {"default": start_collection(files),  # all at once, in parallel
            "thorough": start_collection(files, profile_flag="thorough"),
            "thorough-env": start_collection(ENV_FILES, profile_env="thorough")}
    return {profile: counts_of(run) for profile, run in runs.items()}


def test_every_hypothesis_test_runs_25_times_more_examples_under_thorough(counts):
    default, thorough = counts["default"], counts["thorough"]
    assert len(default) >= 35 and set(default) == set(thorough)
    factor = 25  # tests/conftest.py: thorough max_examples / default max_examples
    not_raised = {test: (default[test], thorough[test]) for test in default
                  if thorough[test] != max(1, round(default[test] * factor))}
    assert not not_raised, f"example counts (default, thorough) not scaled: {not_raised}"


def test_default_profile_counts_are_the_tests_own(counts):
    """Under the default profile a test runs the count it asks for (40 when it asks none)."""
    default = counts["default"]
    assert default["tests/fuzz/test_fuzz_functional.py::test_functional_contract"] == 600
    assert default["tests/gradcheck/test_builtin_layers.py::N_SEEDS"] == DEFAULT_MAX_EXAMPLES
    assert default["tests/testing/test_strategies.py::test_image_batches"] == DEFAULT_MAX_EXAMPLES


def test_environment_variable_selects_the_thorough_profile_too(counts):
    thorough = counts["thorough-env"]
    assert thorough["tests/gradcheck/test_builtin_layers.py::N_SEEDS"] == 1000
    assert thorough["tests/fuzz/test_fuzz_functional.py::test_functional_contract"] == 15000
