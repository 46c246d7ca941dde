"""examples/activations_on_feature_maps.py: ReLU vs sigmoid vs tanh on one feature map."""
import math

import numpy as np

SCRIPT = "activations_on_feature_maps.py"
ACTIVATIONS = {
    "relu": lambda v: max(v, 0.0),
    "sigmoid": lambda v: 1.0 / (1.0 + math.exp(-v)),
    "tanh": math.tanh,
}


def feature_map(out, printed):
    image = printed(out, "image").reshape(5, 8)
    kernel = printed(out, "kernel").reshape(3, 3)
    return np.array([[sum(image[i + a, j + b] * kernel[a, b] for a in range(3) for b in range(3))
                      for j in range(6)] for i in range(3)])


def test_feature_map_and_activation_tables(run_example, printed):
    out = run_example(SCRIPT)
    fm = feature_map(out, printed)
    np.testing.assert_allclose(printed(out, "feature map (before activation)"), fm.ravel(),
                               atol=1e-4)
    assert (fm > 1).sum() >= 2 and (fm < 0).sum() >= 2
    for name, f in ACTIVATIONS.items():
        expected = np.vectorize(f)(fm)
        np.testing.assert_allclose(printed(out, f"{name}(feature map)"), expected.ravel(),
                                   atol=1e-4, err_msg=name)


def test_relu_keeps_strong_responses_apart_sigmoid_and_tanh_squash_them(run_example, printed):
    out = run_example(SCRIPT)
    fm = feature_map(out, printed)
    lo, hi = fm[fm > 1].min(), fm[fm > 1].max()
    gaps = printed(out, f"gap between the responses {lo:.4f} and {hi:.4f}")
    before, relu, sigmoid, tanh = gaps
    assert abs(before - (hi - lo)) < 1e-4
    assert abs(relu - (hi - lo)) < 1e-4
    assert abs(sigmoid - (ACTIVATIONS["sigmoid"](hi) - ACTIVATIONS["sigmoid"](lo))) < 1e-4
    assert abs(tanh - (math.tanh(hi) - math.tanh(lo))) < 1e-4
    assert sigmoid < 0.1 * before and tanh < 0.1 * before


def test_relu_merges_negative_responses(run_example, printed):
    out = run_example(SCRIPT)
    fm = feature_map(out, printed)
    neg = fm[fm < 0]
    got = printed(out, f"two negative responses {neg.min():.4f} and {neg.max():.4f} become")
    relu_a, relu_b, sig_a, sig_b, tanh_a, tanh_b = got
    assert relu_a == relu_b == 0
    assert abs(sig_a - ACTIVATIONS["sigmoid"](neg.min())) < 1e-4 and sig_a < sig_b
    assert abs(tanh_b - math.tanh(neg.max())) < 1e-4 and tanh_a < tanh_b
