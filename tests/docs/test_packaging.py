"""`pip install .[test]` installs everything the test suite needs: no test is skipped for a
missing optional package (the viz and image tests used to skip without matplotlib)."""
import re
from importlib.metadata import packages_distributions
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
_IMPORTORSKIP = re.compile(r"""importorskip\(\s*["']([\w.]+)["']""")


def _normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec):
    return _normalized(re.match(r"[A-Za-z0-9_.-]+", spec).group(0))


def modules_the_tests_may_skip():
    """Top-level module name -> the test files that call pytest.importorskip on it."""
    found = {}
    for path in sorted((REPO / "tests").rglob("*.py")):
        for module in _IMPORTORSKIP.findall(path.read_text(encoding="utf-8")):
            found.setdefault(module.split(".")[0], set()).add(path.relative_to(REPO).as_posix())
    return found


def test_the_test_extra_covers_every_importorskip():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    test_extra = {_requirement_name(spec) for spec in project["optional-dependencies"]["test"]}
    distributions = packages_distributions()
    skipped = modules_the_tests_may_skip()
    assert {"PIL", "matplotlib"} <= set(skipped)  # what the scan must find today
    for module, files in skipped.items():
        assert module in distributions, (
            f"{module} (importorskip in {', '.join(sorted(files))}) is not installed: "
            "pip install -e '.[test]' should have installed it")
        names = {_normalized(d) for d in distributions[module]}
        assert names & test_extra, (
            f"tests skip without {module} ({', '.join(sorted(files))}), but its distribution "
            f"{sorted(names)} is not in the `test` extra of pyproject.toml {sorted(test_extra)}")
