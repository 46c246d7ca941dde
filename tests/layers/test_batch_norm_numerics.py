"""Batch norm against a float64 reference, with reused buffers across changing shapes."""
import numpy as np
import pytest

from cnnframe.registry import get_layer


def _reference(x, w, b, g, training, running_mean, running_var, eps=1e-5):
    """float64 forward output and gradients (x, weight, bias) of batch norm over axis 1."""
    x, g = x.astype(np.float64), g.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    col = (-1,) + (1,) * (x.ndim - 2)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    invstd = 1 / np.sqrt(var + eps)
    xhat = (x - mean.reshape(col)) * invstd.reshape(col)
    y = xhat * w.reshape(col) + b.reshape(col)
    gb = g.sum(axis=axes)
    gw = (g * xhat).sum(axis=axes)
    if training:
        m = x.size // x.shape[1]
        gx = (w * invstd).reshape(col) / m * (m * g - gb.reshape(col) - xhat * gw.reshape(col))
    else:
        gx = g * (w * invstd).reshape(col)
    return y, gx, gw, gb


# (layer, shapes fed in turn to one layer): batch and spatial sizes change between calls.
SEQUENCES = [
    ("batch_norm2d", [(6, 3, 4, 5), (2, 3, 7, 3), (9, 3, 4, 5), (3, 3, 1, 1)]),
    ("batch_norm1d", [(5, 4), (11, 4), (2, 4, 6), (7, 4, 3)]),
]


@pytest.mark.parametrize("name, shapes", SEQUENCES, ids=[s[0] for s in SEQUENCES])
@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-4), (np.float64, 1e-10)])
@pytest.mark.parametrize("reuse", [False, True])
def test_matches_float64_reference_across_shapes(name, shapes, dtype, tol, reuse):
    rng = np.random.default_rng(7)
    c = shapes[0][1]
    bn = get_layer(name)(c, momentum=0.2).astype(dtype)
    bn.reuse_buffers = reuse
    bn.params["weight"][:] = rng.uniform(0.5, 2.0, c)
    bn.params["bias"][:] = rng.uniform(-1.0, 1.0, c)
    for i, shape in enumerate(shapes):
        for training in (True, False):
            # channel offsets far from 0 make a one-pass variance lose digits
            offset = rng.uniform(-50, 50, c).reshape((-1,) + (1,) * (len(shape) - 2))
            x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
            g = rng.standard_normal(shape).astype(dtype)
            rm, rv = bn.buffers["running_mean"].copy(), bn.buffers["running_var"].copy()
            y = bn.forward(x, training=training)
            gx = bn.backward(g)
            ry, rgx, rgw, rgb = _reference(x, bn.params["weight"], bn.params["bias"], g,
                                           training, rm, rv)
            where = f"call {i} {shape} training={training}"
            assert y.shape == x.shape and y.dtype == dtype and gx.dtype == dtype, where
            scale = np.abs(ry).max()
            np.testing.assert_allclose(y, ry, rtol=tol, atol=tol * scale, err_msg=where)
            np.testing.assert_allclose(gx, rgx, rtol=tol, atol=tol * np.abs(rgx).max(),
                                       err_msg=where)
            np.testing.assert_allclose(bn.grads["weight"], rgw, rtol=tol,
                                       atol=tol * np.abs(rgw).max(), err_msg=where)
            np.testing.assert_allclose(bn.grads["bias"], rgb, rtol=tol,
                                       atol=tol * np.abs(rgb).max(), err_msg=where)
            if training:
                x64 = x.astype(np.float64)
                axes = (0,) + tuple(range(2, x.ndim))
                m = x.size // c
                np.testing.assert_allclose(bn.buffers["running_mean"],
                                           0.8 * rm + 0.2 * x64.mean(axis=axes), rtol=tol,
                                           atol=tol * 50, err_msg=where)
                np.testing.assert_allclose(bn.buffers["running_var"],
                                           0.8 * rv + 0.2 * x64.var(axis=axes) * m / (m - 1),
                                           rtol=tol, err_msg=where)
            else:
                np.testing.assert_array_equal(bn.buffers["running_mean"], rm)


def test_non_contiguous_input_and_gradient(rng):
    bn = get_layer("batch_norm2d")(3)
    x = rng.standard_normal((4, 6, 5, 3)).astype(np.float32).transpose(0, 3, 2, 1)[:, :, ::2]
    g = rng.standard_normal((4, 3, 6, 5)).astype(np.float32).transpose(0, 1, 3, 2)[:, :, ::2]
    assert x.shape == g.shape == (4, 3, 3, 6)
    y, gx = bn.forward(x).copy(), bn.backward(g).copy()
    ry, rgx, _, _ = _reference(x, bn.params["weight"], bn.params["bias"], g, True, None, None)
    np.testing.assert_allclose(y, ry, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(gx, rgx, rtol=2e-4, atol=2e-4 * np.abs(rgx).max())
