"""Metrics, the training-config schema (and its TOML writer), history CSV and plots."""
import json
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from cnnframe.train import History, load_config, validate_config
from cnnframe.train.config import resume_differences, save_config, to_toml, tomllib
from cnnframe.train.metrics import (MetricTracker, accuracy, confusion_matrix, parse_metric,
                                    per_class_accuracy, top_k_correct)
from cnnframe.train.plots import plot_confusion, plot_curves

# ----------------------------------------------------------------------------- metrics


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 6)),
                  elements=st.integers(-3, 3).map(float)), st.data())
def test_top_k_matches_brute_force(logits, data):
    n, k_classes = logits.shape
    labels = np.array(data.draw(st.lists(st.integers(0, k_classes - 1), min_size=n, max_size=n)))
    for k in (1, 2, 5):
        want = 0
        for row, lab in zip(logits, labels):
            # Correct when fewer than k classes score strictly higher than the label.
            want += sum(v > row[lab] for v in row) < k
        if k == 1:
            # argmax breaks ties towards the lowest index; count with that rule.
            want = int(np.sum(logits.argmax(1) == labels))
        assert top_k_correct(logits, labels, k) == want


def test_accuracy_and_confusion():
    logits = np.array([[2.0, 1, 0], [0, 3, 1], [5, 0, 0], [0, 1, 2]])
    labels = np.array([0, 1, 2, 1])
    assert accuracy(logits, labels) == 0.5
    cm = confusion_matrix(logits.argmax(1), labels, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    np.testing.assert_array_equal(per_class_accuracy(cm), [1.0, 0.5, 0.0])
    assert np.isnan(per_class_accuracy(np.zeros((2, 2), int))).all()
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="shape"):
        accuracy(logits, labels[:2])


def test_metric_names():
    assert parse_metric("accuracy") == 1 and parse_metric("top5_accuracy") == 5
    for bad in ("top0_accuracy", "f1", "top_accuracy"):
        with pytest.raises(ValueError, match="valid"):
            parse_metric(bad)


def test_tracker_is_sample_weighted():
    t = MetricTracker(["accuracy", "top2_accuracy"])
    t.update(1.0, np.array([[1.0, 0, 0]]), np.array([0]))                    # 1 sample
    t.update(4.0, np.array([[0, 1.0, 0.5], [0, 1.0, 0.5], [0, 1.0, 0.5]]), np.array([2, 2, 0]))
    r = t.result()
    assert r["loss"] == pytest.approx((1.0 + 3 * 4.0) / 4)
    assert r["accuracy"] == 0.25 and r["top2_accuracy"] == 0.75
    t2 = MetricTracker(["accuracy", "top2_accuracy"])
    t2.load_state_dict(t.state_dict())
    assert t2.result() == r


# ----------------------------------------------------------------------------- config

BASE = {"model": {"layers": []}, "data": {"dataset": "shapes"}, "optimizer": {"type": "sgd"},
        "epochs": 2, "batch_size": 8}


def test_defaults_filled():
    cfg = validate_config(BASE)
    assert cfg["seed"] == 0 and cfg["threads"] is None and cfg["metrics"] == ["accuracy"]
    assert cfg["checkpoint"] == {"keep": 3, "every_steps": 0}
    assert cfg["data"]["validation"] == "test" and cfg["data"]["augmentation"] == []
    assert cfg["loss"] == {"type": "softmax_cross_entropy"}
    assert BASE["data"] == {"dataset": "shapes"}  # input not modified


@pytest.mark.parametrize("patch, match", [
    ({"epoch": 3}, r"'epoch' \(did you mean 'epochs'\?\).*valid keys: model, data"),
    ({"data": {"dataset": "shapes", "augment": []}}, r"'augment'.*\[data\].*augmentation"),
    ({"checkpoint": {"keep": 2, "every": 5}}, r"'every'.*every_steps"),
    ({"epochs": 0}, "epochs .* >= 1"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"threads": 0}, "threads"),
    ({"metrics": ["f1"]}, "unknown metric"),
    ({"data": {"root": "x"}}, "dataset"),
    ({"data": {"dataset": "shapes", "validation": 1.5}}, "validation"),
    ({"optimizer": {"lr": 0.1}}, "type"),
])
def test_bad_configs_name_the_problem(patch, match):
    with pytest.raises(ValueError, match=match):
        validate_config({**BASE, **patch})


def test_missing_and_wrong_type():
    with pytest.raises(ValueError, match="missing 'epochs'"):
        validate_config({k: v for k, v in BASE.items() if k != "epochs"})
    with pytest.raises(TypeError, match=r"\[data\] must be a table"):
        validate_config({**BASE, "data": "shapes"})


def test_load_toml_and_json_and_model_file_path(tmp_path):
    (tmp_path / "sub").mkdir()
    text = """
epochs = 3
batch_size = 16
[model]
file = "net.toml"
[data]
dataset = "shapes"
options = {n_train = 100}
[optimizer]
type = "adam"
lr = 0.001
"""
    (tmp_path / "sub" / "c.toml").write_text(text)
    cfg = load_config(tmp_path / "sub" / "c.toml")
    assert cfg["model"]["file"] == str(tmp_path / "sub" / "net.toml")
    assert cfg["data"]["options"] == {"n_train": 100}
    (tmp_path / "c.json").write_text(json.dumps(BASE))
    assert load_config(tmp_path / "c.json")["epochs"] == 2
    (tmp_path / "bad.toml").write_text("epochs = = 3")
    with pytest.raises(ValueError, match="cannot parse"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.toml")


def _drop_none(v):
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v]
    return v


def test_to_toml_round_trips(tmp_path):
    cfg = validate_config({
        **BASE,
        "model": {"input_shape": [3, 32, 32],
                  "layers": [{"type": "conv2d", "filters": 8, "name": "c1"},
                             {"type": "relu", "inputs": ["c1"]}],
                  "nested": {"deeper": {"x": 1.5}}},
        "data": {"dataset": "cifar10", "root": "/a b/\"q\"", "normalize": {"mean": [0.5, 0.25]},
                 "augmentation": [{"type": "random_crop", "padding": 4}, {"type": "hflip"}]},
        "schedule": {"type": "onecycle", "max_lr": 0.1},
        "optimizer": {"type": "sgd", "lr": 1e-3, "nesterov": True}})
    cfg["data"]["root"] = "/a b/\"q\""
    text = to_toml(cfg)
    back = tomllib.loads(text)
    assert back == _drop_none(json.loads(json.dumps(cfg)))  # TOML has no null: Nones are left out
    save_config(cfg, tmp_path / "c.toml")
    assert validate_config(tomllib.loads((tmp_path / "c.toml").read_text())) == cfg


def test_resume_differences_name_the_keys_that_change_the_run():
    saved = validate_config({**BASE, "data": {"dataset": "cifar10", "root": "/data/a"},
                             "optimizer": {"type": "sgd", "lr": 0.1}})
    same = validate_config({**BASE, "epochs": 9, "threads": 2,
                            "data": {"dataset": "cifar10", "root": "/elsewhere"},
                            "optimizer": {"type": "sgd", "lr": 0.1}})
    assert resume_differences(saved, same) == []
    other = validate_config({**BASE, "batch_size": 4, "seed": 1,
                             "data": {"dataset": "cifar10", "normalize": {"mean": [0.5]}},
                             "optimizer": {"type": "sgd", "lr": 0.2, "momentum": 0.9}})
    assert resume_differences(saved, other) == ["batch_size", "data.normalize",
                                                "data.normalize.mean", "optimizer.lr",
                                                "optimizer.momentum", "seed"]


# ----------------------------------------------------------------------------- history, plots

def test_history_csv_round_trip(tmp_path):
    h = History([{"epoch": 1, "loss": 0.1 + 0.2, "accuracy": 1 / 3},
                 {"epoch": 2, "loss": 0.25, "accuracy": 0.5, "val_loss": 0.3}])
    h.to_csv(tmp_path / "m.csv")
    back = History.from_csv(tmp_path / "m.csv")
    assert back["loss"] == h["loss"] and back["accuracy"] == h["accuracy"]
    assert np.isnan(back["val_loss"][0]) and back["val_loss"][1] == 0.3
    with pytest.raises(KeyError, match="columns"):
        h["f1"]


PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")  # an optional extra; the no-matplotlib path is below
    h = History([{"epoch": e, "loss": 1 / e, "accuracy": 0.5 + e / 10, "val_loss": 1.1 / e,
                  "val_accuracy": 0.45 + e / 10} for e in (1, 2, 3)])
    assert plot_curves(h, tmp_path / "curves.png") == str(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
    cm = np.array([[5, 1], [2, 7]])
    plot_confusion(cm, ["cat", "dog"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "curves.png"]
    with pytest.raises(ValueError, match="len"):
        plot_confusion(cm, ["a"], tmp_path / "x.png")


def _drawn_curves(history, tmp_path, monkeypatch, **kw):
    """The figure plot_curves draws (kept open to look at what was plotted)."""
    from cnnframe.train import plots
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, plt, path: figs.append(fig) or str(path))
    plot_curves(history, tmp_path / "curves.png", **kw)
    return figs[0]


def test_a_one_epoch_run_draws_a_curve_over_whole_epochs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    steps = [{"step": s, "epoch": s / 10, "loss": 2.0 - s / 10, "accuracy": s / 20}
             for s in range(1, 11)]
    h = History([{"epoch": 1, "loss": 1.3, "accuracy": 0.3, "val_loss": 1.2,
                  "val_accuracy": 0.35}], steps)
    fig = _drawn_curves(h, tmp_path, monkeypatch)
    try:
        loss_ax, acc_ax = fig.axes
        lines = {ln.get_label(): ln for ln in loss_ax.get_lines()}
        per_step = lines["train (per step)"]
        np.testing.assert_allclose(per_step.get_xdata(), [p["epoch"] for p in steps])
        np.testing.assert_allclose(per_step.get_ydata(), [p["loss"] for p in steps])
        assert list(lines["validation"].get_xdata()) == [1]
        acc = {ln.get_label(): ln for ln in acc_ax.get_lines()}["train (per step)"]
        np.testing.assert_allclose(acc.get_ydata(), [100 * p["accuracy"] for p in steps])
        for ax in fig.axes:
            assert ax.get_xlim() == (0, 1)
            ticks = [t for t in ax.get_xticks() if 0 <= t <= 1]
            assert ticks == [0, 1]  # whole epochs only
    finally:
        plt.close(fig)


def test_curves_without_a_metric_or_without_finished_epochs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    steps = [{"step": s, "epoch": s / 40, "loss": 1.0 / s} for s in range(1, 4)]
    fig = _drawn_curves(History([], steps), tmp_path, monkeypatch, metric=None)
    try:
        assert len(fig.axes) == 1
        assert len(fig.axes[0].get_lines()) == 1
    finally:
        plt.close(fig)
    assert plot_curves(History(), tmp_path / "none.png") is None


def test_plots_without_matplotlib_print_a_note(tmp_path, monkeypatch, capsys):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    h = History([{"epoch": 1, "loss": 1.0, "accuracy": 0.5}])
    assert plot_curves(h, tmp_path / "curves.png") is None
    assert plot_confusion(np.eye(2, dtype=int), ["a", "b"], tmp_path / "cm.png") is None
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 2
    assert list(tmp_path.iterdir()) == []
