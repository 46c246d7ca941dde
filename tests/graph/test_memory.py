"""The training-memory plan (cnnframe.graph.memory): no two live arrays overlap, planned runs
match unplanned ones bit for bit even with every dead byte poisoned, gradient sums at fan-out
nodes, the summary's memory line."""
import threading

import numpy as np
import pytest

import cnnframe.graph.model as model_module
from cnnframe.graph import Model
from cnnframe.graph.memory import plan_memory


def node(name, type_, inputs, **config):
    return {"name": name, "type": type_, "inputs": list(inputs), "config": config}


def conv(name, inp, cin, cout, **kw):
    return node(name, "conv2d", [inp], in_channels=cin, out_channels=cout, kernel_size=3,
                padding=1, **kw)


def graph(nodes, outputs, inputs=None):
    return {"inputs": inputs or {"image": [3, 8, 8]}, "nodes": nodes, "outputs": outputs,
            "seed": 5}


CHAIN = graph([
    conv("c1", "image", 3, 4), node("bn1", "batch_norm2d", ["c1"], num_features=4),
    node("r1", "relu", ["bn1"]), node("p1", "max_pool2d", ["r1"], kernel_size=2),
    conv("c2", "p1", 4, 6), node("bn2", "batch_norm2d", ["c2"], num_features=6),
    node("r2", "relu", ["bn2"]), node("flat", "flatten", ["r2"]),
    node("fc", "linear", ["flat"], in_features=96, out_features=5)], ["fc"])

RESIDUAL = graph([
    conv("stem", "image", 3, 4), node("stem_bn", "batch_norm2d", ["stem"], num_features=4),
    node("stem_r", "relu", ["stem_bn"]),
    conv("a1", "stem_r", 4, 4), node("a1_bn", "batch_norm2d", ["a1"], num_features=4),
    node("a1_r", "relu", ["a1_bn"]), conv("a2", "a1_r", 4, 4),
    node("a2_bn", "batch_norm2d", ["a2"], num_features=4),
    node("add1", "add", ["a2_bn", "stem_r"]), node("out1", "relu", ["add1"]),
    conv("b1", "out1", 4, 8, stride=2), node("b1_bn", "batch_norm2d", ["b1"], num_features=8),
    node("b1_r", "relu", ["b1_bn"]), conv("b2", "b1_r", 8, 8),
    node("proj", "conv2d", ["out1"], in_channels=4, out_channels=8, kernel_size=1, stride=2),
    node("add2", "add", ["b2", "proj"]), node("out2", "relu", ["add2"]),
    node("gap", "global_avg_pool2d", ["out2"]),
    node("fc", "linear", ["gap"], in_features=8, out_features=3)], ["fc"])

# A node feeding three others, summed by a three-input add; a concat of branches; layers the
# planner does not know (sigmoid, dropout, leaky_relu, avg pooling); a second output that
# also feeds another node.
BRANCHES = graph([
    conv("c1", "image", 3, 4), node("r1", "relu", ["c1"]),
    conv("x1", "r1", 4, 4), node("x2", "max_pool2d", ["r1"], kernel_size=3, stride=1,
                                 padding=1),
    node("x3", "sigmoid", ["r1"]), node("sum3", "add", ["x1", "x2", "x3"]),
    node("cat", "concat", ["sum3", "r1"]), node("drop", "dropout", ["cat"], p=0.25, seed=1),
    node("lr", "leaky_relu", ["drop"]), node("avg", "avg_pool2d", ["lr"], kernel_size=2),
    node("feat", "flatten", ["avg"]),
    node("fc", "linear", ["feat"], in_features=128, out_features=4)], ["fc", "avg"])

# Two graph inputs; one node read by both a conv and the output head.
TWO_INPUTS = graph([
    conv("ca", "a", 2, 4), conv("cb", "b", 2, 4), node("m", "add", ["ca", "cb"]),
    node("bn", "batch_norm2d", ["m"], num_features=4), conv("c2", "bn", 4, 4),
    node("t", "tanh", ["c2"]), node("s", "add", ["t", "bn"]), node("f", "flatten", ["s"]),
    node("fc", "linear", ["f"], in_features=64, out_features=2)], ["fc"],
    inputs={"a": [2, 4, 4], "b": [2, 4, 4]})

# Max pooling straight after a conv (its input is kept for nothing else: it keeps its argmax)
# and after a ReLU (kept for the ReLU's backward: it recomputes the argmax instead).
POOLS = graph([
    conv("c1", "image", 3, 4), node("p1", "max_pool2d", ["c1"], kernel_size=2),
    conv("c2", "p1", 4, 4), node("r2", "relu", ["c2"]),
    node("p2", "max_pool2d", ["r2"], kernel_size=3, stride=2, padding=1),
    node("f", "flatten", ["p2"]), node("fc", "linear", ["f"], in_features=16, out_features=3)],
    ["fc"])

GRAPHS = {"chain": CHAIN, "residual": RESIDUAL, "branches": BRANCHES, "two_inputs": TWO_INPUTS,
          "pools": POOLS}


def feeds(model, n, seed):
    rng = np.random.default_rng(seed)
    xs = {k: rng.standard_normal((n, *s)).astype(model.dtype) for k, s in model.inputs.items()}
    return xs if len(xs) > 1 else next(iter(xs.values()))


def output_grads(model, n, seed):
    rng = np.random.default_rng(seed + 100)
    gs = {o: rng.standard_normal((n, *model.shapes[o])).astype(model.dtype)
          for o in model.outputs}
    return gs if len(gs) > 1 else next(iter(gs.values()))


def as_list(v):
    return [v[k] for k in sorted(v)] if isinstance(v, dict) else [v]


def poison_dead_memory(model, plan, step):
    """Fill every arena byte that no planned array live at `step` or later covers with NaN
    bytes: an array the plan lets die too early is then read as garbage."""
    runner = model._runner()
    arena = runner.arena
    base = -arena.ctypes.data % 64
    keep = np.zeros(plan.nbytes, bool)
    for b in plan.buffers:
        if b.end >= step and b.start <= step:
            keep[b.offset:b.offset + b.nbytes] = True
    view = arena[base:base + plan.nbytes]
    view[~keep] = 0xFF  # float NaNs, int64 -1 (an index max pooling refuses)


def run_steps(cfg, batches, poison=False, need_input_grad=True):
    """Outputs, input gradients, parameter gradients and buffers of a few training steps."""
    model = Model.from_config(cfg)
    results = []
    for k, n in enumerate(batches):
        x = feeds(model, n, k)
        y = model.forward(x, training=True)
        results += [a.copy() for a in as_list(y)]
        callback = None
        if poison:
            plan = model._memory_plan(n)
            steps = {name: 2 * len(model._order) - 1 - i for i, name in enumerate(model._order)}
            poison_dead_memory(model, plan, len(model._order))  # between forward and backward

            def callback(name):
                poison_dead_memory(model, plan, steps[name] + 1)
        gx = model.backward(output_grads(model, n, k), need_input_grad=need_input_grad,
                            layer_done=callback)
        if need_input_grad:
            results += [a.copy() for a in as_list(gx)]
        results += [g.copy() for _, g in sorted(model.grads.items())]
        results += [b.copy() for _, b in sorted(model.buffers.items())]
        results += [a.copy() for a in as_list(model.forward(x, training=False))]
    return results


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_two_arrays_live_at_once_share_memory(name, dtype):
    model = Model.from_config(dict(GRAPHS[name], dtype=dtype))
    for n in (1, 3):
        plan = plan_memory(model, n)
        assert plan.buffers
        for i, a in enumerate(plan.buffers):
            assert a.offset % 64 == 0 and a.offset + a.nbytes <= plan.nbytes
            for b in plan.buffers[i + 1:]:
                if a.start <= b.end and b.start <= a.end:  # live at a common step
                    assert (a.offset + a.nbytes <= b.offset
                            or b.offset + b.nbytes <= a.offset), (a, b)


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("need_input_grad", [True, False])
def test_planned_runs_match_unplanned_runs_bit_for_bit_with_dead_memory_poisoned(
        name, need_input_grad, monkeypatch):
    batches = [3, 2, 3]  # a new batch size re-plans; going back reuses the first plan
    planned = run_steps(GRAPHS[name], batches, poison=True, need_input_grad=need_input_grad)
    monkeypatch.setattr(model_module, "PLAN_MEMORY", False)
    unplanned = run_steps(GRAPHS[name], batches, need_input_grad=need_input_grad)
    assert len(planned) == len(unplanned)
    for a, b in zip(planned, unplanned):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_the_plan_shares_memory_between_activations_and_gradients():
    model = Model.from_config(CHAIN)
    plan = plan_memory(model, 4)
    everything = sum(b.nbytes for b in plan.buffers)
    assert plan.nbytes < everything
    model.forward(feeds(model, 4, 0))
    runner = model._runner()
    assert runner.arena is not None
    c2 = model.nodes["c2"]
    assert np.shares_memory(c2._planned["y"], runner.arena)
    assert np.shares_memory(c2._planned["grad_x"], runner.arena)


def test_max_pooling_recomputes_its_argmax_only_where_its_input_is_kept_anyway(monkeypatch):
    model = Model.from_config(POOLS)
    assert model.nodes["p1"].keep_argmax and not model.nodes["p2"].keep_argmax
    kinds = {(b.node, b.key): b.kind for b in plan_memory(model, 2).buffers}
    assert kinds[("p1", "argmax")] == "saved"
    assert kinds[("p2", "argmax")] == kinds[("p2", "argmax_again")] == "temporary"
    assert Model.from_config(CHAIN).nodes["p1"].keep_argmax is False  # after a fused ReLU
    monkeypatch.setattr(model_module, "PLAN_MEMORY", False)
    assert Model.from_config(POOLS).nodes["p2"].keep_argmax


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_three_way_fan_out_gradient_sums(dtype):
    """h = stem(x) feeds three linear layers whose outputs are added: dL/dh is the sum of the
    three input gradients, checked against a float64 computation by hand."""
    cfg = {"inputs": {"x": [6]}, "outputs": ["sum"], "seed": 2, "dtype": dtype, "nodes": [
        node("stem", "linear", ["x"], in_features=6, out_features=5),
        node("h", "relu", ["stem"]),
        node("a", "linear", ["h"], in_features=5, out_features=4),
        node("b", "linear", ["h"], in_features=5, out_features=4),
        node("c", "linear", ["h"], in_features=5, out_features=4),
        node("sum", "add", ["a", "b", "c"])]}
    model = Model.from_config(cfg)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6)).astype(dtype)
    g = rng.standard_normal((3, 4)).astype(dtype)
    model.forward(x)
    model.backward(g)
    p = {k: v.astype(np.float64) for k, v in model.params.items()}
    pre = x.astype(np.float64) @ p["stem.weight"].T + p["stem.bias"]
    grad_h = sum(g.astype(np.float64) @ p[f"{k}.weight"] for k in "abc")
    grad_pre = grad_h * (pre > 0)
    expected = grad_pre.T @ x.astype(np.float64)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(model.grads["stem.weight"], expected, rtol=tol, atol=tol)
    # the sum went into planned memory in place: no gradient-sum buffer of its own
    assert model._runner().acc == {}


def test_a_second_backward_after_one_forward_is_refused():
    model = Model.from_config(CHAIN)
    x = feeds(model, 2, 0)
    model.forward(x)
    g = output_grads(model, 2, 0)
    model.backward(g)
    with pytest.raises(RuntimeError, match="backward called twice after one forward"):
        model.backward(g)
    model.forward(x)
    model.backward(g)  # a new forward makes backward possible again


def test_a_backward_refused_for_a_bad_grad_y_can_be_retried():
    model = Model.from_config(CHAIN)
    model.forward(feeds(model, 2, 0))
    with pytest.raises(ValueError, match="gradient for output"):
        model.backward(np.zeros((2, 7), np.float32))
    model.backward(output_grads(model, 2, 0))


def test_each_thread_plans_into_its_own_arena():
    model = Model.from_config(RESIDUAL)
    x = feeds(model, 2, 0)
    expected = model.forward(x, training=False).copy()
    seen = {}

    def work():
        seen["y"] = model.forward(x, training=False).copy()
        seen["runner"] = model._runner()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    mine, theirs = model._runner(), seen["runner"]
    np.testing.assert_array_equal(seen["y"], expected)
    assert theirs.arena is not None and not np.shares_memory(theirs.arena, mine.arena)
    for name, layer in theirs.layers.items():
        for view in layer._planned.values():
            assert np.shares_memory(view, theirs.arena)
            assert not np.shares_memory(view, mine.arena)


def tiny_model():
    """conv (fed by the input) -> relu -> flatten -> linear, batch 2, float32."""
    return Model.from_config({"inputs": {"x": [1, 4, 4]}, "outputs": ["fc"], "seed": 0, "nodes": [
        node("c", "conv2d", ["x"], in_channels=1, out_channels=2, kernel_size=3, padding=1),
        node("r", "relu", ["c"]), node("f", "flatten", ["r"]),
        node("fc", "linear", ["f"], in_features=32, out_features=3)]})


def test_memory_estimate_of_a_tiny_model_by_hand():
    # Steps: forward c 0, r 1, f 2, fc 3; backward fc 4, f 5, r 6, c 7.  One image's
    # (2, 4, 4) float32 map is 128 bytes, so 256 bytes at batch 2:
    #   c's output   [0, 1]: read by r's forward only (ReLU keeps its output, not its input)
    #   r's output   [1, 6]: kept by ReLU's backward, and by linear through flatten's view
    #   fc's grad_x  [4, 6]: read (reshaped by flatten) by r's backward
    #   r's grad_x   [6, 7]: read by c's backward
    # c's input gradient goes to the caller and fc's output too: not planned (fc's output
    # is 2 x 3 x 4 = 24 bytes of activations of its own).  At most three arrays are live at
    # once (step 6), so the arena is 3 x 256 bytes; what forward keeps for backward is r's
    # output (256) and fc's output (24).
    est = tiny_model().memory_estimate(2)
    assert est["activations"] == 256 + 24
    assert est["gradients"] == 3 * 256 - 256
    assert est["total"] == est["activations"] + est["gradients"] + est["workspace"]


def test_summary_shows_the_training_memory_line():
    model = tiny_model()
    est = model.memory_estimate(128)
    text = model.summary()
    line = next(s for s in text.splitlines() if s.startswith("Training memory"))
    mib = 2.0 ** 20
    assert f"batch 128" in line
    assert f"activations {est['activations'] / mib:.2f} MiB" in line
    assert f"gradients {est['gradients'] / mib:.2f} MiB" in line


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_memory_estimate_refuses_bad_batch_sizes(bad):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        tiny_model().memory_estimate(bad)
