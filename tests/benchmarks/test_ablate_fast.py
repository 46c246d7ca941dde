"""benchmarks/accuracy/ablate_fast.py: each variant changes cifar10_fast in one way, and the
script trains and tabulates them (on a tiny stand-in folder)."""
import importlib.util
import sys
from pathlib import Path

import pytest
from dataset_writers import write_cifar_folder

HERE = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy"


@pytest.fixture(scope="module")
def ablate():
    sys.path.insert(0, str(HERE))
    try:
        spec = importlib.util.spec_from_file_location("ablate_fast", HERE / "ablate_fast.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(HERE))


def flat(cfg, prefix=""):
    """{dotted key: value} of a nested config (lists of layers indexed)."""
    out = {}
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list)) and v and not (isinstance(v, list) and
                                                      not isinstance(v[0], (dict, list))):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


# variant -> a substring every changed key must contain
CHANGED = {"no_whitening": ("init", "freeze"), "no_dirac": ("init",),
           "no_label_smoothing": ("label_smoothing",), "no_ema": ("ema",),
           "random_flip": ("augmentation.0",), "relu": ("type",),
           "no_bias_lr": ("optimizer.groups",)}


def test_each_variant_is_a_valid_config_changing_one_method(ablate, tmp_path):
    from cnnframe.train import load_config
    base = flat(load_config(ablate.run_accuracy.CONFIGS / "cifar10_fast.toml"))
    assert set(ablate.VARIANTS) == {"all", *CHANGED}
    for name in ablate.VARIANTS:
        cfg = flat(load_config(ablate.variant_config(
            name, ablate.run_accuracy.CONFIGS / "cifar10_fast.toml", tmp_path)))
        changed = {k for k in set(base) | set(cfg) if base.get(k) != cfg.get(k)}
        if name == "all":
            assert not changed
            continue
        assert changed, name
        assert all(any(part in k for part in CHANGED[name]) for k in changed), (name, changed)


def test_the_script_trains_the_variants_and_prints_the_changes(ablate, tmp_path, monkeypatch,
                                                               capsys):
    pytest.importorskip("PIL.Image")
    monkeypatch.setenv("CNNFRAME_CACHE", str(tmp_path / "cache"))
    write_cifar_folder(tmp_path / "data" / "cifar10-jpeg")
    config = tmp_path / "tiny.toml"
    config.write_text((ablate.run_accuracy.CONFIGS / "cifar10_fast.toml").read_text()
                      .replace("batch_size = 1024", "batch_size = 8"))
    assert ablate.main(["--config", str(config), "--epochs", "1", "--only", "all,relu",
                        "--threads", "1", "--data-dir", str(tmp_path / "data"),
                        "--out", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out.rsplit("| variant |", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows] == ["| all", "| relu"]
    assert rows[0].endswith("| - |")  # the baseline has no change
    change = rows[1].split("|")[-2].strip()  # relu's TTA accuracy minus the baseline's
    assert change[0] in "+-" and change[1:].replace(".", "", 1).isdigit(), rows[1]
    assert (tmp_path / "runs" / "relu" / "cifar10_fast" / "seed0" / "model.cnnf").is_file()


def test_unknown_variant_is_a_clear_error(ablate, capsys):
    with pytest.raises(SystemExit):
        ablate.main(["--only", "all,no_gelu"])
    assert "unknown variant(s) no_gelu" in capsys.readouterr().err
