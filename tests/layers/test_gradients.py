"""Every built-in layer: float64 central finite differences vs backward (input and params)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnframe.registry import get_layer
from hypothesis_budget import scaled

small = st.integers(1, 3)


def build(name, **cfg):
    return get_layer(name).from_config(cfg)


def data(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


@settings(max_examples=scaled(15))
@given(n=small, cin=small, cout=small, hw=st.integers(3, 6), k=st.integers(1, 3),
       stride=st.integers(1, 2), padding=st.integers(0, 1), dilation=st.integers(1, 2),
       groups=st.sampled_from([1, 2]), bias=st.booleans(), seed=st.integers(0, 99))
def test_conv2d_grads(gradcheck, n, cin, cout, hw, k, stride, padding, dilation, groups,
                      bias, seed):
    cin, cout = cin * groups, cout * groups
    if dilation * (k - 1) + 1 > hw + 2 * padding:
        dilation = 1
    layer = build("conv2d", in_channels=cin, out_channels=cout, kernel_size=k, stride=stride,
                  padding=padding, dilation=dilation, groups=groups, bias=bias, seed=seed)
    y = gradcheck(layer, data(seed, n, cin, hw, hw), seed)
    assert y.shape[1:] == layer.output_shape((cin, hw, hw))


@settings(max_examples=scaled(12))
@given(name=st.sampled_from(["max_pool2d", "avg_pool2d"]), n=small, c=small,
       hw=st.integers(2, 6), k=st.integers(1, 3), stride=st.sampled_from([None, 1, 2]),
       pad=st.integers(0, 1), seed=st.integers(0, 99))
def test_pool_grads(gradcheck, name, n, c, hw, k, stride, pad, seed):
    pad = min(pad, k // 2)
    k = min(k, hw)
    layer = build(name, kernel_size=k, stride=stride, padding=pad)
    y = gradcheck(layer, data(seed, n, c, hw, hw), seed)
    assert y.shape[1:] == layer.output_shape((c, hw, hw))


@settings(max_examples=scaled(10))
@given(n=small, c=small, h=st.integers(1, 4), w=st.integers(1, 4), seed=st.integers(0, 99))
def test_global_avg_pool_grads(gradcheck, n, c, h, w, seed):
    layer = build("global_avg_pool2d")
    y = gradcheck(layer, data(seed, n, c, h, w), seed)
    assert y.shape == (n, c)


@settings(max_examples=scaled(10))
@given(n=small, fin=st.integers(1, 6), fout=st.integers(1, 5), bias=st.booleans(),
       init=st.sampled_from(["he_normal", "xavier_uniform", "lecun_uniform"]),
       seed=st.integers(0, 99))
def test_linear_grads(gradcheck, n, fin, fout, bias, init, seed):
    layer = build("linear", in_features=fin, out_features=fout, bias=bias, init=init, seed=seed)
    y = gradcheck(layer, data(seed, n, fin), seed)
    assert y.shape == (n, fout)


@settings(max_examples=scaled(12))
@given(name=st.sampled_from(["relu", "leaky_relu", "sigmoid", "tanh", "flatten", "identity"]),
       shape=st.lists(st.integers(1, 3), min_size=2, max_size=4), seed=st.integers(0, 99))
def test_elementwise_grads(gradcheck, name, shape, seed):
    layer = build(name, **({"negative_slope": 0.2} if name == "leaky_relu" else {}))
    x = data(seed, *shape)
    y = gradcheck(layer, x, seed)
    assert y.shape[1:] == layer.output_shape(shape[1:])


@settings(max_examples=scaled(10))
@given(shape=st.lists(st.integers(1, 3), min_size=2, max_size=4), seed=st.integers(0, 99),
       data_=st.data())
def test_softmax_grads(gradcheck, shape, seed, data_):
    axis = data_.draw(st.sampled_from(list(range(1, len(shape))) + [-1]))
    layer = build("softmax", axis=axis)
    y = gradcheck(layer, data(seed, *shape) * 3, seed)
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-12)


@settings(max_examples=scaled(10))
@given(n=st.integers(2, 4), c=small, hw=st.integers(1, 3), training=st.booleans(),
       seed=st.integers(0, 99))
def test_batch_norm2d_grads(gradcheck, n, c, hw, training, seed):
    layer = build("batch_norm2d", num_features=c)
    r = np.random.default_rng(seed)
    layer.astype(np.float64)
    layer.params["weight"][:] = r.uniform(0.5, 2, c)
    layer.params["bias"][:] = r.standard_normal(c)
    layer.buffers["running_mean"][:] = r.standard_normal(c)
    layer.buffers["running_var"][:] = r.uniform(0.5, 2, c)
    gradcheck(layer, data(seed, n, c, hw, hw), seed, training=training)


@settings(max_examples=scaled(8))
@given(n=st.integers(2, 4), c=small, length=st.sampled_from([None, 1, 3]),
       training=st.booleans(), seed=st.integers(0, 99))
def test_batch_norm1d_grads(gradcheck, n, c, length, training, seed):
    layer = build("batch_norm1d", num_features=c, eps=1e-3, momentum=0.2)
    layer.astype(np.float64)
    layer.params["weight"][:] = np.random.default_rng(seed).uniform(0.5, 2, c)
    shape = (n, c) if length is None else (n, c, length)
    gradcheck(layer, data(seed, *shape), seed, training=training)


@settings(max_examples=scaled(8))
@given(shape=st.lists(st.integers(1, 3), min_size=2, max_size=4), p=st.sampled_from([0.0, 0.3, 0.7]),
       seed=st.integers(0, 99))
def test_dropout_grads(gradcheck, shape, p, seed):
    layer = build("dropout", p=p, seed=seed)
    gradcheck(layer, data(seed, *shape), seed)


@settings(max_examples=scaled(8))
@given(k=st.integers(2, 3), shape=st.lists(st.integers(1, 3), min_size=2, max_size=4),
       seed=st.integers(0, 99))
def test_add_grads(gradcheck, k, shape, seed):
    xs = [data(seed + i, *shape) for i in range(k)]
    y = gradcheck(build("add"), xs, seed)
    np.testing.assert_allclose(y, sum(xs))


@settings(max_examples=scaled(8))
@given(sizes=st.lists(st.integers(1, 3), min_size=2, max_size=3), axis=st.sampled_from([1, 2, -1]),
       seed=st.integers(0, 99))
def test_concat_grads(gradcheck, sizes, axis, seed):
    shapes = []
    for s in sizes:
        shape = [2, 2, 3]
        shape[axis] = s
        shapes.append(shape)
    xs = [data(seed + i, *s) for i, s in enumerate(shapes)]
    layer = build("concat", axis=axis)
    y = gradcheck(layer, xs, seed)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    assert y.shape[1:] == layer.output_shape([s[1:] for s in shapes])


@pytest.mark.parametrize("name", ["conv2d", "linear", "batch_norm2d"])
def test_needs_input_grad_false_skips_grad_x_but_fills_param_grads(rng, name):
    cfg = {"conv2d": dict(in_channels=2, out_channels=3, kernel_size=3, seed=0),
           "linear": dict(in_features=4, out_features=3, seed=0),
           "batch_norm2d": dict(num_features=2)}[name]
    shape = {"conv2d": (2, 2, 5, 5), "linear": (2, 4), "batch_norm2d": (3, 2, 2, 2)}[name]
    full, skip = build(name, **cfg), build(name, **cfg)
    skip.needs_input_grad = False
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(full.forward(x).shape).astype(np.float32)
    skip.forward(x)
    assert full.backward(g) is not None and skip.backward(g) is None
    for k in full.grads:
        np.testing.assert_allclose(skip.grads[k], full.grads[k], rtol=1e-6)


def test_the_checker_catches_a_wrong_gradient(gradcheck):
    from cnnframe.layers import Layer

    class Square(Layer):
        def forward(self, x, training=True):
            self._x = x
            return x * x

        def backward(self, grad_y):
            return grad_y * self._x  # wrong: missing the factor 2

    with pytest.raises(AssertionError):
        gradcheck(Square(), data(0, 2, 3))
