"""A small central finite-difference checker shared by the layer tests."""
import numpy as np
import pytest

from cnnframe.gradcheck import numeric_gradient
from fake_plugins import plugins  # noqa: F401 - a fixture of test_registry.py


def check_layer_grads(layer, x, seed=0, training=True, rtol=1e-5, atol=1e-7):
    """Compare a float64 layer's backward with finite differences of sum(r * forward(x)).

    `x` is an array or a list of arrays (multi-input layers).  Stochastic layers
    replay their random draws by restoring ``layer.rng`` before every forward.
    """
    layer.astype(np.float64)
    xs = [np.array(a, dtype=np.float64) for a in (x if isinstance(x, list) else [x])]
    state = layer.rng.bit_generator.state if layer.stochastic else None

    def run():
        if state is not None:
            layer.rng.bit_generator.state = state
        return layer.forward(xs if isinstance(x, list) else xs[0], training=training)

    y = run()
    r = np.random.default_rng(seed + 1).standard_normal(y.shape)
    gx = layer.backward(r.copy())
    gx = gx if isinstance(x, list) else [gx]
    analytic = {f"param {k}": g.copy() for k, g in layer.grads.items()}

    def loss():
        return float(np.sum(r * run()))

    for i, (a, g) in enumerate(zip(xs, gx)):
        np.testing.assert_allclose(g, numeric_gradient(loss, a), rtol=rtol, atol=atol,
                                   err_msg=f"{layer.type_name}: grad of input {i}")
    for k, p in layer.params.items():
        np.testing.assert_allclose(analytic[f"param {k}"], numeric_gradient(loss, p), rtol=rtol,
                                   atol=atol, err_msg=f"{layer.type_name}: grad of param {k}")
    return y


@pytest.fixture(scope="session")
def gradcheck():
    return check_layer_grads
