"""cnnframe.gradcheck.numeric_gradient: central differences of a scalar function."""
import numpy as np
import pytest

from cnnframe.gradcheck import numeric_gradient


def test_matches_the_analytic_gradient_and_restores_the_array():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    a = rng.standard_normal((3, 4))
    before = x.copy()
    grad = numeric_gradient(lambda: float(np.sum(a * x**3)), x)
    np.testing.assert_allclose(grad, 3 * a * x**2, rtol=1e-6, atol=1e-8)
    assert np.array_equal(x, before)


def test_entries_estimates_a_subset():
    x = np.arange(10.0)
    grad = numeric_gradient(lambda: float(np.sum(x**2)), x, entries=4)
    done = ~np.isnan(grad)
    assert done.sum() == 4
    np.testing.assert_allclose(grad[done], 2 * x[done], rtol=1e-6, atol=1e-6)


def test_an_array_that_cannot_be_perturbed_in_place_is_refused():
    x = np.zeros((4, 5))[:, ::2]  # reshape(-1) would copy it: the loss would never change
    with pytest.raises(ValueError, match="numeric_gradient: arr must be perturbable in place"):
        numeric_gradient(lambda: 0.0, x)
