"""check_layer: results, kinks, stochastic replay, structural checks, API."""
import numpy as np
import pytest

from cnnframe.gradcheck import GradcheckError, check_layer
from cnnframe.layers.base import Layer
from cnnframe.registry import get_layer


class Relu(Layer):
    def __init__(self, bad_mask=False):
        super().__init__()
        self.bad_mask = bad_mask

    def forward(self, x, training=True):
        self._m = (x >= 0) if self.bad_mask else (x > 0)
        return x * (x > 0)

    def backward(self, grad_y):
        return grad_y * (~self._m if self.bad_mask else self._m)


class Clip(Layer):
    def forward(self, x, training=True):
        self._m = (x > -1) & (x < 1)
        return np.clip(x, -1, 1)

    def backward(self, grad_y):
        return grad_y * self._m


class Noise(Layer):
    """Multiplies by random noise drawn in forward; `use_global` breaks the protocol."""
    stochastic = True

    def __init__(self, seed=0, use_global=False):
        super().__init__()
        self.seed, self.use_global = seed, use_global
        self.rng = np.random.default_rng(seed)

    def forward(self, x, training=True):
        if not training:
            return x.copy()
        draw = np.random.standard_normal if self.use_global else self.rng.standard_normal
        self._noise = draw(x.shape).astype(x.dtype)
        return x * self._noise

    def backward(self, grad_y):
        return grad_y * self._noise


class Scale(Layer):
    """y = w * x with a per-channel weight; knobs plant structural problems."""
    def __init__(self, channels=3, problem=None):
        super().__init__()
        self.channels, self.problem = channels, problem
        self.add_param("w", np.linspace(0.5, 1.5, channels))

    def output_shape(self, s):
        return (s[0] + 1,) + tuple(s[1:]) if self.problem == "shape" else tuple(s)

    def forward(self, x, training=True):
        self._x = x
        w = self.params["w"].reshape(1, -1, 1, 1)
        if self.problem == "eval_random" and not training:
            return x * w + np.random.default_rng().standard_normal() * 1e-3
        if self.problem == "float32":
            return (x * w).astype(np.float32)
        if self.problem == "forward_inplace":
            x *= 1.0 + 1e-12
        return x * w

    def backward(self, grad_y):
        gx = grad_y * self.params["w"].reshape(1, -1, 1, 1)
        gw = np.sum(grad_y * self._x, axis=(0, 2, 3))
        if self.problem == "grads_shape":
            self.grads["w"] = gw[:-1].copy()
        else:
            self.grads["w"][...] = gw
        if self.problem == "backward_inplace":
            grad_y *= 1.0
            grad_y += 0.0
            grad_y[0, 0, 0, 0] = 0.0
        return gx


def _check(report, name):
    return next(c for c in report.checks if c.name == name)


X = (2, 3, 4, 4)


def test_relu_at_zero_and_maxpool_ties_are_not_failures():
    assert check_layer(Relu(), np.zeros(X)).passed
    # integer-valued inputs: many exact ties in each pooling window
    x = np.random.default_rng(0).integers(0, 3, X).astype(float)
    r = check_layer(get_layer("max_pool2d")(kernel_size=2), x)
    assert r.passed, str(r)
    assert any("off non-differentiable points" in n for n in r.notes)
    assert check_layer(Clip(), np.array([[[[-1.0, 1.0, 0.5, -2.0]]]])).passed


def test_a_wrong_mask_is_still_caught_at_kinks():
    x = np.random.default_rng(1).standard_normal(X)
    x[0, 0] = 0.0
    r = check_layer(Relu(bad_mask=True), x)
    assert not r.passed and r.inputs[0].failed > 0


def test_stochastic_layer_is_replayed_and_global_randomness_is_caught():
    assert check_layer(Noise(), input_shape=X).passed
    r = check_layer(Noise(use_global=True), input_shape=X)
    assert not r.passed and not _check(r, "forward_repeatable").passed, str(r)


def test_many_skipped_kinks_fail_the_target():
    from cnnframe.gradcheck import TargetResult
    assert TargetResult("input", "input", (10, 10), checked=98, skipped=2).passed
    assert not TargetResult("input", "input", (10, 10), checked=90, skipped=10).passed


def test_dropout_checks_in_both_modes():
    for training in (True, False):
        assert check_layer("dropout", config={"p": 0.4}, input_shape=X,
                           training=training).passed


@pytest.mark.parametrize("problem,check", [
    ("shape", "output_shape"), ("eval_random", "eval_deterministic"),
    ("float32", "dtype_preserved"), ("forward_inplace", "forward_keeps_inputs"),
    ("backward_inplace", "backward_keeps_inputs"), ("grads_shape", "grads_match_params")])
def test_structural_problems_are_reported(problem, check):
    r = check_layer(Scale(problem=problem), input_shape=X)
    assert not r.passed
    assert not _check(r, check).passed, str(r)
    assert f"check FAILED: {check}" in str(r)
    assert _check(check_layer(Scale(), input_shape=X), check).passed


def test_report_contents_and_raise():
    class Half(Scale):
        def backward(self, grad_y):
            return super().backward(grad_y) * 0.5
    r = check_layer(Half(), input_shape=X, seed=3)
    assert not r.passed and not bool(r)
    t = r.inputs[0]
    assert t.checked == np.prod(X) and t.failed > 0
    assert 0.3 < t.max_rel_err <= 0.5 + 1e-6
    worst = t.worst[0]
    assert len(worst.index) == 4 and abs(worst.analytic - 0.5 * worst.numeric) < 1e-6
    text = str(r)
    assert "FAILED" in text and "input[n=" in text and "likely cause" in text
    with pytest.raises(GradcheckError) as info:
        r.raise_if_failed()
    assert isinstance(info.value, AssertionError) and "analytic" in str(info.value)
    ok = check_layer(Scale(), input_shape=X)
    assert ok.raise_if_failed() is ok and "passed" in str(ok)


def test_layer_given_by_name_class_or_instance():
    cfg = {"in_channels": 2, "out_channels": 3, "kernel_size": 3}
    by_name = check_layer("conv2d", config=cfg, input_shape=(2, 2, 5, 5))
    by_class = check_layer(get_layer("conv2d"), config=cfg, input_shape=(2, 2, 5, 5))
    assert by_name.passed and by_class.passed
    assert by_name.params["weight"].max_abs_err == by_class.params["weight"].max_abs_err
    with pytest.raises(TypeError, match="config"):
        check_layer(get_layer("conv2d")(**cfg), config=cfg, input_shape=(2, 2, 5, 5))
    with pytest.raises(ValueError, match="input_shape"):
        check_layer("relu")
    with pytest.raises(ValueError, match="mode"):
        check_layer("relu", input_shape=X, mode="exact")


def test_original_layer_is_untouched():
    layer = get_layer("batch_norm2d")(3)
    before = {k: v.copy() for k, v in {**layer.params, **layer.buffers}.items()}
    check_layer(layer, input_shape=(4, 3, 3, 3))
    assert layer.dtype == np.float32
    for k, v in {**layer.params, **layer.buffers}.items():
        assert v.dtype == np.float32 and np.array_equal(v, before[k])


def test_full_and_projection_modes_and_subsampling():
    layer = get_layer("conv2d")(2, 2, 3, padding=1, seed=0)
    full = check_layer(layer, input_shape=(1, 2, 4, 4), mode="full")
    proj = check_layer(layer, input_shape=(1, 2, 4, 4), mode="projections", n_projections=2)
    assert full.settings["mode"] == "full" and full.settings["projections"] == 32
    assert proj.settings["projections"] == 2 and full.passed and proj.passed
    sub = check_layer(layer, input_shape=(2, 2, 8, 8), max_elements=20)
    assert sub.inputs[0].checked == 20 and sub.params["weight"].checked == 20 and sub.passed


def test_float32_layer_is_checked_in_float64():
    layer = get_layer("linear")(4, 3, seed=1)
    r = check_layer(layer, input_shape=(2, 4))
    assert r.passed and r.params["weight"].max_abs_err < 1e-8


class PlantedFactor(Layer):
    """y = 3 x; backward multiplies by `factor`, stored where get_config() cannot see it."""

    def __init__(self, factor=1.0):
        super().__init__()
        self._factor = factor

    def get_config(self):
        return {}

    def forward(self, x, training=True):
        return 3.0 * x

    def backward(self, grad_y):
        return 3.0 * self._factor * grad_y


class HiddenScale(Scale):
    """A correct y = gain * w * x whose gain get_config() leaves out."""

    def __init__(self, channels=3, gain=1.0):
        super().__init__(channels)
        self._gain = gain

    def get_config(self):
        return {"channels": self.channels}

    def forward(self, x, training=True):
        return self._gain * super().forward(x, training)

    def backward(self, grad_y):
        gx = super().backward(self._gain * grad_y)
        return gx


def test_the_very_instance_is_checked_not_one_rebuilt_from_its_config():
    r = check_layer(PlantedFactor(factor=2.0), input_shape=X)
    assert not r.passed and r.inputs[0].failed == np.prod(X), str(r)
    assert "analytic = 2 x numeric" in str(r)
    roundtrip = _check(r, "config_roundtrip")
    assert not roundtrip.passed
    assert roundtrip.detail.startswith("get_config() misses state that changes the layer:")
    assert "input gradient" in roundtrip.detail and "_factor (layer 2.0, rebuilt 1.0)" in \
        roundtrip.detail
    assert check_layer(PlantedFactor(), input_shape=X).passed


def test_config_roundtrip_names_what_differs_when_the_gradients_are_right():
    r = check_layer(HiddenScale(gain=1.5), input_shape=X)
    assert all(t.passed for t in r.targets), str(r)
    roundtrip = _check(r, "config_roundtrip")
    assert not r.passed and not roundtrip.passed
    for what in ("output", "input gradient", "grads['w']", "_gain (layer 1.5, rebuilt 1.0)"):
        assert what in roundtrip.detail, roundtrip.detail
    assert "check FAILED: config_roundtrip: get_config() misses state" in str(r)
    assert _check(check_layer(HiddenScale(), input_shape=X), "config_roundtrip").passed


def test_running_statistics_updated_with_state_missing_from_the_config_are_caught():
    from cnnframe.gradcheck import config_roundtrip_differences
    from cnnframe.layers import BatchNorm2d

    class SlowBatchNorm(BatchNorm2d):
        def __init__(self, num_features, slow=False):
            super().__init__(num_features, momentum=0.01 if slow else 0.1)

        def get_config(self):
            return {"num_features": self.num_features}

    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2))
    layer = SlowBatchNorm(3, slow=True).astype(np.float64)
    diffs = config_roundtrip_differences(layer, x, training=True)
    assert [d.split(":")[0] for d in diffs] == [
        "buffers['running_mean'] after forward", "buffers['running_var'] after forward",
        "attributes that differ"], diffs
    assert "momentum (layer 0.01, rebuilt 0.1)" in diffs[-1]
    assert config_roundtrip_differences(layer, x, training=False) == []
    assert config_roundtrip_differences(SlowBatchNorm(3).astype(np.float64), x) == []


def test_layer_without_a_working_config_is_still_checked_with_a_note():
    class NoConfig(Layer):
        def __init__(self, scale):
            super().__init__()
            self.factor = scale          # not stored under its argument name

        def forward(self, x, training=True):
            return self.factor * x

        def backward(self, grad_y):
            return self.factor * grad_y

    r = check_layer(NoConfig(2.0), input_shape=X)
    assert r.passed, str(r)
    assert "config_roundtrip" not in [c.name for c in r.checks]
    assert any(n.startswith("config round trip not checked: from_config(get_config()) raised "
                            "NotImplementedError") for n in r.notes), r.notes


def test_a_layer_that_cannot_be_deep_copied_gets_a_clear_error():
    import threading

    class Locked(Scale):
        def __init__(self, channels=3):
            super().__init__(channels)
            self.lock = threading.Lock()

    with pytest.raises(TypeError, match=r"Locked: the gradient check runs on "
                       r"copy.deepcopy\(layer\), which failed \(TypeError: cannot pickle"):
        check_layer(Locked(), input_shape=X)
