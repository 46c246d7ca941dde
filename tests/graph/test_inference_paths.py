"""Inference at changing batch sizes (a service answering one image, then eight, then one):
memory plans and each thread's views of its arena are kept per (batch size, dtype), at most
MAX_CACHED_PLANS of them, and every call gives what a fresh model gives.  The layers whose
inference pass skips the functional ops' per-call checks (batch norm, ReLU, pooling) give
the functional ops' results bit for bit."""
import numpy as np
import pytest

import cnnframe.functional as F
import cnnframe.graph.model as model_module
from cnnframe.graph import Model
from cnnframe.layers.activations import ReLU
from cnnframe.layers.normalization import BatchNorm2d
from cnnframe.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d


def node(name, type_, inputs, **config):
    return {"name": name, "type": type_, "inputs": list(inputs), "config": config}


def conv_bn_relu(name, inp, cin, cout):
    return [node(name, "conv2d", [inp], in_channels=cin, out_channels=cout, kernel_size=3,
                 padding=1),
            node(f"{name}_bn", "batch_norm2d", [name], num_features=cout),
            node(f"{name}_r", "relu", [f"{name}_bn"])]


CHAIN = {"inputs": {"image": [3, 8, 8]}, "seed": 5, "outputs": ["fc"], "nodes": [
    *conv_bn_relu("c1", "image", 3, 4), node("p1", "max_pool2d", ["c1_r"], kernel_size=2),
    *conv_bn_relu("c2", "p1", 4, 6), node("p2", "avg_pool2d", ["c2_r"], kernel_size=2),
    node("flat", "flatten", ["p2"]), node("fc", "linear", ["flat"], in_features=24,
                                            out_features=5)]}
RESIDUAL = {"inputs": {"image": [3, 8, 8]}, "seed": 5, "outputs": ["fc"], "nodes": [
    *conv_bn_relu("stem", "image", 3, 4), *conv_bn_relu("a", "stem_r", 4, 4),
    node("sum", "add", ["a_r", "stem_r"]), node("gap", "global_avg_pool2d", ["sum"]),
    node("fc", "linear", ["gap"], in_features=4, out_features=3)]}


def feeds(model, n, seed):
    shape = next(iter(model.inputs.values()))
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(model.dtype)


@pytest.mark.parametrize("cfg", [CHAIN, RESIDUAL], ids=["chain", "residual"])
def test_alternating_batch_sizes_match_a_fresh_model(cfg):
    model = Model.from_config(cfg)
    for n in (1, 8, 1, 3, 8, 1):
        x = feeds(model, n, seed=n)
        got = model.forward(x, training=False).copy()
        want = Model.from_config(cfg).forward(x, training=False)
        np.testing.assert_array_equal(got, want, err_msg=f"batch {n}")


def test_plans_are_kept_per_batch_size_and_bounded(monkeypatch):
    monkeypatch.setattr(model_module, "MAX_CACHED_PLANS", 3)
    model = Model.from_config(CHAIN)
    planned = []
    original = model_module.plan_memory
    monkeypatch.setattr(model_module, "plan_memory",
                        lambda m, n: planned.append(n) or original(m, n))
    for n in (1, 2, 1, 2, 3, 4, 1):
        model.forward(feeds(model, n, seed=0), training=False)
    # 1 and 2 are planned once while cached; 4 evicts 1 (the oldest), so 1 is planned again
    assert planned == [1, 2, 3, 4, 1]
    assert len(model._memory_plans) <= 3
    assert len(model._runner().views) <= 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (4, 5, 7, 9)])
def test_inference_layers_match_the_functional_ops(isa, shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    c = shape[1]

    bn = BatchNorm2d(num_features=c)
    bn.astype(dtype)
    for arrays, key, low, high in ((bn.params, "weight", 0.5, 1.5), (bn.params, "bias", -.2, .2),
                                   (bn.buffers, "running_mean", -0.2, 0.2),
                                   (bn.buffers, "running_var", 0.5, 2.0)):
        arrays[key][...] = rng.uniform(low, high, c)
    want = F.batch_norm_eval(x, bn.params["weight"], bn.params["bias"],
                             bn.buffers["running_mean"], bn.buffers["running_var"], bn.eps)
    np.testing.assert_array_equal(bn.forward(x, training=False), want)

    np.testing.assert_array_equal(ReLU().forward(x, training=False), F.relu(x))
    y, _ = F.max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(MaxPool2d(kernel_size=3, stride=2, padding=1)
                                  .forward(x, training=False), y)
    np.testing.assert_array_equal(AvgPool2d(kernel_size=2).forward(x, training=False),
                                  F.avg_pool2d(x, 2))
    np.testing.assert_array_equal(GlobalAvgPool2d().forward(x, training=False),
                                  F.global_avg_pool2d(x))
