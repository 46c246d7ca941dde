"""benchmarks/accuracy/run_accuracy.py: where it looks for the datasets, the seeded cifar10_fast
runs and their table (training only on a tiny stand-in folder)."""
import argparse
import importlib.util
import json
from pathlib import Path

import pytest
from dataset_writers import write_cifar_folder

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


# ----------------------------------------------------------------------------- cifar10_fast

def test_the_fast_configs_are_seeded_runs_judged_on_multicrop_tta(run_accuracy):
    for name, target, minutes in (("cifar10_fast", 0.935, 30), ("cifar10_fast_short", 0.90, 10)):
        spec = run_accuracy.RUNS[name]
        assert spec["config"].is_file() and spec["config"].stem == name
        assert (spec["target"], spec["minutes"], spec["tta"], spec["seeds"]) == \
            (target, minutes, "multicrop", 3)
        assert name in run_accuracy.TARGETS


def test_seed_config_changes_the_seed_only(run_accuracy, tmp_path):
    from cnnframe.train import load_config
    spec = run_accuracy.RUNS["cifar10_fast"]
    path = run_accuracy.seed_config(spec["config"], 2, tmp_path / "out")
    assert path.parent == tmp_path / "out" and path.name == "cifar10_fast_seed2.toml"
    seeded, original = load_config(path), load_config(spec["config"])
    assert seeded["seed"] == 2 and original["seed"] == 0
    assert {**seeded, "seed": 0} == original


def test_init_seconds_reads_the_train_output(run_accuracy):
    assert run_accuracy.init_seconds("model: 5 parameters; init from data in 4.7 s (1 x)") == 4.7
    assert run_accuracy.init_seconds("model: 5 parameters") == 0.0


def fake_row(run_accuracy, seed, acc, tta_acc, total_min):
    spec = run_accuracy.RUNS["cifar10_fast_short"]
    return {"name": "cifar10_fast_short", **spec, "seed": seed, "epochs": 6,
            "train_s": 60 * total_min - 40, "init_s": 1.0, "tta_s": 39.0,
            "total_s": 60 * total_min, "acc": acc, "tta_acc": tta_acc, "images_per_s": 500.0}


def test_seed_table_has_a_row_per_seed_and_judges_the_mean(run_accuracy):
    rows = [fake_row(run_accuracy, 0, 0.89, 0.905, 9.0),
            fake_row(run_accuracy, 1, 0.88, 0.897, 9.5)]
    lines = run_accuracy.seed_table(rows, 2).splitlines()
    assert len(lines) == 2 + 2 + 1
    assert "| 0 | 6 |" in lines[2] and "90.50% (multicrop)" in lines[2]
    mean = lines[-1]
    assert "mean of 2" in mean and "88.50%" in mean and "90.10%" in mean
    assert mean.endswith("| yes |")
    slow = [fake_row(run_accuracy, 0, 0.9, 0.95, 10.5)]
    assert run_accuracy.seed_table(slow, 2).splitlines()[-1].endswith("| no |")
    low = [fake_row(run_accuracy, 0, 0.9, 0.899, 5.0)]
    assert run_accuracy.seed_table(low, 2).splitlines()[-1].endswith("| no |")
    failed = [{**fake_row(run_accuracy, 0, 0, 0, 0), "failed": 1}]
    table = run_accuracy.seed_table(failed, 2)
    assert "failed (1)" in table and "mean" not in table


def test_run_seeds_trains_each_seed_and_times_the_tta(run_accuracy, tmp_path, monkeypatch,
                                                      capsys):
    """cifar10_fast_short with batch 8 for one epoch on a tiny CIFAR-10 folder, 2 seeds."""
    pytest.importorskip("PIL.Image")
    monkeypatch.setenv("CNNFRAME_CACHE", str(tmp_path / "cache"))
    write_cifar_folder(tmp_path / "data" / "cifar10-jpeg")
    assert "batch_size = 1024" in run_accuracy.RUNS["cifar10_fast_short"]["config"].read_text()
    config = tmp_path / "short.toml"
    config.write_text(run_accuracy.RUNS["cifar10_fast_short"]["config"].read_text()
                      .replace("batch_size = 1024", "batch_size = 8"))
    spec = {**run_accuracy.RUNS["cifar10_fast_short"], "config": config}
    args = argparse.Namespace(data_dir=str(tmp_path / "data"), threads=1, epochs=1, seeds=2,
                              out=str(tmp_path / "runs"))
    outputs = []  # what run_seeds reads the init time from: cnnframe train's output
    parse = run_accuracy.init_seconds
    monkeypatch.setattr(run_accuracy, "init_seconds", lambda text: outputs.append(text)
                        or parse(text))
    rows = run_accuracy.run_seeds("cifar10_fast_short", spec, args)
    assert [r["seed"] for r in rows] == [0, 1] and not any(r.get("failed") for r in rows)
    assert len(outputs) == 2 and all("init from data in" in text for text in outputs)
    for r in rows:
        assert r["epochs"] == 1 and r["init_s"] >= 0 and r["tta_s"] > 0
        assert r["total_s"] == pytest.approx(r["train_s"] + r["init_s"] + r["tta_s"])
        assert 0 <= r["acc"] <= 1 and 0 <= r["tta_acc"] <= 1
    assert (tmp_path / "runs" / "cifar10_fast_short" / "seed1" / "model.cnnf").is_file()
    for r in rows:  # each seed's results.json, for plot_accuracy.py
        saved = json.loads((tmp_path / "runs" / "cifar10_fast_short" / f"seed{r['seed']}" /
                            "results.json").read_text())
        assert (saved["seed"], saved["epochs"], saved["threads"]) == (r["seed"], 1, 1)
        assert (saved["accuracy"], saved["tta_accuracy"]) == (r["acc"], r["tta_acc"])
        assert saved["counted_minutes"] == pytest.approx(r["total_s"] / 60)
    assert "mean of 2" in run_accuracy.seed_table(rows, 1)
