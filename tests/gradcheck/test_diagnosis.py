"""Planted bugs: each typical backward mistake fails the check and gets its likely cause."""
import numpy as np
import pytest

from cnnframe import functional as F
from cnnframe.gradcheck import check_layer
from cnnframe.layers.base import Layer
from cnnframe.registry import get_layer

Conv2d = get_layer("conv2d")
Linear = get_layer("linear")
AvgPool2d = get_layer("avg_pool2d")


def _conv(**kw):
    cfg = dict(in_channels=3, out_channels=4, kernel_size=3, padding=1, seed=0)
    cfg.update(kw)
    return cfg


class ConvScaledGradX(Conv2d):
    def backward(self, grad_y):
        return super().backward(grad_y) * 2.0


class ConvFlippedKernelInBackward(Conv2d):
    """grad_x computed with the spatially flipped kernel (true convolution)."""
    def backward(self, grad_y):
        w = self.params["weight"]
        gx, gw, gb = F.conv2d_backward(self._x, np.ascontiguousarray(w[..., ::-1, ::-1]),
                                       grad_y, self._s, self._p, self._d, self.groups)
        self.grads["weight"][...] = F.conv2d_backward(self._x, w, grad_y, self._s, self._p,
                                                      self._d, self.groups)[1]
        self.grads["bias"][...] = gb
        return gx


class ConvFlippedWeightGrad(Conv2d):
    def backward(self, grad_y):
        gx = super().backward(grad_y)
        self.grads["weight"][...] = self.grads["weight"][..., ::-1, ::-1].copy()
        return gx


class ConvWeightGradOnePosition(Conv2d):
    """grad_weight assigned in a loop over output positions: only the last survives."""
    def backward(self, grad_y):
        gx = super().backward(grad_y)
        mask = np.zeros_like(grad_y)
        mask[-1, :, -1, -1] = 1
        self.grads["weight"][...] = F.conv2d_backward(self._x, self.params["weight"],
                                                      grad_y * mask, self._s, self._p, self._d,
                                                      self.groups)[1]
        return gx


class ConvReturnsWeightGrad(Conv2d):
    def backward(self, grad_y):
        super().backward(grad_y)
        return self.grads["weight"].copy()


class LinearNegWeightGrad(Linear):
    def backward(self, grad_y):
        gx = super().backward(grad_y)
        self.grads["weight"] *= -1
        return gx


class LinearTransposedWeightGrad(Linear):
    def backward(self, grad_y):
        gx = super().backward(grad_y)
        self.grads["weight"][...] = self.grads["weight"].T.copy()
        return gx


class LinearTransposedWeightInBackward(Linear):
    def backward(self, grad_y):
        super().backward(grad_y)
        return grad_y @ self.params["weight"].T


class LinearLastSampleOnly(Linear):
    """grad_weight overwritten in a loop over the samples."""
    def backward(self, grad_y):
        gx = super().backward(grad_y)
        for n in range(grad_y.shape[0]):
            self.grads["weight"][...] = np.outer(grad_y[n], self._x[n])
        return gx


class LinearMeanOverBatch(Linear):
    def backward(self, grad_y):
        gx = super().backward(grad_y)
        self.grads["weight"] /= grad_y.shape[0]
        return gx


class LinearForgetsBias(Linear):
    def backward(self, grad_y):
        gx = super().backward(grad_y)
        self.grads["bias"][...] = 0
        return gx


class SlidingAvgAssign(AvgPool2d):
    """Overlapping windows; backward assigns each window's share instead of adding it."""
    def forward(self, x, training=True):
        self._shape = x.shape
        return super().forward(x, training)

    def backward(self, grad_y):
        (kh, kw), (sh, sw) = self._k, self._s
        gx = np.zeros(self._shape, grad_y.dtype)
        for i in range(grad_y.shape[2]):
            for j in range(grad_y.shape[3]):
                gx[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] = (
                    grad_y[:, :, i:i + 1, j:j + 1] / (kh * kw))
        return gx


class Multiply(Layer):
    """Element-wise product of two inputs; `swap` plants the wrong-argument bug."""
    num_inputs = None

    def __init__(self, swap=False):
        super().__init__()
        self.swap = swap

    def output_shape(self, shapes):
        return tuple(shapes[0])

    def forward(self, xs, training=True):
        self._xs = xs
        return xs[0] * xs[1]

    def backward(self, grad_y):
        a, b = self._xs
        ga, gb = grad_y * b, grad_y * a
        return [gb, ga] if self.swap else [ga, gb]


def _only_failing(report, names):
    failing = {t.name for t in report.targets if not t.passed}
    assert failing == set(names), str(report)


X = (2, 3, 5, 5)


@pytest.mark.parametrize("mode", ["projections", "full"])
def test_constant_factor(mode):
    r = check_layer(ConvScaledGradX.from_config(_conv(out_channels=1, in_channels=1)),
                    input_shape=(2, 1, 3, 3), mode=mode)
    _only_failing(r, ["input"])
    assert any("constant factor" in d and "analytic = 2 x numeric" in d
               for d in r.inputs[0].diagnoses), str(r)


def test_sign_flipped():
    r = check_layer(LinearNegWeightGrad(5, 4, seed=0), input_shape=(3, 5))
    _only_failing(r, ["weight"])
    assert r.params["weight"].diagnoses[0].startswith("sign flipped"), str(r)


def test_kernel_flipped_weight_grad():
    r = check_layer(ConvFlippedWeightGrad.from_config(_conv()), input_shape=X)
    _only_failing(r, ["weight"])
    assert any(d.startswith("kernel flipped") for d in r.params["weight"].diagnoses), str(r)


def test_kernel_flipped_in_input_grad():
    r = check_layer(ConvFlippedKernelInBackward.from_config(_conv()), input_shape=X)
    _only_failing(r, ["input"])
    assert any("'weight' with its kernel flipped" in d for d in r.inputs[0].diagnoses), str(r)


def test_transposed_weight_grad():
    r = check_layer(LinearTransposedWeightGrad(5, 5, seed=0), input_shape=(3, 5))
    _only_failing(r, ["weight"])
    assert any(d.startswith("transposed") for d in r.params["weight"].diagnoses), str(r)


def test_transposed_weight_used_in_backward():
    r = check_layer(LinearTransposedWeightInBackward(5, 5, seed=0), input_shape=(3, 5))
    _only_failing(r, ["input"])
    assert any("'weight' transposed" in d for d in r.inputs[0].diagnoses), str(r)


def test_missing_batch_accumulation():
    r = check_layer(LinearLastSampleOnly(5, 4, seed=0), input_shape=(3, 5))
    _only_failing(r, ["weight"])
    assert any("missing accumulation over the batch" in d and "last sample" in d
               for d in r.params["weight"].diagnoses), str(r)


def test_mean_instead_of_sum_over_batch():
    r = check_layer(LinearMeanOverBatch(5, 4, seed=0), input_shape=(4, 5))
    _only_failing(r, ["weight"])
    d = " ".join(r.params["weight"].diagnoses)
    assert "constant factor" in d and "batch" in d, str(r)


def test_missing_fan_out_accumulation_in_input_grad():
    r = check_layer(SlidingAvgAssign(kernel_size=3, stride=1), input_shape=(2, 2, 5, 5))
    _only_failing(r, ["input"])
    assert any("missing accumulation over a fan-out" in d for d in r.inputs[0].diagnoses), str(r)


def test_missing_fan_out_accumulation_in_weight_grad():
    r = check_layer(ConvWeightGradOnePosition.from_config(_conv()), input_shape=X)
    _only_failing(r, ["weight"])
    assert any("missing accumulation" in d for d in r.params["weight"].diagnoses), str(r)


def test_gradient_wrt_the_wrong_argument():
    r = check_layer(Multiply(swap=True), input_shape=[(2, 3, 4, 4), (2, 3, 4, 4)])
    _only_failing(r, ["input 0", "input 1"])
    assert "wrt the wrong argument" in r.inputs[0].diagnoses[0] and "input 1" in \
        r.inputs[0].diagnoses[0], str(r)
    assert check_layer(Multiply(), input_shape=[(2, 3, 4, 4), (2, 3, 4, 4)]).passed


def test_gradient_of_wrong_shape_names_the_argument_it_fits():
    r = check_layer(ConvReturnsWeightGrad.from_config(_conv()), input_shape=X)
    assert not r.passed
    assert "shape of parameter 'weight'" in r.inputs[0].error, str(r)


def test_gradient_never_written():
    r = check_layer(LinearForgetsBias(5, 4, seed=0), input_shape=(3, 5))
    _only_failing(r, ["bias"])
    assert "all zeros" in r.params["bias"].diagnoses[0], str(r)


def test_correct_layers_get_no_diagnosis():
    for layer, shape in ((Conv2d.from_config(_conv()), X), (Linear(5, 5, seed=0), (3, 5)),
                         (AvgPool2d(kernel_size=3, stride=1), (2, 2, 5, 5))):
        r = check_layer(layer, input_shape=shape)
        assert r.passed and not r.diagnoses, str(r)
