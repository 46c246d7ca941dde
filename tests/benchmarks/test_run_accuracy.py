"""benchmarks/accuracy/run_accuracy.py: where it looks for the datasets (never runs training)."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy" / "run_accuracy.py"


@pytest.fixture(scope="module")
def run_accuracy():
    spec = importlib.util.spec_from_file_location("run_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cifar_spec(run_accuracy, fallback):
    return {**run_accuracy.RUNS["cifar10"], "roots": [fallback]}


def test_cifar10_comes_from_data_dir_then_cnnframe_data_then_an_existing_fallback(
        run_accuracy, tmp_path):
    for name in ("flag", "env", "fallback"):
        (tmp_path / name / "cifar10-jpeg" / "train").mkdir(parents=True)
    spec = cifar_spec(run_accuracy, tmp_path / "fallback")
    environ = {"CNNFRAME_DATA": str(tmp_path / "env")}
    find = run_accuracy.find_root
    assert find(spec, str(tmp_path / "flag"), environ)[0] == tmp_path / "flag" / "cifar10-jpeg"
    assert find(spec, None, environ)[0] == tmp_path / "env" / "cifar10-jpeg"
    assert find(spec, None, {})[0] == tmp_path / "fallback" / "cifar10-jpeg"


def test_without_cnnframe_data_the_message_says_to_set_it(run_accuracy, tmp_path):
    spec = cifar_spec(run_accuracy, tmp_path / "absent")  # a fallback that does not exist
    root, looked = run_accuracy.find_root(spec, None, {})
    assert root is None and looked == []
    line = run_accuracy.not_found_message("cifar10", None, looked, {})
    assert line.startswith("cifar10: dataset not found") and line.endswith("skipped")
    assert "$CNNFRAME_DATA is not set" in line and str(tmp_path) not in line
    (tmp_path / "empty").mkdir()
    environ = {"CNNFRAME_DATA": str(tmp_path / "empty")}
    root, looked = run_accuracy.find_root(spec, None, environ)
    line = run_accuracy.not_found_message("cifar10", None, looked, environ)
    assert root is None and f"looked in {tmp_path / 'empty'}" in line
    assert "not set" not in line
