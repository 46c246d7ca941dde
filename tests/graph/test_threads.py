"""One Model shared between threads: inference is re-entrant, concurrent training is refused."""
import copy
import sys
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cnnframe.graph import Model
from cnnframe.layers import Layer

THREADS = 8


def small_model():
    """conv -> relu -> max pool -> conv -> relu -> flatten -> linear."""
    return Model.from_config({
        "input_shape": [3, 8, 8], "seed": 0,
        "layers": [
            {"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3,
             "padding": 1},
            {"type": "relu"},
            {"type": "max_pool2d", "kernel_size": 2},
            {"type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 3,
             "padding": 1},
            {"type": "relu"},
            {"type": "flatten"},
            {"type": "linear", "in_features": 64, "out_features": 5},
        ]})


def residual_model():
    """A residual block with batch norm (fused with its ReLU by the Model) and pooling."""
    conv = {"out_channels": 6, "kernel_size": 3, "padding": 1, "bias": False}
    model = Model.from_config({
        "inputs": {"image": [3, 8, 8]}, "seed": 1,
        "nodes": [
            {"name": "stem", "type": "conv2d", "config": dict(conv, in_channels=3)},
            {"name": "stem_bn", "type": "batch_norm2d", "config": {"num_features": 6}},
            {"name": "stem_act", "type": "relu"},
            {"name": "pool", "type": "max_pool2d", "config": {"kernel_size": 2}},
            {"name": "conv_a", "type": "conv2d", "config": dict(conv, in_channels=6)},
            {"name": "bn_a", "type": "batch_norm2d", "config": {"num_features": 6}},
            {"name": "act_a", "type": "relu"},
            {"name": "conv_b", "type": "conv2d", "config": dict(conv, in_channels=6)},
            {"name": "residual", "type": "add", "inputs": ["conv_b", "pool"]},
            {"name": "act_out", "type": "relu"},
            {"name": "avg", "type": "avg_pool2d", "config": {"kernel_size": 2}},
            {"name": "flat", "type": "flatten"},
            {"name": "fc", "type": "linear", "config": {"in_features": 24, "out_features": 5}},
        ]})
    assert model.nodes["stem_bn"].fused_relu and model.nodes["bn_a"].fused_relu
    # Running statistics away from their initial 0 / 1, so eval mode has work to do.
    rng = np.random.default_rng(7)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith(("running_mean", ".bias")):
            state[key] = rng.normal(0.0, 0.3, value.shape)
    model.load_state_dict(state)
    return model


MODELS = {"small": small_model, "residual": residual_model}


def batches(count, seed=0, n=4):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 3, 8, 8)).astype(np.float32) for _ in range(count)]


def run_in_threads(work, count=THREADS):
    """work(i) in `count` threads started together; the results in order (errors re-raised)."""
    start = threading.Barrier(count)

    def task(i):
        start.wait()
        return work(i)
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(task, range(count)))


@pytest.fixture
def fast_switching():
    """Make the interpreter switch threads every microsecond, so calls interleave a lot."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


class Gate(Layer):
    """Passes its input through; in the thread `hold` it stops until `go` is set."""

    aliases = True

    def __init__(self):
        super().__init__()
        self.hold = None
        self.arrived = threading.Event()
        self.go = threading.Event()

    def forward(self, x, training=True):
        if threading.current_thread() is self.hold:
            self.arrived.set()
            assert self.go.wait(30), "the test never released the gate"
        return x

    def backward(self, grad_y):
        return grad_y


def gated_model():
    """conv -> relu -> gate -> conv -> relu -> flatten -> linear.  The first ReLU writes into a
    buffer the model reuses across calls; a thread stopped at the gate still needs its value."""
    from cnnframe.layers import Conv2d, Flatten, Linear, ReLU
    gate = Gate()
    nodes = [("conv1", Conv2d(3, 4, 3, padding=1, seed=1), ["x"]), ("act1", ReLU(), ["conv1"]),
             ("gate", gate, ["act1"]), ("conv2", Conv2d(4, 4, 3, padding=1, seed=2), ["gate"]),
             ("act2", ReLU(), ["conv2"]), ("flat", Flatten(), ["act2"]),
             ("fc", Linear(256, 3, seed=3), ["flat"])]
    model = Model({"x": (3, 8, 8)}, nodes)
    assert model.nodes["act1"].reuse_buffers
    rng = np.random.default_rng(3)
    return model, gate, [rng.standard_normal((2, 3, 8, 8)).astype(np.float32) for _ in range(2)]


def start_held(gate, target):
    """Run target() in a thread that stops at the gate; return (thread, result box)."""
    box = {}

    def run():
        try:
            box["result"] = target()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
    thread = threading.Thread(target=run, name="held")
    gate.hold = thread
    thread.start()
    assert gate.arrived.wait(30)
    return thread, box


# --- inference from many threads -------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_threads_inference_matches_the_single_threaded_answer(kind, fast_switching):
    model = MODELS[kind]()
    xs = batches(THREADS)
    expected = [model.forward(x, training=False).copy() for x in xs]

    def work(i):
        wrong = 0
        for _ in range(40):
            wrong += not np.array_equal(model.forward(xs[i], training=False), expected[i])
        return wrong
    assert run_in_threads(work) == [0] * THREADS


def test_a_forward_paused_mid_graph_keeps_its_own_values_while_another_thread_runs():
    model, gate, (x_held, x_other) = gated_model()
    want_held = model.forward(x_held, training=False).copy()
    want_other = model.forward(x_other, training=False).copy()
    thread, box = start_held(gate, lambda: model.forward(x_held, training=False))
    try:  # while "held" waits after conv1, this thread runs the whole graph
        np.testing.assert_array_equal(model.forward(x_other, training=False), want_other)
    finally:
        gate.go.set()
        thread.join(30)
    assert "error" not in box
    np.testing.assert_array_equal(box["result"], want_held)


def test_threads_see_weights_changed_after_their_copies_exist():
    model = small_model()
    xs = batches(4, seed=1)
    with ThreadPoolExecutor(4) as pool:  # the same worker threads throughout
        list(pool.map(lambda x: model.forward(x, training=False), xs))  # copies made here
        rng = np.random.default_rng(5)
        model.load_state_dict({k: rng.standard_normal(v.shape) for k, v in
                               model.state_dict().items()})
        for p in model.params.values():  # an optimizer-style in-place step on top
            p *= 0.5
        got = list(pool.map(lambda x: model.forward(x, training=False).copy(), xs))
        for x, y in zip(xs, got):
            np.testing.assert_array_equal(y, model.forward(x, training=False))
        model.astype("float64")  # arrays replaced: the threads' copies are remade
        got = list(pool.map(lambda x: model.forward(x, training=False).copy(), xs))
    for x, y in zip(xs, got):
        assert y.dtype == np.float64
        np.testing.assert_array_equal(y, model.forward(x, training=False))


def test_inference_in_a_worker_thread_reuses_its_buffers():
    """A warm call in a worker thread allocates no more than one in the model's own thread
    (fresh copies per call would page in a new 64 KiB buffer for each internal node)."""
    model = Model.from_config({
        "input_shape": [8, 16, 16], "seed": 0,
        "layers": [{"type": "conv2d", "in_channels": 8, "out_channels": 8, "kernel_size": 3,
                    "padding": 1},
                   {"type": "relu"},
                   {"type": "conv2d", "in_channels": 8, "out_channels": 8, "kernel_size": 3,
                    "padding": 1},
                   {"type": "global_avg_pool2d"}]})
    x = np.random.default_rng(0).standard_normal((8, 8, 16, 16)).astype(np.float32)

    def peak_bytes_of_a_warm_call():
        model.forward(x, training=False)
        model.forward(x, training=False)
        tracemalloc.start()
        try:
            model.forward(x, training=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    own = peak_bytes_of_a_warm_call()  # this thread runs on the model's own layers
    with ThreadPoolExecutor(1) as pool:
        worker = pool.submit(peak_bytes_of_a_warm_call).result()
    assert worker <= own + 1024


def test_a_deep_copy_of_a_model_runs_on_its_own():
    model = small_model()
    x = batches(1)[0]
    twin = copy.deepcopy(model)
    np.testing.assert_array_equal(twin.forward(x, training=False),
                                  model.forward(x, training=False))
    twin.params["linear_1.bias"] += 1
    assert not np.array_equal(twin.forward(x, training=False), model.forward(x, training=False))


# --- the training path ---------------------------------------------------------------------------

@pytest.mark.parametrize("call", ["forward", "backward"])
def test_training_call_while_another_thread_is_inside_one_is_refused(call):
    model, gate, (x_held, x_other) = gated_model()
    model.forward(x_other, training=True)  # so this thread has something to backpropagate
    thread, box = start_held(gate, lambda: model.forward(x_held, training=True))
    try:
        with pytest.raises(RuntimeError, match="while thread 'held' is inside") as info:
            if call == "forward":
                model.forward(x_other, training=True)
            else:
                model.backward(np.ones((2, 3), np.float32))
        assert "forward(x, training=False), which is thread-safe" in str(info.value)
        # inference is still allowed meanwhile
        model.forward(x_other, training=False)
    finally:
        gate.go.set()
        thread.join(30)
    assert "error" not in box


def test_backward_after_another_threads_training_forward_is_refused():
    model = small_model()
    x, x_other = batches(2)
    model.forward(x, training=True)
    worker = threading.Thread(target=lambda: model.forward(x_other, training=True),
                              name="other-trainer")
    worker.start()
    worker.join()
    with pytest.raises(RuntimeError, match="thread 'other-trainer' ran forward"):
        model.backward(np.ones((4, 5), np.float32))


def test_backward_in_a_thread_without_a_forward_is_refused():
    model = small_model()
    model.forward(batches(1)[0], training=True)
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(RuntimeError, match="before forward in thread"):
            pool.submit(model.backward, np.ones((4, 5), np.float32)).result()


def test_threads_taking_turns_train_as_one_thread_would(ce):
    labels = np.arange(4) % 5

    def steps(model, xs, in_threads):
        lock = threading.Lock()

        def step(x):
            with lock:
                loss, g = ce(model.forward(x, training=True), labels)
                model.backward(g, need_input_grad=False)
                for k, p in model.params.items():
                    p -= 0.05 * model.grads[k]
        if in_threads:
            with ThreadPoolExecutor(3) as pool:
                for x in xs:  # one step at a time, each in whichever worker takes it
                    pool.submit(step, x).result()
        else:
            for x in xs:
                step(x)
        return model.state_dict()
    xs = batches(6, seed=2)
    alone, shared = steps(residual_model(), xs, False), steps(residual_model(), xs, True)
    assert alone.keys() == shared.keys()
    for k in alone:
        np.testing.assert_array_equal(shared[k], alone[k], err_msg=k)


def test_trainer_predict_from_many_threads_matches(fast_switching):
    from cnnframe.train import Trainer
    model = residual_model()
    trainer = Trainer(model, "softmax_cross_entropy", None, progress=False)
    xs = batches(THREADS, seed=4, n=6)
    expected = [trainer.predict(x, batch_size=4) for x in xs]
    got = run_in_threads(lambda i: [trainer.predict(xs[i], batch_size=4) for _ in range(10)])
    for want, results in zip(expected, got):
        for y in results:
            np.testing.assert_array_equal(y, want)


# --- Layer.thread_copy ---------------------------------------------------------------------------

class DictCache(Layer):
    """Keeps its per-call state in a dict it changes in place."""

    def __init__(self):
        super().__init__()
        self.cache = {}

    def forward(self, x, training=True):
        self.cache["x"] = x
        return 2 * x

    def backward(self, grad_y):
        return 2 * grad_y


def test_thread_copy_shares_parameters_and_owns_its_caches():
    from cnnframe.layers import Conv2d
    conv = Conv2d(3, 4, 3, seed=0)
    conv.reuse_buffers = True
    x = batches(1)[0]
    conv.forward(x)
    twin = conv.thread_copy()
    assert twin.params is conv.params and twin.params["weight"] is conv.params["weight"]
    assert twin.grads is conv.grads and twin._scratch == {}
    with pytest.raises(RuntimeError, match="backward called before forward"):
        twin.backward(np.ones((4, 4, 6, 6), np.float32))
    y_conv, y_twin = conv.forward(x), twin.forward(2 * x)
    assert not np.may_share_memory(y_conv, y_twin)
    layer = DictCache()
    copy_ = layer.thread_copy()
    a, b = np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32)
    layer.forward(a)
    copy_.forward(b)
    assert layer.cache["x"] is a and copy_.cache["x"] is b
