"""The layers added for imported ONNX graphs pass the conformance suite and match numpy."""
import numpy as np
import pytest

from cnnframe.registry import get_layer
from cnnframe.testing import parametrize_layer_checks

CASES = [
    ("elementwise", [({"op": op}, [(2, 3, 4, 4), (2, 3, 1, 4)]) for op in ("add", "sub", "mul")]
     + [({"op": "div"}, [(2, 3, 4, 4), (2, 1, 4, 1)])]),
    ("elementwise_const", [({"op": op, "shape": [3, 1, 1]}, (2, 3, 4, 4))
                     for op in ("add", "sub", "mul", "div", "rsub")]
     + [({"op": "rdiv", "shape": []}, (2, 5)),
        ({"op": "mul", "shape": [4], "trainable": True}, (2, 3, 4)),
        ({"op": "mul", "shape": [], "value": 0.25}, (2, 5))]),
    ("clip", [({"min": -0.5, "max": 0.5}, (2, 3, 4)), ({"min": 0.0}, (2, 6)),
              ({"max": 0.2}, (2, 2, 3, 3))]),
    ("reshape", [({"shape": [4, 12]}, (2, 3, 4, 4)), ({"shape": [6, 2]}, (2, 12))]),
    ("transpose", [({"perm": [0, 2, 3, 1]}, (2, 3, 4, 5)), ({"perm": [0, 2, 1]}, (2, 3, 4))]),
    ("pad", [({"pads": [[0, 0], [1, 2], [2, 1]], "mode": m}, (2, 2, 4, 5))
             for m in ("constant", "reflect", "edge")]
     + [({"pads": [[1, 0], [0, 3]], "mode": "constant", "value": 1.5}, (2, 3, 4))]),
    ("pool2d", [({"mode": "max", "kernel_size": 3, "stride": 2, "pads": [1, 0, 1, 2],
                  "ceil_mode": True}, (2, 2, 7, 6)),
                ({"mode": "max", "kernel_size": 2, "dilation": 2}, (2, 2, 6, 6)),
                ({"mode": "avg", "kernel_size": 3, "stride": 2, "pads": [1, 1, 1, 1],
                  "ceil_mode": True}, (2, 2, 6, 6)),
                ({"mode": "avg", "kernel_size": [2, 3], "stride": 1, "pads": [1, 1, 0, 1],
                  "count_include_pad": True}, (2, 2, 5, 5))]),
    ("lrn", [({"size": 3, "alpha": 0.1, "beta": 0.75, "k": 2.0}, (2, 5, 3, 3)),
             ({"size": 4, "alpha": 0.5, "beta": 0.5}, (2, 6, 4))]),
    ("matmul_const", [({"in_features": 4, "out_features": 3, "bias": True}, (2, 5, 4)),
                      ({"in_features": 4, "out_features": 2}, (2, 4))]),
]


for _name, _configs in CASES:
    @parametrize_layer_checks(get_layer(_name), _configs)
    def _test(layer_check):
        layer_check()
    globals()[f"test_{_name}_conformance"] = _test
del _test


def _run(name, cfg, *xs):
    layer = get_layer(name).from_config(cfg).astype(np.float64)
    return layer.forward(list(xs) if len(xs) > 1 else xs[0], training=False), layer


RNG = np.random.default_rng(0)


def test_pad_modes_match_numpy():
    x = RNG.standard_normal((2, 3, 4, 5))
    pads = [[0, 0], [1, 2], [3, 1]]
    for mode, np_mode in (("reflect", "reflect"), ("edge", "edge"), ("constant", "constant")):
        y, _ = _run("pad", {"pads": pads, "mode": mode}, x)
        assert np.array_equal(y, np.pad(x, [(0, 0)] + [tuple(p) for p in pads], mode=np_mode))


def test_elementwise_const_ops_match_numpy():
    x = RNG.uniform(0.5, 2.0, (2, 3, 4))
    c = RNG.uniform(0.5, 2.0, (3, 1))
    expected = {"add": x + c, "sub": x - c, "mul": x * c, "div": x / c, "rsub": c - x,
                "rdiv": c / x}
    for op, want in expected.items():
        layer = get_layer("elementwise_const").from_config({"op": op, "shape": [3, 1]})
        layer.astype(np.float64).buffers["value"][...] = c
        assert np.allclose(layer.forward(x, training=False), want, rtol=1e-12)


def test_lrn_matches_a_direct_sum():
    x = RNG.standard_normal((2, 6, 3))
    size, alpha, beta, k = 4, 0.3, 0.75, 1.5
    y, _ = _run("lrn", {"size": size, "alpha": alpha, "beta": beta, "k": k}, x)
    want = np.empty_like(x)
    for c in range(6):
        lo, hi = max(0, c - (size - 1) // 2), min(6, c + size // 2 + 1)
        s = k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
        want[:, c] = x[:, c] / s ** beta
    assert np.allclose(y, want, rtol=1e-12)


@pytest.mark.parametrize("cfg, msg", [
    ({"op": "pow"}, "op must be one of"),
])
def test_elementwise_refuses_unknown_ops(cfg, msg):
    with pytest.raises(ValueError, match=msg):
        get_layer("elementwise").from_config(cfg)


@pytest.mark.parametrize("name, cfg, shape, msg", [
    ("transpose", {"perm": [1, 0, 2]}, None, "perm\\[0\\] must be 0"),
    ("reshape", {"shape": [5]}, (4,), "cannot reshape"),
    ("pad", {"pads": [[3, 0]], "mode": "reflect"}, (3,), "smaller than its axis"),
    ("elementwise_const", {"op": "mul", "shape": [4]}, (3, 5), "does not broadcast"),
    ("pool2d", {"mode": "max", "kernel_size": 5}, (1, 3, 3), "too small"),
    ("clip", {"min": 2.0, "max": 1.0}, None, "must not exceed"),
])
def test_bad_configs_and_shapes_are_named(name, cfg, shape, msg):
    with pytest.raises(ValueError, match=msg):
        layer = get_layer(name).from_config(cfg)
        layer.output_shape(shape)


@pytest.mark.parametrize("trainable", [False, True])
def test_elementwise_const_starts_at_its_value(trainable):
    cls = get_layer("elementwise_const")
    layer = cls(op="mul", shape=[3, 1], trainable=trainable, value=1 / 9)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(layer.forward(x), x / 9, rtol=1e-6)
    assert layer.get_config()["value"] == 1 / 9
    rebuilt = cls.from_config(layer.get_config())
    np.testing.assert_array_equal(rebuilt.forward(x), layer.forward(x))
    assert "value" not in cls(op="mul").get_config()  # the default stays out of configs
    with pytest.raises(ValueError, match="value must be a finite number"):
        cls(op="mul", value=float("inf"))
