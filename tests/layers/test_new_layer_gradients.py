"""The layers of issue 18: float64 central finite differences vs backward (input and params)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnframe.registry import get_layer
from hypothesis_budget import scaled

small = st.integers(1, 3)


def build(name, **cfg):
    return get_layer(name).from_config(cfg)


def data(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


def randomise(layer, seed):
    """Parameters away from their initial 1 / 0 so every term of the gradient shows."""
    rng = np.random.default_rng([seed, 1])
    layer.astype(np.float64)
    for p in layer.params.values():
        p[...] = rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1, 1], p.shape)
    return layer


@settings(max_examples=scaled(10))
@given(n=small, groups=small, per_group=small, hw=st.integers(1, 4), affine=st.booleans(),
       seed=st.integers(0, 99))
def test_group_norm_grads(gradcheck, n, groups, per_group, hw, affine, seed):
    c = groups * per_group
    if per_group * hw * hw < 2:
        hw = 2   # a group of one value has zero variance: the gradient is eps-dominated
    layer = randomise(build("group_norm", num_groups=groups, num_channels=c, affine=affine), seed)
    gradcheck(layer, data(seed, n, c, hw, hw), seed)


@settings(max_examples=scaled(10))
@given(n=small, shape=st.lists(st.integers(2, 4), min_size=1, max_size=3),
       k=st.integers(1, 3), affine=st.booleans(), bias=st.booleans(), seed=st.integers(0, 99))
def test_layer_norm_grads(gradcheck, n, shape, k, affine, bias, seed):
    k = min(k, len(shape))
    layer = randomise(build("layer_norm", normalized_shape=shape[len(shape) - k:],
                            elementwise_affine=affine, bias=bias), seed)
    gradcheck(layer, data(seed, n, *shape), seed)


@settings(max_examples=scaled(10))
@given(n=small, c=small, hw=st.integers(2, 4), affine=st.booleans(), track=st.booleans(),
       training=st.booleans(), seed=st.integers(0, 99))
def test_instance_norm2d_grads(gradcheck, n, c, hw, affine, track, training, seed):
    layer = randomise(build("instance_norm2d", num_features=c, affine=affine,
                            track_running_stats=track), seed)
    if track:
        r = np.random.default_rng(seed)
        layer.buffers["running_mean"][:] = r.standard_normal(c)
        layer.buffers["running_var"][:] = r.uniform(0.5, 2, c)
    gradcheck(layer, data(seed, n, c, hw, hw), seed, training=training)


@settings(max_examples=scaled(15))
@given(name=st.sampled_from(["gelu", "gelu_tanh", "silu", "hardswish", "elu", "prelu"]),
       shape=st.lists(st.integers(1, 3), min_size=2, max_size=4), seed=st.integers(0, 99))
def test_activation_grads(gradcheck, name, shape, seed):
    cfg = {"gelu_tanh": {"approximate": "tanh"}, "elu": {"alpha": 0.6},
           "prelu": {"num_parameters": shape[1]}}.get(name, {})
    layer = randomise(build("gelu" if name == "gelu_tanh" else name, **cfg), seed)
    x = data(seed, *shape) * 2.5
    x[np.abs(np.abs(x) - 3) < 1e-3] += 0.01   # away from hardswish's kinks
    x[np.abs(x) < 1e-3] += 0.01               # and from 0 (elu, prelu)
    gradcheck(layer, x, seed)


@settings(max_examples=scaled(15))
@given(n=small, cin=small, cout=small, hw=st.integers(1, 4), k=st.integers(1, 3),
       stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2),
       output_padding=st.integers(0, 2), groups=st.sampled_from([1, 2]), bias=st.booleans(),
       seed=st.integers(0, 99))
def test_conv_transpose2d_grads(gradcheck, n, cin, cout, hw, k, stride, padding, dilation,
                                output_padding, groups, bias, seed):
    cin, cout = cin * groups, cout * groups
    output_padding = min(output_padding, max(stride, dilation) - 1)
    out = (hw - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
    if out < 1:
        padding = 0
    layer = build("conv_transpose2d", in_channels=cin, out_channels=cout, kernel_size=k,
                  stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                  dilation=dilation, bias=bias, seed=seed)
    y = gradcheck(layer, data(seed, n, cin, hw, hw), seed)
    assert y.shape[1:] == layer.output_shape((cin, hw, hw))


@settings(max_examples=scaled(15))
@given(n=small, c=small, h=st.integers(1, 5), w=st.integers(1, 5), data_=st.data(),
       seed=st.integers(0, 99))
def test_upsample_grads(gradcheck, n, c, h, w, data_, seed):
    mode = data_.draw(st.sampled_from(["nearest", "bilinear"]))
    cfg = data_.draw(st.sampled_from([
        {"scale_factor": 2}, {"scale_factor": [1.5, 2.5]}, {"size": [4, 7]},
        {"size": [2, 3]}]))
    if mode == "bilinear":
        cfg = dict(cfg, mode=mode, align_corners=data_.draw(st.sampled_from([None, True, False])))
    layer = build("upsample", **cfg)
    y = gradcheck(layer, data(seed, n, c, h, w), seed)
    assert y.shape[1:] == layer.output_shape((c, h, w))


@settings(max_examples=scaled(15))
@given(name=st.sampled_from(["adaptive_avg_pool2d", "adaptive_max_pool2d"]), n=small, c=small,
       h=st.integers(1, 7), w=st.integers(1, 7),
       output_size=st.sampled_from([1, 2, 3, [2, None], [None, 4], 5]), seed=st.integers(0, 99))
def test_adaptive_pool_grads(gradcheck, name, n, c, h, w, output_size, seed):
    layer = build(name, output_size=output_size)
    y = gradcheck(layer, data(seed, n, c, h, w), seed)
    assert y.shape[1:] == layer.output_shape((c, h, w))


@settings(max_examples=scaled(8))
@given(n=small, c=small, hw=st.integers(1, 3), p=st.sampled_from([0.0, 0.3, 0.7]),
       seed=st.integers(0, 99))
def test_dropout2d_grads(gradcheck, n, c, hw, p, seed):
    gradcheck(build("dropout2d", p=p, seed=seed), data(seed, n, c, hw, hw), seed)
