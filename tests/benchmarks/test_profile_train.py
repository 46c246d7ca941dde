"""benchmarks/profile_train.py: a row per node, forward and backward times, and the totals."""
import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_profile_train_times_every_node_of_a_training_step(capsys):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("profile_train", BENCH / "profile_train.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = BENCH.parent / "examples" / "configs" / "cifar10_fast_short.toml"
        module.main(["--config", str(config), "--batch", "4", "--steps", "2", "--threads", "1"])
    finally:
        sys.path.remove(str(BENCH))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cifar10_fast_short.toml: training step at batch 4, 1 threads")
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    for node in ("whiten", "b1_conv1", "b3_bn2", "fc", "logit_scale"):
        fwd, bwd = map(float, rows[node][3:5])
        assert fwd > 0 and bwd >= 0, rows[node]
    assert float(rows["b1_conv1"][4]) > 0            # a trained conv: a backward pass
    assert float(rows["whiten"][4]) == 0             # frozen, first: no backward at all
    for total in ("(loss)", "(optimizer", "(graph", "(whole"):
        assert total in rows
