"""examples/learn_kernel.py: gradient descent recovers K = [[1, -1]] from (X, Y)."""
import re

import numpy as np

SCRIPT = "learn_kernel.py"


def replay(w, iterations=10, lr=3e-2):
    """Plain-Python gradient descent on the sum of squared errors, from kernel w = [w0, w1].

    Returns the loss before each update and the final kernel.
    """
    x = [[0.0 if 2 <= j < 6 else 1.0 for j in range(8)] for _ in range(6)]
    y = [[x[i][j] - x[i][j + 1] for j in range(7)] for i in range(6)]
    w0, w1 = w
    losses = []
    for _ in range(iterations):
        loss = g0 = g1 = 0.0
        for i in range(6):
            for j in range(7):
                err = w0 * x[i][j] + w1 * x[i][j + 1] - y[i][j]
                loss += err * err
                g0 += 2 * err * x[i][j]
                g1 += 2 * err * x[i][j + 1]
        losses.append(loss)
        w0, w1 = w0 - lr * g0, w1 - lr * g1
    return losses, (w0, w1)


def test_losses_match_an_independent_replay(run_example, printed):
    out = run_example(SCRIPT)
    w_init = printed(out, "initial kernel")
    assert w_init.shape == (2,)
    expected_losses, expected_w = replay(w_init)
    printed_losses = {int(it): float(loss)
                      for it, loss in re.findall(r"iteration (\d+), loss ([\d.]+)", out)}
    assert sorted(printed_losses) == [2, 4, 6, 8, 10]
    for it, loss in printed_losses.items():
        assert abs(loss - expected_losses[it - 1]) <= 1e-3 + 1e-3 * expected_losses[it - 1], it
    np.testing.assert_allclose(printed(out, "learned kernel"), expected_w, atol=2e-4)


def test_it_learns_the_edge_kernel(run_example, printed):
    out = run_example(SCRIPT)
    losses = [float(v) for v in re.findall(r"loss ([\d.]+)", out)]
    assert all(a > b for a, b in zip(losses, losses[1:]))
    assert losses[0] > 1 and losses[-1] < 0.1          # "falls to about 0.05"
    np.testing.assert_allclose(printed(out, "learned kernel"), [1, -1], atol=0.06)
    assert printed(out, "true kernel").tolist() == [1, -1]
