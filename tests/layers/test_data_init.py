"""Data-dependent initialisers (cnnframe.layers.data_init): the whitening conv of airbench."""
import numpy as np
import pytest

from cnnframe.graph import Model
from cnnframe.layers.data_init import (check_data_inits, init_from_data, patch_covariance,
                                       sample_images, whiten_conv, whitening_weights)


def correlated_images(n=64, c=3, hw=(12, 10), seed=0):
    """Images whose channels and neighbouring pixels are strongly correlated (and not
    centred), so that whitening has work to do."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 1, hw[0] + 1, hw[1] + 1))
    smooth = base[:, :, 1:, 1:] + base[:, :, :-1, :-1] + 0.5 * base[:, :, 1:, :-1]
    mix = rng.standard_normal((c, 1)) + 1.0
    x = smooth * mix[None, :, :, None] + 0.2 * rng.standard_normal((n, c, *hw)) + 0.3
    return x.astype(np.float32)


def model_with_whitening(k=2, out_channels=24, in_channels=3, **conv):
    return Model.from_config({"input_shape": [in_channels, 12, 10], "seed": 0, "layers": [
        {"name": "whiten", "type": "conv2d", "in_channels": in_channels,
         "out_channels": out_channels, "kernel_size": k, **conv},
        {"type": "gelu"}, {"type": "flatten"}]})


def patches_by_loops(x, k):
    """Every (k x k) patch in (C, KH, KW) order, by plain loops (the oracle)."""
    n, c, h, w = x.shape
    rows = [x[i, :, r:r + k, s:s + k].reshape(-1)
            for i in range(n) for r in range(h - k + 1) for s in range(w - k + 1)]
    return np.array(rows, np.float64)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_patch_covariance_is_the_mean_outer_product_of_the_patches(k):
    x = correlated_images(n=5)
    p = patches_by_loops(x, k)
    np.testing.assert_allclose(patch_covariance(x, k), p.T @ p / len(p), rtol=1e-10, atol=1e-12)


def test_patch_covariance_in_chunks_equals_all_at_once(monkeypatch):
    import cnnframe.layers.data_init as data_init
    x = correlated_images(n=9)
    whole = patch_covariance(x, 2)
    monkeypatch.setattr(data_init, "_CHUNK_VALUES", 1)  # one image per chunk
    np.testing.assert_allclose(patch_covariance(x, 2), whole, rtol=1e-12)


@pytest.mark.parametrize("k,dilation", [(2, 1), (3, 1), (2, 2)])
def test_the_whitened_patches_have_identity_covariance(k, dilation):
    """The conv's first half of outputs (before the activation), over every patch of the
    images: covariance lambda / (lambda + eps), i.e. the identity up to eps; the second half
    is the negative of the first."""
    x = correlated_images()
    eps = 1e-7
    dim = 3 * k * k
    model = model_with_whitening(k=k, out_channels=2 * dim, dilation=dilation)
    whiten_conv(model, "whiten", x, eps=eps)
    y = model.nodes["whiten"].forward(x)  # (N, 2D, OH, OW)
    y = y.transpose(0, 2, 3, 1).reshape(-1, 2 * dim).astype(np.float64)
    np.testing.assert_allclose(y[:, dim:], -y[:, :dim], atol=1e-6)
    cov = y[:, :dim].T @ y[:, :dim] / len(y)
    np.testing.assert_allclose(cov, np.eye(dim), atol=2e-3)


def test_the_filters_are_scaled_eigenvectors_largest_first():
    x = correlated_images()
    cov = patch_covariance(x, 2)
    eps = 5e-4
    w = whitening_weights(x, 24, 2, eps=eps).reshape(24, 12)
    values = np.linalg.eigvalsh(cov)[::-1]
    # each filter f_i = v_i / sqrt(l_i + eps): f_i' C f_i = l_i / (l_i + eps)
    np.testing.assert_allclose(np.einsum("id,de,ie->i", w[:12], cov, w[:12]),
                               values / (values + eps), rtol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(w[:12], axis=1), 1 / np.sqrt(values + eps),
                               rtol=1e-8)
    # fewer channels: the leading eigenvectors, in both signs
    w8 = whitening_weights(x, 8, 2, eps=eps).reshape(8, 12)
    np.testing.assert_allclose(w8, np.concatenate([w[:4], -w[:4]]), rtol=1e-10)


def test_whitening_is_deterministic_with_a_fixed_sign_per_eigenvector():
    x = correlated_images(seed=3)
    a = whitening_weights(x, 24, 2)
    b = whitening_weights(x.copy(), 24, 2)
    np.testing.assert_array_equal(a, b)
    flat = a[:12].reshape(12, -1)
    top = flat[np.arange(12), np.abs(flat).argmax(axis=1)]
    assert (top > 0).all()


def test_whiten_conv_writes_the_weight_in_place_keeps_the_bias_and_can_freeze():
    x = correlated_images()
    model = model_with_whitening(bias_init={"type": "constant", "value": 0.5})
    weight = model.params["whiten.weight"]
    out = whiten_conv(model, "whiten", x, freeze=True)
    assert out is weight and model.params["whiten.weight"] is weight
    np.testing.assert_allclose(weight, whitening_weights(x, 24, 2).astype(np.float32), rtol=1e-6)
    assert (model.params["whiten.bias"] == 0.5).all()
    assert model.frozen_params == {"whiten.weight"}
    unfrozen = model_with_whitening()
    whiten_conv(unfrozen, "whiten", x)
    assert not unfrozen.frozen_params


@pytest.mark.parametrize("change, message", [
    (dict(node="nope"), "no node 'nope'"),
    (dict(node="gelu_1"), "must be a conv2d"),
    (dict(model=dict(out_channels=25)), "out_channels must be even"),
    (dict(model=dict(out_channels=26)), r"in \[2, 24\]"),
    (dict(model=dict(out_channels=6, groups=3)), "groups = 3"),
    (dict(images=np.zeros((2, 3, 8), np.float32)), "shape \\(N, C, H, W\\)"),
    (dict(images=np.zeros((2, 3, 8, 8), np.uint8)), "float array"),
    (dict(images=np.full((2, 3, 8, 8), np.nan, np.float32)), "NaN"),
    (dict(images=np.zeros((2, 1, 8, 8), np.float32)), "takes 3 channels"),
    (dict(eps=0.0), "eps must be a finite number > 0"),
])
def test_bad_whitening_arguments_are_clear_errors(change, message):
    model = model_with_whitening(**change.get("model", {}))
    before = model.params["whiten.weight"].copy()
    with pytest.raises(ValueError, match=message):
        whiten_conv(model, change.get("node", "whiten"), change.get("images", correlated_images()),
                    eps=change.get("eps", 5e-4))
    np.testing.assert_array_equal(model.params["whiten.weight"], before)


def test_config_form_defaults_and_errors():
    assert check_data_inits([{"type": "whitening", "node": "w"}]) == [
        {"type": "whitening", "node": "w", "eps": 5e-4, "samples": 5000}]
    for bad, message in [
            ({"type": "whitening", "node": "w"}, None),  # a single table is accepted
            ([{"type": "pca", "node": "w"}], "type must be one of whitening"),
            ([{"type": "whitening"}], "needs 'node'"),
            ([{"type": "whitening", "node": "w", "epz": 1}], "unknown key.*'epz'.*valid keys"),
            ([{"type": "whitening", "node": "w", "samples": 0}], "samples must be an int"),
            ([{"type": "whitening", "node": "w", "eps": -1.0}], "eps must be"),
            ("whitening", "must be a list of tables")]:
        if message is None:
            assert len(check_data_inits(bad)) == 1
        else:
            with pytest.raises(ValueError, match=message):
                check_data_inits(bad)


def test_sample_images_is_seeded_in_index_order_and_spans_the_data():
    images = np.repeat(np.arange(100, dtype=np.uint8), 3 * 4).reshape(100, 3, 2, 2)
    a = sample_images(images, 20, seed=1)
    assert a.shape == (20, 3, 2, 2) and (np.diff(a[:, 0, 0, 0].astype(int)) > 0).all()
    np.testing.assert_array_equal(a, sample_images(images, 20, seed=1))
    assert not np.array_equal(a, sample_images(images, 20, seed=2))
    assert a[:, 0, 0, 0].max() > 50  # not just the first images (class-sorted folders)
    assert len(sample_images(images, 500)) == 100
    scaled = sample_images(images, 5, transform=lambda x, rng: x.astype(np.float32) / 255)
    assert scaled.dtype == np.float32


def test_init_from_data_whitens_the_transformed_sample():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 3, 12, 10), dtype=np.uint8)

    def transform(x, rng):
        return (x.astype(np.float32) - 128) / 64
    model = model_with_whitening()
    lines = init_from_data(model, [{"type": "whitening", "node": "whiten", "samples": 30}],
                           images, transform, seed=4)
    expected = whitening_weights(sample_images(images, 30, 4, transform), 24, 2)
    np.testing.assert_allclose(model.params["whiten.weight"], expected.astype(np.float32),
                               rtol=1e-6)
    assert lines == ["whiten: whitening from 30 images (eps 0.0005)"]
    with pytest.raises(ValueError, match=r"init\[0\]: whiten_conv: no node 'w'"):
        init_from_data(model, [{"type": "whitening", "node": "w"}], images, transform)
