"""benchmarks/accuracy: run_accuracy.py's results.json per run and plot_accuracy.py's figure,
on results files fabricated with run_accuracy's own writer (no training)."""
import importlib.util
import json
import struct
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_accuracy():
    return load("run_accuracy")


@pytest.fixture(scope="module")
def plot_accuracy():
    return load("plot_accuracy")


def seeded_row(run_accuracy, name, seed, tta_acc, total_min):
    """A finished seed of a cifar10_fast config as run_seeds returns it."""
    return {"name": name, **run_accuracy.RUNS[name], "seed": seed, "epochs": 6,
            "train_s": 60 * total_min - 40, "init_s": 1.0, "tta_s": 39.0,
            "total_s": 60 * total_min, "wall_s": 60 * total_min + 5, "acc": tta_acc - 0.01,
            "tta_acc": tta_acc, "images_per_s": 500.0}


def plain_row(run_accuracy, name, acc, train_min, tta=None):
    """A finished run of a single-seed config as run_one returns it."""
    return {"name": name, **run_accuracy.RUNS[name], "epochs": 22, "train_s": 60 * train_min,
            "wall_s": 60 * train_min + 30, "acc": acc, "best": acc, "within": acc, "tta": tta,
            "images_per_s": 1100.0}


def write_plain(run_accuracy, folder, row, seed=0):
    """results.json of `row` in `folder`, beside the config.toml a run writes there."""
    from cnnframe.train import load_config, save_config
    cfg = load_config(row["config"])
    cfg["seed"] = seed
    folder.mkdir(parents=True)
    save_config(cfg, folder / "config.toml")
    return run_accuracy.write_results(folder, row, 2)


def test_a_seeded_run_writes_what_it_is_judged_on(run_accuracy, tmp_path):
    from cnnframe._config import active_isa
    row = seeded_row(run_accuracy, "cifar10_fast", 2, 0.936, 29.0)
    path = run_accuracy.write_results(tmp_path / "seed2", row, 2)
    got = json.loads(path.read_text())
    assert got == {
        "name": "cifar10_fast", "dataset": "cifar10", "config": "cifar10_fast", "seed": 2,
        "epochs": 6, "accuracy": pytest.approx(0.926), "tta": "multicrop",
        "tta_accuracy": 0.936, "judged_on": "tta", "train_minutes": pytest.approx(29 - 40 / 60),
        "counted_minutes": pytest.approx(29.0), "wall_minutes": pytest.approx(29 + 5 / 60),
        "images_per_s": 500.0, "isa": active_isa(), "threads": 2,
        "target": 0.935, "target_minutes": 30}
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # no temporary


@pytest.mark.parametrize("name, dataset, tta", [("cifar10", "cifar10", 0.8662),
                                                ("cifar10_resnet", "cifar10", None),
                                                ("fashion_mnist", "fashion-mnist", None)])
def test_a_single_run_writes_its_plain_accuracy_and_config_seed(run_accuracy, tmp_path, name,
                                                                dataset, tta):
    row = plain_row(run_accuracy, name, 0.8565, 16.6, tta)
    got = json.loads(write_plain(run_accuracy, tmp_path / name, row, seed=5).read_text())
    assert (got["name"], got["dataset"], got["seed"], got["judged_on"]) == (name, dataset, 5,
                                                                             "plain")
    assert got["accuracy"] == 0.8565 and got["tta_accuracy"] == tta
    assert got["tta"] == (None if tta is None else "flip")
    assert got["counted_minutes"] == pytest.approx(16.6) == got["train_minutes"]


def fabricate(run_accuracy, root):
    """Results of all CIFAR configs (3 seeds of each fast one) and one Fashion-MNIST run."""
    write_plain(run_accuracy, root / "cifar10", plain_row(run_accuracy, "cifar10", 0.8565, 16.6,
                                                          0.8662))
    write_plain(run_accuracy, root / "cifar10_resnet",
                plain_row(run_accuracy, "cifar10_resnet", 0.8611, 41.0))
    write_plain(run_accuracy, root / "fashion_mnist",
                plain_row(run_accuracy, "fashion_mnist", 0.919, 1.6))
    for name, accs in (("cifar10_fast", (0.934, 0.936, 0.938)),
                       ("cifar10_fast_short", (0.90, 0.91, 0.92))):
        for seed, acc in enumerate(accs):
            run_accuracy.write_results(root / name / f"seed{seed}",
                                       seeded_row(run_accuracy, name, seed, acc, 9.0 + seed), 2)


def test_the_plot_draws_every_cifar_run_at_its_judged_accuracy(run_accuracy, plot_accuracy,
                                                               tmp_path):
    fabricate(run_accuracy, tmp_path / "runs")
    runs = [plot_accuracy.read_results(p)
            for p in plot_accuracy.find_results([tmp_path / "runs"])]
    assert len(runs) == 2 + 1 + 6
    points = plot_accuracy.plot_points([r for r in runs if r["dataset"] == "cifar10"])
    by_label = {}
    for label, minutes, acc in points:
        by_label.setdefault(label, []).append((minutes, acc))
    assert by_label == {
        "cifar10_small": [(pytest.approx(16.6), 0.8565)],  # plain, not the flip TTA
        "cifar10_resnet": [(pytest.approx(41.0), 0.8611)],
        "cifar10_fast (multicrop TTA, time counted)": [
            (pytest.approx(9.0 + s), a) for s, a in enumerate((0.934, 0.936, 0.938))],
        "cifar10_fast_short (multicrop TTA, time counted)": [
            (pytest.approx(9.0 + s), a) for s, a in enumerate((0.90, 0.91, 0.92))]}


def test_main_writes_the_png_of_the_cifar_runs(run_accuracy, plot_accuracy, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    fabricate(run_accuracy, tmp_path / "runs")
    out = tmp_path / "docs" / "acc.png"
    # a folder and one of its files again: each run is drawn once
    again = tmp_path / "runs" / "cifar10" / "results.json"
    assert plot_accuracy.main([str(tmp_path / "runs"), str(again), "--out", str(out)]) == 0
    assert "8 runs of 4 configs drawn" in capsys.readouterr().out
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (800, 500)


def test_bad_results_are_named(run_accuracy, plot_accuracy, tmp_path, capsys):
    fabricate(run_accuracy, tmp_path / "runs")
    out = str(tmp_path / "acc.png")
    assert plot_accuracy.main([str(tmp_path / "absent"), "--out", out]) == 2
    assert "absent: no such results file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert plot_accuracy.main([str(tmp_path / "empty"), "--out", out]) == 2
    assert "no results.json under" in capsys.readouterr().err
    assert plot_accuracy.main([str(tmp_path / "runs"), "--dataset", "imagenet", "--out",
                               out]) == 2
    assert "no results for dataset 'imagenet'" in capsys.readouterr().err
    broken = tmp_path / "runs" / "cifar10" / "results.json"
    results = json.loads(broken.read_text())
    del results["counted_minutes"]
    broken.write_text(json.dumps(results))
    assert plot_accuracy.main([str(tmp_path / "runs"), "--out", out]) == 2
    assert f"{broken}: missing key(s) counted_minutes" in capsys.readouterr().err
    broken.write_text("{")
    assert plot_accuracy.main([str(broken), "--out", out]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not Path(out).exists()
