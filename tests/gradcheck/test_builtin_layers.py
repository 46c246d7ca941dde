"""Built-in layers pass the gradient check with zero false failures over many seeds.

The default profile checks 40 seeds per case; the ``thorough`` hypothesis profile
(``--hypothesis-profile=thorough`` or ``HYPOTHESIS_PROFILE=thorough``) checks 1,000
(the acceptance run: zero failures for every built-in layer).
Random inputs, parameters and projections change with the seed, so kinks
(ReLU at 0, max-pool near-ties) are met as often as they happen in practice.
"""
import numpy as np
import pytest

import cnnframe.layers  # noqa: F401 - registers the built-ins
from cnnframe.gradcheck import check_layer
from cnnframe.registry import get_layer
from hypothesis_budget import scaled

N_SEEDS = scaled(40)  # follows the hypothesis profile, as the @given tests do

X4 = (2, 3, 6, 6)
CASES = [
    ("conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1}, X4, True),
    ("conv2d", {"in_channels": 3, "out_channels": 6, "kernel_size": [2, 3], "stride": 2,
                "dilation": [1, 2], "groups": 3, "bias": False}, X4, True),
    ("linear", {"in_features": 5, "out_features": 4}, (3, 5), True),
    ("max_pool2d", {"kernel_size": 2}, X4, True),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, X4, True),
    ("avg_pool2d", {"kernel_size": 3, "stride": 1, "padding": 1}, X4, True),
    ("global_avg_pool2d", {}, X4, True),
    ("batch_norm2d", {"num_features": 3}, (4, 3, 3, 3), True),
    ("batch_norm2d", {"num_features": 3}, (4, 3, 3, 3), False),
    ("batch_norm1d", {"num_features": 5}, (4, 5), True),
    ("relu", {}, X4, True),
    ("leaky_relu", {"negative_slope": 0.1}, X4, True),
    ("sigmoid", {}, X4, True),
    ("tanh", {}, X4, True),
    ("softmax", {"axis": 1}, (3, 5), True),
    ("dropout", {"p": 0.3}, X4, True),
    ("flatten", {}, X4, True),
    ("identity", {}, X4, True),
    ("add", {}, [X4, X4], True),
    ("concat", {"axis": 1}, [X4, (2, 2, 6, 6)], True),
]


def _id(case):
    name, cfg, _, training = case
    extra = "-".join(f"{k}{v}" for k, v in cfg.items() if k not in ("in_channels",))
    return f"{name}-{extra}-{'train' if training else 'eval'}".replace(" ", "")


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_builtin_layer_has_no_false_failures(case):
    name, cfg, shape, training = case
    cls = get_layer(name)
    failures, skipped = [], 0
    for seed in range(N_SEEDS):
        config = dict(cfg)
        if "seed" in cls.config_keys():
            config["seed"] = seed
        layer = cls.from_config(config)
        if name.startswith("batch_norm"):  # non-trivial statistics for eval mode
            rng = np.random.default_rng(seed)
            layer.buffers["running_mean"][...] = rng.normal(size=layer.buffers["running_mean"].shape)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2, layer.buffers["running_var"].shape)
        report = check_layer(layer, input_shape=shape, seed=seed, training=training,
                             mode="projections")
        skipped += sum(t.skipped for t in report.targets)
        if not report.passed:
            failures.append(str(report))
    assert not failures, f"{len(failures)} of {N_SEEDS} seeds failed; first:\n{failures[0]}"
    # kinks are moved off, so essentially none are left to skip
    assert skipped <= N_SEEDS // 100 + 1
